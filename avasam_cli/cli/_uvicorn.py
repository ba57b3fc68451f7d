"""One receiver process's server: its listening socket, its connection limits (the
open-files limit raised to fit them) and uvicorn's settings."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket

    from avasam_cli.cli._serve import ListenOptions
    from avasam_cli.receiver.app import ReceiverSettings


GRACEFUL_SHUTDOWN_SECONDS = 30


def allow_connections(wanted: int) -> int:
    """Raise the open-files limit so `wanted` connections fit; fewer if the system caps it.

    Beyond the cap uvicorn answers 503; with too few descriptors, accepting would fail
    for everyone instead (the attack run saw 1,100 idle connections shut all clients out).
    """
    if sys.platform == "win32":  # no such limit to raise there
        return wanted
    import resource

    from avasam_cli import output

    spare = 64  # the store, pipes, logs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + spare
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        allowed = max(1, soft - spare)
        output.warn(
            f"this system allows {soft} open files: serving at most {allowed} connections "
            "at once (--max-connections)"
        )
        return allowed
    return wanted


def stdout_fd() -> int | None:
    """Our stdout's descriptor; None (and a note) when the listener was started without one."""
    from avasam_cli import output

    try:
        fd = sys.stdout.fileno()
        os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        output.info(
            "Note: there is no standard output (it is closed), so requests are not printed; "
            "they are still stored: see `avasam events list`."
        )
        # Libraries (uvicorn's logging among them) expect a stdout to exist.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        return None
    return fd


def listening_socket(options: ListenOptions) -> socket.socket:
    """Bound and listening, and inherited by every process that serves on it."""
    from avasam_cli.net import bind

    shared = options.workers > 1
    if shared:  # the port must be free: a shared bind would join another's group
        bind(options.host, options.port).close()
    sock = bind(options.host, options.port, shared=shared)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: Any, options: ListenOptions, receiver: ReceiverSettings) -> Any:
    """The server of one receiver process (every --workers process has its own)."""
    import uvicorn

    from avasam_cli.receiver.protocol import ConnectionLimits, protocol_with

    limits = ConnectionLimits(receiver.max_head_size, options.head_timeout, options.body_timeout)
    trusted = options.forwarded_allow_ips
    if trusted is None and options.tunnel is not None:
        trusted = "127.0.0.1"  # the tunnel tool, which says who its client was
    return uvicorn.Server(
        uvicorn.Config(
            app,
            http=protocol_with(limits),
            ws="none",  # no WebSocket endpoint: nor the import of a websockets library
            log_level="warning",
            access_log=False,  # our own lines replace uvicorn's access log
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            timeout_keep_alive=options.keep_alive_timeout,  # type: ignore[arg-type]  # a float works
            limit_concurrency=allow_connections(options.max_connections),
            # Reading the headers of a proxy nobody runs costs every request a middleware.
            proxy_headers=trusted is not None,
            forwarded_allow_ips=trusted,
        )
    )
