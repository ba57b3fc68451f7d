"""The command line: declarations only; each command hands its work to one function.

Heavy modules (httpx, starlette, uvicorn, jwt, sqlite3, rich) are imported
inside the commands that need them, so `avasam --help` starts quickly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from avasam_cli import __version__
from avasam_cli.defaults import DEFAULT_LEEWAY, DEFAULT_MAX_BODY_SIZE, DEFAULT_WEBHOOK_PATHS
from avasam_cli.errors import AvasamError, UsageError


class GuardedGroup(TyperGroup):
    """The single boundary where expected errors become a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AvasamError as failure:
            from avasam_cli import output

            if failure.message:
                output.error(failure.message)
            raise typer.Exit(failure.exit_code) from None


app = typer.Typer(
    cls=GuardedGroup,
    name="avasam",
    help="The command-line companion for Avasam sellers: verify, store and simulate Avasam's "
    "stock and price webhooks, and acknowledge them through the API.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would include secrets
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)
config_app = typer.Typer(
    cls=GuardedGroup,
    help="Show the effective configuration and where avasam keeps its files.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")
events_app = typer.Typer(
    cls=GuardedGroup,
    help="Browse and replay everything the listener received.",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events")


@dataclass
class State:
    profile: str | None = None


def _version(value: bool) -> None:
    if value:
        print(f"avasam-cli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Profile to use (default: $AVASAM_PROFILE, else 'default').",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_version),
    ] = False,
) -> None:
    """Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error."""
    ctx.obj = State(profile=profile)


def _config_file() -> Any:
    from avasam_cli.config import ConfigFile
    from avasam_cli.paths import locations

    return ConfigFile(locations().config_file)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _prompt(label: str, shown: str, hidden: bool) -> str:
    suffix = f" [{shown}]" if shown else ""
    answer: str = typer.prompt(
        f"{label}{suffix}", default="", show_default=False, hide_input=hidden
    )
    return answer


STDIN_HELP = "Use - to read it from standard input (keeps it out of argv and shell history)."


@app.command(
    epilog="Examples:\n\n"
    "  avasam configure\n\n"
    "  avasam configure --consumer-key CK --secret-key - < secret.txt\n\n"
    "  avasam -p staging configure --base-url https://sandbox.example\n\n"
    "  avasam configure --generate-verification-token",
)
def configure(
    ctx: typer.Context,
    consumer_key: Annotated[
        str | None, typer.Option(help=f"Consumer key from Avasam's API keys page. {STDIN_HELP}")
    ] = None,
    secret_key: Annotated[
        str | None, typer.Option(help=f"Secret key from Avasam's API keys page. {STDIN_HELP}")
    ] = None,
    verification_token: Annotated[
        str | None,
        typer.Option(help=f"The token you typed into Avasam's webhook settings. {STDIN_HELP}"),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="API base URL (default https://app.avasam.com).")
    ] = None,
    listen_host: Annotated[
        str | None, typer.Option(help="Default host for `avasam listen` and `send-test`.")
    ] = None,
    listen_port: Annotated[
        str | None, typer.Option(help="Default port for `avasam listen` and `send-test`.")
    ] = None,
    generate_verification_token: Annotated[
        bool,
        typer.Option(
            "--generate-verification-token",
            help="Create a strong random verification token, save it and print it once.",
        ),
    ] = False,
) -> None:
    """Store API keys and the webhook verification token in a profile."""
    from avasam_cli.commands import configure as command

    command.run(
        config=_config_file(),
        profile_flag=ctx.obj.profile,
        given={
            "consumer_key": consumer_key,
            "secret_key": secret_key,
            "verification_token": verification_token,
            "base_url": base_url,
            "listen_host": listen_host,
            "listen_port": listen_port,
        },
        generate_token=generate_verification_token,
        interactive=_stdin_is_terminal(),
        stdin=sys.stdin,
        prompt=_prompt,
    )


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@config_app.command(
    "show", epilog="Examples:\n\n  avasam config show\n\n  avasam -p staging config show --json"
)
def config_show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show every effective value and where it came from; secrets masked."""
    from avasam_cli.commands import config_cmd
    from avasam_cli.config import resolve

    config = _config_file()
    config_cmd.show(resolve(config, ctx.find_root().obj.profile), config, as_json)


@config_app.command(
    "path", epilog="Examples:\n\n  avasam config path\n\n  avasam config path --json"
)
def config_path(as_json: JsonOption = False) -> None:
    """Show where the config file, the token cache and the event store live."""
    from avasam_cli.commands import config_cmd
    from avasam_cli.paths import locations

    config_cmd.paths(locations(), as_json)


@app.command(
    epilog="Examples:\n\n"
    "  avasam listen\n\n"
    "  avasam listen --port 9000 --json | jq .\n\n"
    "  avasam -p staging listen --host 0.0.0.0 --stock-path /avasam/stock\n\n"
    "  avasam listen --auto-ack --forward-to http://127.0.0.1:3000/avasam",
)
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
        str, typer.Option(help="Path of the stock update endpoint.")
    ] = DEFAULT_WEBHOOK_PATHS["stock"],
    price_path: Annotated[
        str, typer.Option(help="Path of the price update endpoint.")
    ] = DEFAULT_WEBHOOK_PATHS["price"],
    leeway: Annotated[
        float, typer.Option(help="Seconds of clock drift allowed for exp/nbf/iat.", min=0)
    ] = DEFAULT_LEEWAY,
    max_body_size: Annotated[
        int, typer.Option(help="Largest body accepted, in bytes (larger: 413).", min=1)
    ] = DEFAULT_MAX_BODY_SIZE,
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
        str | None, typer.Option(help="Forward verified updates of both kinds to this URL.")
    ] = None,
    forward_stock_to: Annotated[
        str | None, typer.Option(help="Forward verified stock updates to this URL.")
    ] = None,
    forward_price_to: Annotated[
        str | None, typer.Option(help="Forward verified price updates to this URL.")
    ] = None,
    forward_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the forward target.", min=0.1)
    ] = 10.0,
) -> None:
    """Receive, verify, store and print Avasam's stock and price webhooks."""
    from avasam_cli.commands import listen as command
    from avasam_cli.commands.configure import read_stdin_values
    from avasam_cli.config import resolve
    from avasam_cli.paths import locations

    config = _config_file()
    flags = read_stdin_values({"verification_token": verification_token}, sys.stdin)
    flags["listen_host"] = host
    flags["listen_port"] = None if port is None else str(port)
    settings = resolve(config, ctx.obj.profile, flags)
    options = command.ListenOptions(
        host=settings.require("listen_host"),
        port=int(settings.require("listen_port")),
        stock_path=stock_path,
        price_path=price_path,
        leeway=leeway,
        max_body_size=max_body_size,
        as_json=as_json,
        auto_ack=auto_ack,
        forward_to={
            kind: url
            for kind, url in (
                ("stock", forward_stock_to or forward_to),
                ("price", forward_price_to or forward_to),
            )
            if url
        },
        forward_timeout=forward_timeout,
    )
    command.run(options, settings, config, locations())


