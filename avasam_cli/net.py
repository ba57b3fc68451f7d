"""Addresses of the local listener: binding its port, and reaching or showing it."""

from __future__ import annotations

import errno
import socket

from avasam_cli.errors import UsageError

# Hosts meaning "every interface": bound as they are, reached through loopback.
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


def bind(host: str, port: int, option_hint: str = "with --port") -> socket.socket:
    """Bind a listening TCP socket; a busy port or a bad host is a clear UsageError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise UsageError(
            f"cannot listen on host {host!r}: {error.strerror}; try --host 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
