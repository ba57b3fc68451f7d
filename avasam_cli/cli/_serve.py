"""Running the receiver for `avasam listen`: checks, the token, the banner, uvicorn.

Imported only when `listen` runs.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from avasam_cli.defaults import HEALTH_PATH
from avasam_cli.errors import UsageError

if TYPE_CHECKING:
    import socket

    from avasam_cli.config import ConfigFile, Settings
    from avasam_cli.delivery.followup import FollowUp
    from avasam_cli.paths import Locations
    from avasam_cli.receiver.app import ReceiverSettings

GRACEFUL_SHUTDOWN_SECONDS = 30


@dataclass(frozen=True)
class ListenOptions:
    """What `listen` was asked for beyond the receiver's own settings (no defaults here:
    they are in `defaults` and the option declarations of `cli.listen`)."""

    host: str
    port: int
    paths: Mapping[str, str]  # kind -> path
    as_json: bool
    auto_ack: bool
    forward_to: Mapping[str, str]  # kind -> URL
    forward_timeout: float


def check_paths(paths: Mapping[str, str]) -> None:
    for path in paths.values():
        if not path.startswith("/") or any(ch.isspace() or ch in "?#{}" for ch in path):
            raise UsageError(
                f"invalid endpoint path {path!r}: it must start with / and hold no spaces, "
                "?, # or braces (for example --stock-path /webhooks/stock)"
            )
    if len(set(paths.values())) != len(paths) or HEALTH_PATH in paths.values():
        raise UsageError(
            f"--stock-path and --price-path must differ from each other and from {HEALTH_PATH}"
        )


def check_forward_targets(targets: Mapping[str, str]) -> None:
    from urllib.parse import urlsplit

    for kind, url in targets.items():
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"invalid forward URL for {kind} updates {url!r}: give a full http(s) URL, "
                "e.g. --forward-to http://127.0.0.1:3000/avasam"
            )


def make_followup(options: ListenOptions, resolved: Settings, where: Locations) -> FollowUp | None:
    """Acknowledging and forwarding after each answer, when asked for; None otherwise."""
    if not options.auto_ack and not options.forward_to:
        return None
    from avasam_cli import output
    from avasam_cli.cli._context import client_for
    from avasam_cli.delivery.followup import FollowUp

    acknowledge = None
    if options.auto_ack:
        # Missing keys are a configuration error now, not at the first acknowledgement.
        acknowledge = client_for(resolved, where).acknowledge
    return FollowUp(
        say=output.info,
        acknowledge=acknowledge,
        forward_to=dict(options.forward_to),
        forward_timeout=options.forward_timeout,
    )


def ensure_token(resolved: Settings, config: ConfigFile) -> str:
    """The configured verification token, or a new one saved to the profile and shown once."""
    from avasam_cli import output
    from avasam_cli.config import (
        PASTE_INSTRUCTION,
        generate_verification_token,
        token_length_warning,
    )

    token = resolved.get("verification_token")
    if token:
        warning = token_length_warning(token)
        if warning:
            output.warn(warning)
        return token
    token = generate_verification_token()
    config.save_profile(resolved.profile, {"verification_token": token})
    output.info(
        f"No verification token was configured; created one and saved it to profile "
        f"'{resolved.profile}' ({config.path}):"
    )
    output.info(f"\n    {token}\n")
    output.info(PASTE_INSTRUCTION)
    return token


def banner(
    options: ListenOptions, sock: socket.socket, resolved: Settings, where: Locations
) -> None:
    from rich.markup import escape

    from avasam_cli import output
    from avasam_cli.net import shown_base_url

    console = output.make_console(stderr=True)
    base = shown_base_url(sock)
    console.print(f"[bold]avasam listen[/] · profile [bold]{escape(resolved.profile)}[/]")
    for kind, path in options.paths.items():
        label = f"{kind.capitalize()} update endpoint"
        console.print(f"  {label:21}  [cyan]{escape(base + path)}[/]")
    console.print(f"  {'Event store':21}  {escape(str(where.store_file))}")
    console.print(
        "  Paste the endpoints into Avasam (Settings > User management > your API user > "
        "webhook section). Avasam must reach them from the internet: put an HTTPS tunnel "
        "in front and paste its URL with the same paths."
    )
    console.print("[green]Ready.[/] Press Ctrl-C to stop.")


def serve(
    options: ListenOptions,
    receiver: ReceiverSettings,
    resolved: Settings,
    where: Locations,
    followup: FollowUp | None,
) -> None:
    import uvicorn

    from avasam_cli.net import bind
    from avasam_cli.receiver.app import create_app
    from avasam_cli.store.base import open_store

    open_store(where.store_file).close()  # an unusable store stops us before we listen
    sock = bind(options.host, options.port)
    sock.listen(2048)
    sock.set_inheritable(True)
    # The store writer's printer shows each request once it is committed, on our stdout.
    app = create_app(
        receiver,
        where.store_file,
        output="json" if options.as_json else "human",
        output_fd=sys.stdout.fileno(),
        followup=followup,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,  # our own lines replace uvicorn's access log
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    )
    banner(options, sock, resolved, where)
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully;
    # a quiet SIGTERM handler and catching KeyboardInterrupt make that a normal exit.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if not server.started:
        raise UsageError("the receiver could not start (see the messages above)")