class Kind(StrEnum):
    stock = "stock"
    price = "price"


class Algorithm(StrEnum):
    HS256 = "HS256"
    HS384 = "HS384"
    HS512 = "HS512"


class Tamper(StrEnum):
    signature = "signature"
    request_id = "request-id"
    expired = "expired"
    alg_none = "alg-none"
    wrong_token = "wrong-token"  # noqa: S105 - a mode's name


KindArgument = Annotated[Kind, typer.Argument(help="Which webhook to play: stock or price.")]
SkuOption = Annotated[
    list[str] | None, typer.Option("--sku", help="An item's SKU (repeat for several items).")
]
QuantityOption = Annotated[
    int | None, typer.Option(help="Quantity of each --sku item (stock; default 10).", min=0)
]
PriceOption = Annotated[
    float | None, typer.Option(help="Price of each --sku item (price; default 9.99).")
]
ItemsOption = Annotated[
    int | None,
    typer.Option("--items", help="Generate N realistic items.", min=0, max=100_000),
]
DataFileOption = Annotated[
    str | None,
    typer.Option(help="A JSON list of items to send as they are (- for standard input)."),
]
RequestIdOption = Annotated[str | None, typer.Option(help="The requestId (default: a new UUID).")]
OnOption = Annotated[str | None, typer.Option(help="The envelope's `on` time (default: now).")]
AlgOption = Annotated[Algorithm, typer.Option("--alg", help="JWT algorithm.")]
ExpiresOption = Annotated[
    int, typer.Option(help="Token lifetime in seconds; 0 leaves out `exp`.", min=0)
]
IatOption = Annotated[bool, typer.Option("--iat/--no-iat", help="Include the `iat` claim.")]
TokenOption = Annotated[
    str | None,
    typer.Option(help=f"Verification token (default: env, then profile). {STDIN_HELP}"),
]


