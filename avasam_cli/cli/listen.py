"""`avasam listen`: run the receiver until Ctrl-C or SIGTERM."""

import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from avasam_cli.cli._context import (
    client_for,
    config_file,
    endpoint_paths,
    logging_settings,
    read_stdin_values,
)
from avasam_cli.cli._deliver import (
    DEFAULT_MAX_AGE_TEXT,
    DEFAULT_SCHEDULE_TEXT,
    AlertCommandOption,
    AlertUrlOption,
    DeliveryMaxAgeOption,
    ForwardCaOption,
    ForwardHeaderOption,
    ForwardInsecureOption,
    ForwardTimeoutOption,
    MaxAttemptsOption,
    RetryScheduleOption,
    alert_config,
    delivery_config,
    saved_forward_headers,
)
from avasam_cli.cli._options import STDIN_HELP, AudienceOption, LeewayOption, LogFormatOption
from avasam_cli.defaults import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_DURABILITY,
    DEFAULT_FORWARD_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_LEEWAY,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEAD_SIZE,
    DEFAULT_SHUTDOWN_WAIT,
    DEFAULT_TUNNEL_TIMEOUT,
)
from avasam_cli.delivery.outbox import DEFAULT_MAX_ATTEMPTS

if TYPE_CHECKING:
    from avasam_cli.config import ConfigFile, Settings


class TunnelTool(StrEnum):
    cloudflared = "cloudflared"
    ngrok = "ngrok"


