"""`avasam inspect`: the inspector page over the store, without a receiver."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.inspector.handover import (
    FORWARD_ENV,
    HEADERS_ENV,
    RECEIVER_ENV,
    page_token,
    page_url,
)

if TYPE_CHECKING:
    from avasam_cli.config import Settings

DEFAULT_INSPECT_PORT = 8788  # the listener's default port + 1, as `listen` serves it


def inspect(
    ctx: typer.Context,
    port: Annotated[
        int,
        typer.Option(help="Loopback port to serve the page on (127.0.0.1 only).", min=0, max=65535),
    ] = DEFAULT_INSPECT_PORT,
    stop_on_eof: Annotated[bool, typer.Option("--stop-on-eof", hidden=True)] = False,
) -> None:
    """Serve the live inspector page over the store: every request, its verdict and its
    deliveries (Ctrl-C stops).  `avasam listen` serves it too, on its port + 1."""
    import contextlib
    import json
    import os

    from avasam_cli import output
    from avasam_cli.cli._context import local_endpoint, settings
    from avasam_cli.delivery.signature import secrets_for_run
    from avasam_cli.inspector.server import serve
    from avasam_cli.net import bind
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store
    from avasam_cli.webhooks.kinds import KIND_NAMES

    open_store(locations().store_file, read_only=True).close()  # an older store: said now
    token = page_token()
    sock = bind("127.0.0.1", port, "with --port")
    if not stop_on_eof:  # started by `listen`, whose banner gives the URL
        output.info(f"Inspector: {page_url(sock.getsockname()[1], token)}")
        output.info("Open it in a browser on this machine; Ctrl-C stops.")
    resolved = settings(ctx)
    if RECEIVER_ENV in os.environ:  # `listen` says where it listens
        receiver = json.loads(os.environ[RECEIVER_ENV])
    else:
        receiver = {kind: local_endpoint(ctx, None, None, kind) for kind in KIND_NAMES}
    forward = json.loads(os.environ.get(FORWARD_ENV, "{}"))
    with contextlib.ExitStack() as resources:
        acknowledge = None
        if resolved.get("consumer_key") and resolved.get("secret_key"):
            from avasam_cli.cli._context import client_for

            acknowledge = resources.enter_context(client_for(resolved, locations())).acknowledge
        serve(
            locations().store_file, sock, token, stop_on_eof, receiver,
            resolved.get("verification_token"), forward, acknowledge,
            secrets_for_run(resolved, locations().config_file),
            _followed_token(resolved),
            _forward_headers(resolved),
        )  # fmt: skip


def _forward_headers(resolved: "Settings") -> list[tuple[str, str]]:
    """The headers the listener's forwards carry (its flags and the profile's), or the
    profile's alone for `avasam inspect` on its own."""
    import json
    import os

    from avasam_cli.cli._deliver import delivery_config, saved_forward_headers
    from avasam_cli.defaults import DEFAULT_FORWARD_TIMEOUT

    if HEADERS_ENV in os.environ:
        return [(name, value) for name, value in json.loads(os.environ[HEADERS_ENV])]
    config = delivery_config(
        "1s", 1, "1h", DEFAULT_FORWARD_TIMEOUT, None, None, False, saved_forward_headers(resolved)
    )
    return list(config.headers)


def _followed_token(resolved: "Settings") -> Callable[[], str | None] | None:
    """The profile's verification token as it is at each re-sign (a rotation while the
    page is open is followed); None for a token from a flag or the environment."""
    from avasam_cli.paths import locations
    from avasam_cli.rotation import VERIFICATION_TOKEN, followed, rolling_from

    if resolved.values["verification_token"].source != "profile":
        return None
    values = {name: resolved.get(name) for name in VERIFICATION_TOKEN}
    now = followed(
        locations().config_file, resolved.profile, VERIFICATION_TOKEN,
        rolling_from(values, VERIFICATION_TOKEN),
    )  # fmt: skip
    return lambda: current.current if (current := now()) is not None else None


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n  avasam inspect\n\n  avasam inspect --port 9999",
    )(inspect)