def _signing_options(
    ctx: typer.Context,
    token_flag: str | None,
    request_id: str | None,
    on: str | None,
    alg: Algorithm,
    expires_in: int,
    iat: bool,
) -> Any:
    from avasam_cli.commands import simulate
    from avasam_cli.commands.configure import read_stdin_values

    flags = read_stdin_values({"verification_token": token_flag}, sys.stdin)
    settings = _settings(ctx, **flags)
    return simulate.SigningOptions(
        verification_token=settings.require("verification_token"),
        request_id=request_id,
        on=on,
        algorithm=alg.value,
        expires_in=expires_in,
        include_iat=iat,
    )


def _item_options(
    kind: Kind,
    sku: list[str] | None,
    quantity: int | None,
    price: float | None,
    items: int | None,
    data_file: str | None,
) -> Any:
    from avasam_cli.commands import simulate

    return simulate.ItemOptions(kind.value, tuple(sku or ()), quantity, price, items, data_file)


@app.command(
    "sign-test-payload",
    epilog="Examples:\n\n"
    "  avasam sign-test-payload --pretty\n\n"
    "  avasam sign-test-payload price --sku A-1 --price 12.5\n\n"
    "  avasam sign-test-payload | curl -H 'Content-Type: application/json' -d @- "
    "http://127.0.0.1:8787/webhooks/stock",
)
def sign_test_payload(
    ctx: typer.Context,
    kind: KindArgument = Kind.stock,
    sku: SkuOption = None,
    quantity: QuantityOption = None,
    price: PriceOption = None,
    items: ItemsOption = None,
    data_file: DataFileOption = None,
    request_id: RequestIdOption = None,
    on: OnOption = None,
    alg: AlgOption = Algorithm.HS256,
    expires_in: ExpiresOption = 300,
    iat: IatOption = True,
    verification_token: TokenOption = None,
    pretty: Annotated[bool, typer.Option(help="Indent the JSON.")] = False,
) -> None:
    """Print a webhook body signed as Avasam signs it (JSON on stdout, nothing else)."""
    from avasam_cli.commands import simulate

    signing_options = _signing_options(
        ctx, verification_token, request_id, on, alg, expires_in, iat
    )
    simulate.sign_test_payload(
        _item_options(kind, sku, quantity, price, items, data_file), signing_options, pretty
    )


@app.command(
    "send-test",
    epilog="Examples:\n\n"
    "  avasam send-test\n\n"
    "  avasam send-test price --sku A-1 --price 12.5\n\n"
    "  avasam send-test --tamper signature\n\n"
    "  avasam send-test --count 1000 --concurrency 20 --url https://my-shop.example/avasam/stock",
)
def send_test(
    ctx: typer.Context,
    kind: KindArgument = Kind.stock,
    url: Annotated[
        str | None,
        typer.Option(help="Where to send (default: the local listener's endpoint for the kind)."),
    ] = None,
    sku: SkuOption = None,
    quantity: QuantityOption = None,
    price: PriceOption = None,
    items: ItemsOption = None,
    data_file: DataFileOption = None,
    request_id: RequestIdOption = None,
    on: OnOption = None,
    alg: AlgOption = Algorithm.HS256,
    expires_in: ExpiresOption = 300,
    iat: IatOption = True,
    verification_token: TokenOption = None,
    tamper: Annotated[
        Tamper | None,
        typer.Option(help="Send a forged request on purpose; succeed only if it is refused (401)."),
    ] = None,
    count: Annotated[int, typer.Option(help="Send N requests (a load run).", min=1)] = 1,
    concurrency: Annotated[
        int, typer.Option(help="Requests in flight at once in a load run.", min=1, max=1000)
    ] = 10,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for each answer.", min=0.1)
    ] = 10.0,
) -> None:
    """Sign and send test webhooks to a receiver: one, a forgery, or a load."""
    from avasam_cli.commands import simulate
    from avasam_cli.config import local_listener_base

    signing_options = _signing_options(
        ctx, verification_token, request_id, on, alg, expires_in, iat
    )
    item_options = _item_options(kind, sku, quantity, price, items, data_file)
    if url is None:
        url = local_listener_base(_settings(ctx)) + DEFAULT_WEBHOOK_PATHS[kind.value]
    if count > 1 and tamper is not None:
        raise UsageError("--tamper sends one forged request: leave out --count")
    if count > 1:
        simulate.send_load(url, item_options, signing_options, count, concurrency, timeout)
        return
    body = simulate.build_body(item_options, signing_options)
    if tamper is not None:
        body = simulate.tampered(body, tamper.value, signing_options)
    simulate.send_one(url, body, timeout, tamper.value if tamper else None)


