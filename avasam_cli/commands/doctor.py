"""`avasam doctor`: check that everything an integration needs is in place."""

from __future__ import annotations

import socket
from collections.abc import Callable

from avasam_cli import output
from avasam_cli.config import Settings, token_length_warning
from avasam_cli.errors import AlreadyReported, AvasamError
from avasam_cli.paths import Locations

Check = tuple[str, Callable[[], str]]  # (what, run): run returns a note or raises AvasamError


def _configuration(settings: Settings) -> str:
    for name in ("consumer_key", "secret_key", "verification_token"):
        settings.require(name)
    return f"profile '{settings.profile}' has keys and a verification token"


def _token_strength(settings: Settings) -> str:
    from avasam_cli.errors import ConfigError

    token = settings.require("verification_token")
    warning = token_length_warning(token)
    if warning:
        raise ConfigError(warning)
    return f"{len(token.encode())} bytes"


def _credentials(settings: Settings, where: Locations) -> str:
    from avasam_cli.api import client_for

    with client_for(settings, where) as client:
        client.access_token(renew=True)
    return f"accepted by {settings.require('base_url')}"


def _store(where: Locations) -> str:
    from avasam_cli.store import connect

    conn = connect(where.store_file)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return str(where.store_file)


def _port(settings: Settings) -> str:
    from avasam_cli.errors import OperationFailed

    host, port = settings.require("listen_host"), int(settings.require("listen_port"))
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OperationFailed(
                f"{host}:{port} is not free ({error.strerror}): is `avasam listen` running? "
                "Stop it, or choose another port with `avasam configure --listen-port`"
            ) from None
    return f"{host}:{port} is free"


def run(settings: Settings, where: Locations, offline: bool) -> None:
    checks: list[Check] = [
        ("configuration complete", lambda: _configuration(settings)),
        ("verification token at least 32 bytes", lambda: _token_strength(settings)),
    ]
    if not offline:
        checks.append(("credentials accepted", lambda: _credentials(settings, where)))
    checks += [
        ("event store writable", lambda: _store(where)),
        ("listener port free", lambda: _port(settings)),
    ]
    failures = 0
    for what, check in checks:
        try:
            note = check()
        except AvasamError as problem:
            failures += 1
            output.check_line(False, f"{what}: {problem.message}")
        else:
            output.check_line(True, f"{what}: {note}")
    if offline:
        output.check_line(None, "credentials accepted: --offline")
    if failures:
        raise AlreadyReported
