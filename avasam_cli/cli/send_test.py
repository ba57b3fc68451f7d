"""`avasam sign-test-payload` and `avasam send-test`: play Avasam, on demand."""

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.cli._context import kind_of_url, local_endpoint, verification_token_for
from avasam_cli.cli._options import (
    DEFAULT_KIND,
    KIND_CHOICES,
    Kind,
    ListenerHostOption,
    ListenerPortOption,
    TokenOption,
)
from avasam_cli.errors import UsageError

if TYPE_CHECKING:
    from avasam_cli.cli._simulate import SigningOptions


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


KindArgument = Annotated[Kind, typer.Argument(help=f"Which webhook to play: {KIND_CHOICES}.")]
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


class Casing(StrEnum):
    camel = "camel"
    pascal = "pascal"


CasingOption = Annotated[
    Casing,
    typer.Option(
        help="Write the body's keys as the help page does (camel: requestId, sku) or as "
        "Avasam's API answers (pascal: RequestId, Sku); a receiver must take both.",
    ),
]


def _signing_options(
    ctx: typer.Context,
    token_flag: str | None,
    request_id: str | None,
    on: str | None,
    alg: Algorithm,
    expires_in: int,
    iat: bool,
    casing: Casing,
) -> "SigningOptions":
    from avasam_cli.cli._simulate import SigningOptions

    return SigningOptions(
        verification_token=verification_token_for(ctx, token_flag),
        request_id=request_id,
        on=on,
        algorithm=alg.value,
        expires_in=expires_in,
        include_iat=iat,
        casing=casing.value,
    )


def sign_test_payload(
    ctx: typer.Context,
    kind: KindArgument = DEFAULT_KIND,
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
    casing: CasingOption = Casing.camel,
) -> None:
    """Print a webhook body signed as Avasam signs it (JSON on stdout, nothing else)."""
    from avasam_cli.cli._simulate import ItemOptions, print_signed_body

    signing_options = _signing_options(
        ctx, verification_token, request_id, on, alg, expires_in, iat, casing
    )
    item_options = ItemOptions(kind.value, tuple(sku or ()), quantity, price, items, data_file)
    print_signed_body(item_options, signing_options, pretty)


def send_test(
    ctx: typer.Context,
    kind: KindArgument = DEFAULT_KIND,
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
    host: ListenerHostOption = None,
    port: ListenerPortOption = None,
    casing: CasingOption = Casing.camel,
) -> None:
    """Sign and send test webhooks to a receiver: one, a forgery, or a load."""
    from avasam_cli.cli._simulate import (
        ItemOptions,
        build_body,
        send_load,
        send_one,
        tampered,
        written,
    )
    from avasam_cli.net import checked_url

    if url is not None and (host or port):
        raise UsageError("give --url, or --host/--port for the local listener, not both")
    if url is not None:
        url = checked_url(url, "--url", "http://127.0.0.1:8787/webhooks/stock")
    chosen = kind.value
    given = ctx.get_parameter_source("kind")
    if url is not None and (given is None or given.name == "DEFAULT"):
        chosen = kind_of_url(ctx, url) or chosen  # --url .../webhooks/price sends a price update
    item_options = ItemOptions(chosen, tuple(sku or ()), quantity, price, items, data_file)
    if url is None:
        url = local_endpoint(ctx, host, port, chosen)
    signing_options = _signing_options(
        ctx, verification_token, request_id, on, alg, expires_in, iat, casing
    )
    if count > 1 and tamper is not None:
        raise UsageError("--tamper sends one forged request: leave out --count")
    if count > 1:
        send_load(url, item_options, signing_options, count, concurrency, timeout)
        return
    body = build_body(item_options, signing_options)
    if tamper is not None:
        body = tampered(body, tamper.value, signing_options)
    send_one(url, written(body, signing_options), timeout, tamper.value if tamper else None)


def register(app: typer.Typer) -> None:
    app.command(
        "sign-test-payload",
        epilog="Examples:\n\n"
        "  avasam sign-test-payload --pretty\n\n"
        "  avasam sign-test-payload price --sku A-1 --price 12.5\n\n"
        "  avasam sign-test-payload | curl --json @- 127.0.0.1:8787/webhooks/stock",
    )(sign_test_payload)
    app.command(
        "send-test",
        epilog="Examples:\n\n"
        "  avasam send-test\n\n"
        "  avasam send-test price --sku A-1 --price 12.5\n\n"
        "  avasam send-test --tamper signature\n\n"
        "  avasam send-test --count 1000 --concurrency 20\n\n"
        "  avasam send-test --url https://my-shop.example/avasam/stock",
    )(send_test)
