"""Serving the inspector: uvicorn on a bound loopback socket, streams ended at a stop."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn

from avasam_cli.defaults import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEAD_SIZE,
)
from avasam_cli.delivery.signature import Secrets
from avasam_cli.inspector.app import create_inspector
from avasam_cli.paths import StoreLocation
from avasam_cli.receiver.protocol import ConnectionLimits, protocol_with

# The receiver's connection limits: a head must arrive in time, a body may not stall, and
# no more connections at once than it allows (half-sent heads cannot pile up).
LIMITS = ConnectionLimits(DEFAULT_MAX_HEAD_SIZE, DEFAULT_HEAD_TIMEOUT, DEFAULT_BODY_TIMEOUT)


def server_config(app: Any, limits: ConnectionLimits = LIMITS) -> uvicorn.Config:
    """The inspector's uvicorn settings, with the receiver's connection limits."""
    return uvicorn.Config(
        app,
        http=protocol_with(limits),
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=1,
        limit_concurrency=DEFAULT_MAX_CONNECTIONS,
    )


class _InspectorServer(uvicorn.Server):
    """Ends the page's event streams as soon as a stop is asked for: they must never
    hold uvicorn's graceful shutdown (Ctrl-C with tabs open exits at once)."""

    def __init__(self, config: uvicorn.Config, stopping: Any) -> None:
        super().__init__(config)
        self.stopping = stopping

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.stopping.set()
        super().handle_exit(sig, frame)


def serve(
    store_path: StoreLocation,
    sock: socket.socket,
    token: str,
    stop_on_eof: bool = False,
    receiver: Mapping[str, str] | None = None,
    verification_token: str | None = None,
    forward: Mapping[str, str] | None = None,
    acknowledge: Callable[[str], str] | None = None,
    forward_secrets: Secrets | None = None,
    signing_token: Callable[[], str | None] | None = None,
    forward_headers: list[tuple[str, str]] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, or (`stop_on_eof`: started by `listen`) until
    standard input closes, which it does when the listener is gone, even by kill -9."""
    port = sock.getsockname()[1]
    app = create_inspector(
        store_path, token, port, receiver, verification_token, forward, acknowledge
    )
    if forward_secrets is not None:
        app.state.forward_secrets = forward_secrets
    if signing_token is not None:  # the profile's token, followed through rotations
        app.state.signing_token = signing_token
    app.state.forward_headers = list(forward_headers or [])
    server = _InspectorServer(server_config(app), app.state.stopping)
    if stop_on_eof:
        from avasam_cli.lifeline import exit_when_stdin_closes

        def stop() -> None:
            server.should_exit = True

        exit_when_stdin_closes(stop)
    server.run(sockets=[sock])
