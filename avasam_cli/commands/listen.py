"""`avasam listen`: run the receiver until Ctrl-C or SIGTERM."""

from __future__ import annotations

import errno
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from avasam_cli import output
from avasam_cli.commands.configure import PASTE_INSTRUCTION
from avasam_cli.config import (
    ConfigFile,
    Settings,
    generate_verification_token,
    token_length_warning,
)
from avasam_cli.defaults import (
    DEFAULT_LEEWAY,
    DEFAULT_LISTEN_HOST,
    DEFAULT_LISTEN_PORT,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_WEBHOOK_PATHS,
)
from avasam_cli.errors import UsageError
from avasam_cli.paths import Locations
from avasam_cli.server import HEALTH_PATH, ReceiverSettings

GRACEFUL_SHUTDOWN_SECONDS = 30


@dataclass(frozen=True)
class ListenOptions:
    host: str = DEFAULT_LISTEN_HOST
    port: int = int(DEFAULT_LISTEN_PORT)
    stock_path: str = DEFAULT_WEBHOOK_PATHS["stock"]
    price_path: str = DEFAULT_WEBHOOK_PATHS["price"]
    leeway: float = DEFAULT_LEEWAY
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    as_json: bool = False
    auto_ack: bool = False
    forward_to: Mapping[str, str] = field(default_factory=dict)  # kind -> URL
    forward_timeout: float = 10.0


def check_paths(options: ListenOptions) -> None:
    paths = (options.stock_path, options.price_path)
    for path in paths:
        if not path.startswith("/") or any(ch.isspace() or ch in "?#{}" for ch in path):
            raise UsageError(
                f"invalid endpoint path {path!r}: it must start with / and hold no spaces, "
                "?, # or braces (for example --stock-path /webhooks/stock)"
            )
    if len(set(paths)) != 2 or HEALTH_PATH in paths:
        raise UsageError(
            f"--stock-path and --price-path must differ from each other and from {HEALTH_PATH}"
        )


def check_forward_targets(targets: Mapping[str, str]) -> None:
    for kind, url in targets.items():
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"invalid forward URL for {kind} updates {url!r}: give a full http(s) URL, "
                "e.g. --forward-to http://127.0.0.1:3000/avasam"
            )


def make_followup(options: ListenOptions, settings: Settings, where: Locations) -> Any:
    """Acknowledging and forwarding after each answer, when asked for; None otherwise."""
    if not options.auto_ack and not options.forward_to:
        return None
    from avasam_cli.followup import FollowUp

    acknowledge = None
    if options.auto_ack:
        from avasam_cli.api import client_for

        # Missing keys are a configuration error now, not at the first acknowledgement.
        acknowledge = client_for(settings, where).acknowledge
    return FollowUp(
        store_path=where.store_file,
        say=output.info,
        acknowledge=acknowledge,
        forward_to=dict(options.forward_to),
        forward_timeout=options.forward_timeout,
    )


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so that a busy port is a clear error."""
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
                f"stop that process or choose another port with --port"
            ) from None
        raise UsageError(
            f"cannot listen on {host}:{port}: {error.strerror}; choose another --host or --port"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def ensure_token(settings: Settings, config: ConfigFile) -> str:
    """The configured verification token, or a new one saved to the profile and shown once."""
    token = settings.get("verification_token")
    if token:
        warning = token_length_warning(token)
        if warning:
            output.warn(warning)
        return token
    token = generate_verification_token()
    config.save_profile(settings.profile, {"verification_token": token})
    output.info(
        f"No verification token was configured; created one and saved it to profile "
        f"'{settings.profile}' ({config.path}):"
    )
    output.info(f"\n    {token}\n")
    output.info(PASTE_INSTRUCTION)
    return token


def _url_host(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # noqa: S104 - we only display it
        host = socket.gethostname()
    return (f"[{host}]" if ":" in host else host), port


def banner(
    options: ListenOptions, sock: socket.socket, settings: Settings, where: Locations
) -> None:
    from rich.markup import escape

    console = output.make_console(stderr=True)
    host, port = _url_host(sock)
    base = f"http://{host}:{port}"
    console.print(f"[bold]avasam listen[/] · profile [bold]{escape(settings.profile)}[/]")
    console.print(f"  Stock update endpoint  [cyan]{escape(base + options.stock_path)}[/]")
    console.print(f"  Price update endpoint  [cyan]{escape(base + options.price_path)}[/]")
    console.print(f"  Event store            {escape(str(where.store_file))}")
    console.print(
        "  Paste the endpoints into Avasam (Settings > User management > your API user > "
        "webhook section). Avasam must reach them from the internet: put an HTTPS tunnel "
        "in front and paste its URL with the same paths."
    )
    console.print("[green]Ready.[/] Press Ctrl-C to stop.")


def run(options: ListenOptions, settings: Settings, config: ConfigFile, where: Locations) -> None:
    import uvicorn

    from avasam_cli.server import create_app
    from avasam_cli.store import connect

    check_paths(options)
    check_forward_targets(options.forward_to)
    followup = make_followup(options, settings, where)
    token = ensure_token(settings, config)
    connect(where.store_file).close()  # an unusable store stops us before we listen
    sock = bind(options.host, options.port)

    receiver = ReceiverSettings(
        verification_token=token,
        stock_path=options.stock_path,
        price_path=options.price_path,
        leeway=options.leeway,
        max_body_size=options.max_body_size,
    )
    # The store writer prints each request once it is committed, on our stdout.
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
    banner(options, sock, settings, where)
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
