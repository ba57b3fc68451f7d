"""Addresses of the local listener: binding its port, and reaching or showing it."""

from __future__ import annotations

import errno
import re
import socket
import sys
from urllib.parse import urlsplit

from avasam_cli.errors import UsageError

# Hosts meaning "every interface": bound as they are, reached through loopback.
# Only Linux's kernel spreads new connections among the sockets sharing a port
# (SO_REUSEPORT); macOS gives them all to one, Windows has no such option.
SHARED_PORTS_BALANCED = sys.platform == "linux"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - we only compare with them


def is_loopback_host(host: str | None) -> bool:
    """Whether `host` names this machine's loopback interface."""
    import ipaddress

    if host is None:
        return False
    if host.lower() in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?", re.I)


def host_problem(host: str) -> str | None:
    """What makes `host` unusable as a host to listen on or connect to, or None."""
    import ipaddress

    if host in WILDCARD_HOSTS and host:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if len(host) <= 253 and _HOST_NAME.fullmatch(host):
        return None
    return "it is neither an IP address nor a host name"


def url_problem(url: str) -> str | None:
    """What makes `url` unusable as an http(s) URL to send to, or None.

    The one place URLs given on the command line, in the environment or in the
    profile are checked (send-test --url, events replay --to, --forward-to, the base URL).
    """
    candidate = url.strip()
    if "://" not in candidate:
        return "it has no http:// or https:// in front"
    try:
        parts = urlsplit(candidate)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as error:
        return str(error)
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname:
        return "it has no host name"
    if any(ch.isspace() for ch in candidate):
        return "it contains spaces"
    if port == 0:
        return "port 0 cannot be reached"
    return host_problem(parts.hostname)


def checked_url(url: str, option: str, example: str) -> str:
    """`url` if it is usable, else a UsageError naming `option`, the problem and a fix."""
    problem = url_problem(url)
    if problem is None:
        return url.strip()
    if "://" not in url and url_problem(f"http://{url.strip()}") is None:
        example = f"http://{url.strip()}"
    raise UsageError(f"{option} {url!r}: {problem}; for example {option} {example}")


def checked_host(host: str, option: str = "--host") -> str:
    problem = host_problem(host.strip())
    if problem is None:
        return host.strip()
    raise UsageError(f"{option} {host!r}: {problem}; for example {option} 127.0.0.1")


def connectable_host(host: str) -> str:
    """Where a client on this machine reaches a listener bound to `host`."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def url_host(host: str) -> str:
    """`host` as written in a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host


def local_base_url(host: str, port: int | str) -> str:
    """The base URL a client on this machine uses for a listener on `host:port`."""
    return f"http://{url_host(connectable_host(host))}:{port}"


def shown_base_url(sock: socket.socket) -> str:
    """The base URL to show for a bound socket: a wildcard shows as this machine's name."""
    host, port = sock.getsockname()[:2]
    if host in WILDCARD_HOSTS:
        host = socket.gethostname()
    return f"http://{url_host(host)}:{port}"


def bind(
    host: str, port: int, option_hint: str = "with --port", shared: bool = False
) -> socket.socket:
    """Bind a listening TCP socket; a busy port or a bad host is a clear UsageError.

    `shared`: other sockets of ours may bind the same port too (SO_REUSEPORT, `listen
    --workers`), and the kernel spreads new connections evenly among them.  Whoever binds
    first checks that the port is free (`bind` without sharing, closed) beforehand.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise UsageError(
            f"cannot listen on host {host!r}: {error.strerror}; try --host 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    if sys.platform == "win32":  # there SO_REUSEADDR would let another program take it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    else:  # a restart may bind at once, with the last run's connections in TIME_WAIT
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is already in use (another `avasam listen`?): "
                f"stop that process or choose another port {option_hint}"
            ) from None
        raise UsageError(
            f"cannot listen on {host}:{port}: {error.strerror}; choose another --host or --port"
        ) from None
    return sock