@app.command(
    epilog="Examples:\n\n"
    "  avasam verify body.json\n\n"
    "  avasam sign-test-payload price | avasam verify - --json",
)
def verify(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A saved webhook body, or - for stdin.")] = "-",
    kind: Annotated[
        Kind | None, typer.Option(help="stock or price (default: guessed from the items).")
    ] = None,
    verification_token: TokenOption = None,
    leeway: Annotated[
        float, typer.Option(help="Seconds of clock drift allowed for exp/nbf/iat.", min=0)
    ] = DEFAULT_LEEWAY,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Verify a saved webhook body offline with your verification token."""
    from avasam_cli.commands import verify_cmd
    from avasam_cli.commands.configure import read_stdin_values

    if source == "-" and verification_token == "-":  # noqa: S105 - the stdin marker
        raise UsageError("the body and the token cannot both come from standard input")
    flags = read_stdin_values({"verification_token": verification_token}, sys.stdin)
    settings = _settings(ctx, **flags)
    verify_cmd.run(
        source,
        kind.value if kind else None,
        settings.require("verification_token"),
        leeway,
        as_json,
    )


BaseUrlOption = Annotated[
    str | None, typer.Option(help="API base URL (default: env, then profile, then Avasam's).")
]


def _settings(ctx: typer.Context, **flags: str | None) -> Any:
    from avasam_cli.config import resolve

    return resolve(_config_file(), ctx.find_root().obj.profile, flags)


@app.command(
    epilog="Examples:\n\n"
    "  avasam ack 6f1c0a52-2d4e-4d7c-9a51-0c1d2e3f4a5b\n\n"
    "  avasam ack --pending\n\n"
    "  avasam ack --pending --base-url http://127.0.0.1:9000",
)
def ack(
    ctx: typer.Context,
    request_ids: Annotated[
        list[str] | None, typer.Argument(help="Request ids of stock updates to acknowledge.")
    ] = None,
    pending: Annotated[
        bool, typer.Option(help="Acknowledge every stored stock update not acknowledged yet.")
    ] = False,
    base_url: BaseUrlOption = None,
) -> None:
    """Acknowledge stock updates through the Avasam API (AcknowledgeStockUpdate)."""
    from avasam_cli.commands import ack as command
    from avasam_cli.paths import locations

    command.run(request_ids or [], pending, _settings(ctx, base_url=base_url), locations())


@events_app.command(
    "list",
    epilog="Examples:\n\n  avasam events list\n\n"
    "  avasam events list --kind stock --status rejected --json",
)
def events_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1)] = 20,
    kind: Annotated[Kind | None, typer.Option(help="Only stock or price.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only verified, duplicate or rejected.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List received requests, newest first."""
    from avasam_cli.commands import events
    from avasam_cli.paths import locations

    if status not in (None, "verified", "duplicate", "rejected"):
        raise UsageError("--status takes verified, duplicate or rejected")
    events.list_events(locations().store_file, limit, kind.value if kind else None, status, as_json)


@events_app.command(
    "show", epilog="Examples:\n\n  avasam events show 42\n\n  avasam events show REQUEST_ID --raw"
)
def events_show(
    key: Annotated[str, typer.Argument(help="The event's id or request id.")],
    raw: Annotated[bool, typer.Option(help="Print the stored body exactly, nothing else.")] = False,
) -> None:
    """Show one stored request: headers, body, verification, acknowledgement."""
    from avasam_cli.commands import events
    from avasam_cli.paths import locations

    events.show(locations().store_file, key, raw)


@events_app.command(
    "replay",
    epilog="Examples:\n\n  avasam events replay 42\n\n"
    "  avasam events replay REQUEST_ID --to https://my-shop.example/avasam/stock",
)
def events_replay(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The event's id or request id.")],
    to: Annotated[
        str | None, typer.Option(help="Where to send it (default: the local listener).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.", min=0.1)] = 10.0,
) -> None:
    """Send a stored request again, body and headers as received, and show the answer."""
    from avasam_cli.commands import events
    from avasam_cli.config import local_listener_base
    from avasam_cli.paths import locations

    base = local_listener_base(_settings(ctx))
    events.replay(locations().store_file, key, to, base, timeout)


@app.command(
    epilog="Examples:\n\n  avasam doctor\n\n  avasam -p staging doctor --offline",
)
def doctor(
    ctx: typer.Context,
    offline: Annotated[
        bool, typer.Option(help="Skip the check that calls Avasam with your keys.")
    ] = False,
    base_url: BaseUrlOption = None,
) -> None:
    """Check configuration, token strength, credentials, the store and the listener port."""
    from avasam_cli.commands import doctor as command
    from avasam_cli.paths import locations

    command.run(_settings(ctx, base_url=base_url), locations(), offline)


def main() -> None:
    app(prog_name="avasam")