def listen(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: profile, else 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on (default: profile, else 8787).", min=0, max=65535),
    ] = None,
    stock_path: Annotated[
        str | None,
        typer.Option(
            help="Path of the stock update endpoint (default: profile, else /webhooks/stock)."
        ),
    ] = None,
    price_path: Annotated[
        str | None,
        typer.Option(
            help="Path of the price update endpoint (default: profile, else /webhooks/price)."
        ),
    ] = None,
    leeway: LeewayOption = DEFAULT_LEEWAY,
    max_body_size: Annotated[
        int, typer.Option(help="Largest body accepted, in bytes (larger: 413).", min=1)
    ] = DEFAULT_MAX_BODY_SIZE,
    max_header_size: Annotated[
        int,
        typer.Option(
            help="Largest request line and headers together, in bytes (larger: 431).", min=1024
        ),
    ] = DEFAULT_MAX_HEAD_SIZE,
    head_timeout: Annotated[
        float, typer.Option(help="Seconds for a request's headers to arrive.", min=0.1)
    ] = DEFAULT_HEAD_TIMEOUT,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may stall.", min=0.1)
    ] = DEFAULT_BODY_TIMEOUT,
    keep_alive_timeout: Annotated[
        float, typer.Option(help="Seconds an idle keep-alive connection stays open.", min=0.1)
    ] = DEFAULT_KEEP_ALIVE_TIMEOUT,
    max_connections: Annotated[
        int, typer.Option(help="Connections served at once (beyond: 503).", min=1)
    ] = DEFAULT_MAX_CONNECTIONS,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Trust X-Forwarded-For and X-Forwarded-Proto from these addresses "
            "(comma-separated, or *): the client stored is then the one your reverse proxy "
            "saw.  Off by default; --tunnel trusts 127.0.0.1, where the tunnel tool runs."
        ),
    ] = None,
    verification_token: Annotated[
        str | None,
        typer.Option(
            help=f"Verification token for this run (overrides env and profile). {STDIN_HELP}"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per request on stdout.")
    ] = False,
    auto_ack: Annotated[
        bool,
        typer.Option(help="Acknowledge each new verified stock update through the API."),
    ] = False,
    forward_to: Annotated[
        str | None,
        typer.Option(
            help="Forward verified updates of both kinds to this URL (default: the profile's "
            "forward_to, if set)."
        ),
    ] = None,
    forward_stock_to: Annotated[
        str | None, typer.Option(help="Forward verified stock updates to this URL.")
    ] = None,
    forward_price_to: Annotated[
        str | None, typer.Option(help="Forward verified price updates to this URL.")
    ] = None,
    forward_timeout: ForwardTimeoutOption = DEFAULT_FORWARD_TIMEOUT,
    forward_header: ForwardHeaderOption = None,
    forward_ca: ForwardCaOption = None,
    forward_insecure: ForwardInsecureOption = False,
    alert_url: AlertUrlOption = None,
    alert_command: AlertCommandOption = None,
    retry_schedule: RetryScheduleOption = DEFAULT_SCHEDULE_TEXT,
    max_attempts: MaxAttemptsOption = DEFAULT_MAX_ATTEMPTS,
    delivery_max_age: DeliveryMaxAgeOption = DEFAULT_MAX_AGE_TEXT,
    shutdown_wait: Annotated[
        float,
        typer.Option(
            help="Seconds a stop waits for deliveries in flight (the rest stay in the outbox).",
            min=0,
        ),
    ] = DEFAULT_SHUTDOWN_WAIT,
    inspect_port: Annotated[
        int | None,
        typer.Option(
            help="Loopback port of the inspector page (default: the listener's port + 1).",
            min=1,
            max=65535,
            show_default=False,
        ),
    ] = None,
    no_inspect: Annotated[
        bool, typer.Option("--no-inspect", help="Do not serve the inspector page.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Receiver processes on the one port, sharing the store; one of them prints.",
            min=1,
            max=64,
        ),
    ] = 1,
    retain: Annotated[
        str | None,
        typer.Option(
            help="Delete events older than this (e.g. 30d) at start and hourly; pending "
            "acknowledgements are kept.",
            show_default=False,
        ),
    ] = None,
    tunnel: Annotated[
        TunnelTool | None,
        typer.Option(
            help="Give the webhook port a public HTTPS URL with this tool (it must be "
            "installed), and show the endpoints to paste into Avasam.",
        ),
    ] = None,
    tunnel_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--tunnel-arg",
            help="An extra argument for the tunnel tool, e.g. --tunnel-arg=--region=eu "
            "(repeatable).",
        ),
    ] = None,
    tunnel_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the tunnel's public URL.", min=1)
    ] = DEFAULT_TUNNEL_TIMEOUT,
    audience: AudienceOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics at GET /metrics on this port, a socket of its own "
            "(default: the profile's metrics_port, else none).",
            min=1,
            max=65535,
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(help="Interface of the metrics port (default: profile, else 127.0.0.1)."),
    ] = None,
    log_format: LogFormatOption = None,
    durability: Annotated[
        str | None,
        typer.Option(
            help="What a commit of the SQLite store survives: normal, any crash of this "
            "program (a power cut can lose the last seconds); full, a power cut too, at one "
            f"disk sync per batch (default: profile, else {DEFAULT_DURABILITY}).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Receive, verify, store and print Avasam's stock and price webhooks."""
    from avasam_cli.cli._serve import (
        ListenOptions,
        check_paths,
        ensure_token,
        serve,
    )
    from avasam_cli.config import audiences
    from avasam_cli.net import checked_url
    from avasam_cli.paths import locations
    from avasam_cli.receiver.app import ReceiverSettings

    given = {"--forward-to": forward_to, "--forward-stock-to": forward_stock_to,
             "--forward-price-to": forward_price_to}  # fmt: skip
    for option, url in given.items():
        if url is not None:
            checked_url(url, option, "http://127.0.0.1:3000/avasam")
    config = config_file()
    flags = read_stdin_values({"verification_token": verification_token}, sys.stdin)
    flags["listen_host"] = host
    any_port = port == 0  # `--port 0`: any free port, for this run only
    flags["listen_port"] = None if port is None or any_port else str(port)
    flags["stock_path"], flags["price_path"] = stock_path, price_path
    flags["audience"] = ",".join(audience) if audience else None
    flags["forward_to"] = forward_to
    flags["metrics_port"] = str(metrics_port) if metrics_port is not None else None
    flags["metrics_host"] = metrics_host
    flags["log_format"] = log_format
    flags["durability"] = durability
    resolved = logging_settings(ctx, config, **flags)
    forward_to = resolved.get("forward_to")  # the flag, else the profile's
    paths = endpoint_paths(resolved)
    targets = {"stock": forward_stock_to or forward_to, "price": forward_price_to or forward_to}
    options = ListenOptions(
        host=resolved.require("listen_host"),
        port=0 if any_port else int(resolved.require("listen_port")),
        paths=paths,
        as_json=as_json,
        auto_ack=auto_ack,
        forward_to={kind: url for kind, url in targets.items() if url},
        forward_timeout=forward_timeout,
        tunnel=tunnel.value if tunnel else None,
        tunnel_args=tuple(tunnel_arg or ()),
        tunnel_timeout=tunnel_timeout,
        head_timeout=head_timeout,
        body_timeout=body_timeout,
        keep_alive_timeout=keep_alive_timeout,
        max_connections=max_connections,
        forwarded_allow_ips=forwarded_allow_ips,
        retain=_retention(retain),
        shutdown_wait=shutdown_wait,
        inspect_port=None if no_inspect else _inspect_port(inspect_port, resolved, any_port),
        workers=workers,
        metrics=_metrics_address(resolved),
        durability=resolved.require("durability"),
        delivery=delivery_config(
            retry_schedule, max_attempts, delivery_max_age, forward_timeout, forward_header,
            forward_ca, forward_insecure, saved_forward_headers(resolved),
            alert_config(resolved, alert_url, alert_command),
        ),
    )  # fmt: skip
    check_paths(options.paths)
    check_workers(options.workers)
    if options.tunnel is not None:
        from avasam_cli.tunnel import find_tool

        find_tool(options.tunnel)  # a missing tool stops us before anything is written
    where = locations()
    if auto_ack:  # missing keys are a configuration error now, not at the first acknowledgement
        client_for(resolved, where).close()
    token = ensure_token(resolved, config)
    receiver = ReceiverSettings(
        token,
        paths,
        leeway,
        max_body_size,
        max_header_size,
        audiences(resolved.get("audience")),
        **token_settings(resolved, config),
    )
    serve(options, receiver, resolved, where)


def check_workers(workers: int) -> None:
    """`--workers N` only where the kernel spreads connections among them (Linux)."""
    from avasam_cli.errors import UsageError
    from avasam_cli.net import SHARED_PORTS_BALANCED

    if workers > 1 and not SHARED_PORTS_BALANCED:
        raise UsageError(
            f"--workers {workers} needs Linux, whose kernel spreads new connections among "
            f"processes sharing a port; on {sys.platform} one of them would get them all. "
            "Run one `avasam listen` per host (without --workers) behind a load balancer, "
            "all on one PostgreSQL store (see Deployment in the README)"
        )


def token_settings(resolved: "Settings", config: "ConfigFile") -> dict[str, Any]:
    """The receiver's settings for a rotation: a token from the profile (or made now and
    saved there) is followed while we run, with its previous one during the grace; a
    token from a flag or the environment is fixed for the run."""
    from avasam_cli.rotation import VERIFICATION_TOKEN, rolling_from

    if resolved.values["verification_token"].source not in ("profile", "unset"):
        return {"previous_token": None, "previous_until": None, "follow_profile": None}
    rolling = rolling_from({n: resolved.get(n) for n in VERIFICATION_TOKEN}, VERIFICATION_TOKEN)
    return {
        "previous_token": rolling.previous if rolling else None,
        "previous_until": rolling.previous_until if rolling else None,
        "follow_profile": (str(config.path), resolved.profile),
    }


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n"
        "  avasam listen\n\n"
        "  avasam listen --port 9000 --json | jq .\n\n"
        "  avasam -p staging listen --host 0.0.0.0 --stock-path /avasam/stock\n\n"
        "  avasam listen --auto-ack --forward-to http://127.0.0.1:3000/avasam\n\n"
        "  avasam listen --tunnel cloudflared",
    )(listen)


def _retention(value: str | None) -> int | None:
    from avasam_cli.cli._options import duration_seconds
    from avasam_cli.errors import UsageError

    if value is None:
        return None
    seconds = duration_seconds(value)
    if not seconds:
        raise UsageError(
            f"--retain {value!r} is not a duration: use for example --retain 30d or --retain 12h"
        )
    return seconds


def _metrics_address(resolved: "Settings") -> tuple[str, int] | None:
    port = resolved.get("metrics_port")
    return (resolved.require("metrics_host"), int(port)) if port else None


def _inspect_port(given: int | None, resolved: "Settings", any_port: bool) -> int | None:
    """--inspect-port, else the listener's port + 1 (none for a listener on any free port)."""
    if given is not None:
        return given
    if any_port:
        return None
    port = int(resolved.require("listen_port"))
    return port + 1 if port < 65535 else None
