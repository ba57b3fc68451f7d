"""`avasam sign-test-payload` and `avasam send-test`: play Avasam, on demand."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from avasam_cli import output
from avasam_cli.cli._context import settings, verification_token_for
from avasam_cli.cli._options import DEFAULT_KIND, KIND_CHOICES, Kind, TokenOption
from avasam_cli.cli._send import connection_failure, post_and_show
from avasam_cli.defaults import DEFAULT_WEBHOOK_PATHS
from avasam_cli.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    import httpx

DEFAULT_SKU = "AVS-TEST-0001"


@dataclass(frozen=True)
class ItemOptions:
    kind: str = "stock"
    skus: Sequence[str] = ()
    quantity: int | None = None
    price: float | None = None
    generate: int | None = None
    data_file: str | None = None


@dataclass(frozen=True)
class SigningOptions:
    verification_token: str
    request_id: str | None = None
    on: str | None = None
    algorithm: str = "HS256"
    expires_in: int = 300
    include_iat: bool = True
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def _read_data_file(name: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read --data-file {name}: {error.strerror or error}") from None
    try:
        items = json.loads(text)
    except ValueError as error:
        raise UsageError(f"--data-file {name} is not valid JSON: {error}") from None
    if not isinstance(items, list):
        raise UsageError(
            f"--data-file {name} must hold a JSON list of items, e.g. "
            '[{"sku": "A-1", "quantity": 3, "updatedOn": "2026-01-01T00:00:00Z"}]'
        )
    return items


def build_items(options: ItemOptions, updated_on: str, now: datetime) -> list[dict[str, Any]]:
    """The `data` list from the item options (one stock item when none are given)."""
    from avasam_cli.webhooks import sign as signing

    sources = [bool(options.skus), options.generate is not None, options.data_file is not None]
    if sum(sources) > 1:
        raise UsageError("give items one way: --sku, --items or --data-file")
    if options.kind == "stock" and options.price is not None:
        raise UsageError("--price is for price updates: use `price` as the kind, or --quantity")
    if options.kind == "price" and options.quantity is not None:
        raise UsageError("--quantity is for stock updates: use `stock` as the kind, or --price")
    if options.data_file is not None:
        return _read_data_file(options.data_file)
    if options.generate is not None:
        return signing.generate_items(options.kind, options.generate, now)
    return [
        signing.make_item(
            options.kind,
            sku,
            updated_on,
            options.quantity if options.quantity is not None else options.price,
        )
        for sku in (options.skus or [DEFAULT_SKU])
    ]


def build_body(items: ItemOptions, signing_options: SigningOptions) -> dict[str, Any]:
    from avasam_cli.webhooks import sign as signing

    now = signing_options.now
    on = signing_options.on or signing.iso_utc(now)
    return signing.build_body(
        build_items(items, on, now),
        signing_options.verification_token,
        now=now,
        request_id=signing_options.request_id,
        on=on,
        algorithm=signing_options.algorithm,
        expires_in=signing_options.expires_in,
        include_iat=signing_options.include_iat,
    )


def print_signed_body(items: ItemOptions, signing_options: SigningOptions, pretty: bool) -> None:
    from avasam_cli.webhooks import sign as signing

    body = signing.encode(build_body(items, signing_options), pretty=pretty)
    sys.stdout.buffer.write(body + b"\n")
    sys.stdout.flush()


def tampered(body: dict[str, Any], mode: str, signing_options: SigningOptions) -> dict[str, Any]:
    """A copy of `body` broken the way `mode` says; each must be refused with 401."""
    import base64

    from avasam_cli.webhooks import sign as signing

    forged = dict(body)
    token: str = body["token"]
    if mode == "signature":
        head, _, signature = token.rpartition(".")
        flipped = "A" if signature[0] != "A" else "B"
        forged["token"] = f"{head}.{flipped}{signature[1:]}"
    elif mode == "request-id":
        forged["requestId"] = f"{body['requestId']}-tampered"
    elif mode == "expired":
        past = signing_options.now - timedelta(hours=2)
        forged["token"] = signing.sign_token(
            body["requestId"], signing_options.verification_token, now=past, expires_in=300
        )
    elif mode == "alg-none":

        def part(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        header = part({"alg": "none", "typ": "JWT"})
        forged["token"] = f"{header}.{part({'requestId': body['requestId']})}."
    elif mode == "wrong-token":
        from avasam_cli.config import generate_verification_token

        forged["token"] = signing.sign_token(
            body["requestId"], generate_verification_token(), now=signing_options.now
        )
    return forged


def send_one(url: str, body: dict[str, Any], timeout: float, tamper: str | None) -> None:
    from avasam_cli.webhooks import sign as signing

    headers = {"content-type": "application/json"}
    response = post_and_show(url, signing.encode(body), headers, timeout)
    if tamper is None:
        if not response.is_success:
            raise OperationFailed(f"the receiver answered {response.status_code}, not 2xx")
        return
    if response.status_code == 401:
        output.info(f"Refused as it should be: the {tamper} forgery was answered 401.")
    elif response.is_success:
        raise OperationFailed(
            f"the receiver ACCEPTED a forged request ({tamper}): it must answer 401"
        )
    else:
        raise OperationFailed(
            f"the receiver answered {response.status_code} to a forged request ({tamper}); "
            "a refused signature should be 401"
        )


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    first_error: str | None = None


async def _load(
    url: str, bodies: list[bytes], concurrency: int, timeout: float, result: LoadResult
) -> None:
    import asyncio

    import httpx
    from rich.progress import Progress

    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    with Progress(console=output.make_console(stderr=True), transient=True) as progress:
        task = progress.add_task("sending", total=len(bodies))

        async def worker(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                content = queue.get_nowait()
                start = time.perf_counter()
                try:
                    response = await client.post(url, content=content, headers=headers)
                except httpx.HTTPError as error:
                    label = type(error).__name__
                    result.first_error = result.first_error or str(
                        connection_failure(url, error, timeout)
                    )
                else:
                    label = str(response.status_code)
                    result.latencies.append(time.perf_counter() - start)
                result.statuses[label] += 1
                progress.advance(task)

        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            begin = time.perf_counter()
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
            result.elapsed = time.perf_counter() - begin


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def send_load(
    url: str,
    items: ItemOptions,
    signing_options: SigningOptions,
    count: int,
    concurrency: int,
    timeout: float,
) -> None:
    import asyncio
    import statistics

    from avasam_cli.webhooks import sign as signing

    bodies = [signing.encode(build_body(items, signing_options)) for _ in range(count)]
    result = LoadResult()
    asyncio.run(_load(url, bodies, concurrency, timeout, result))
    ok = sum(n for status, n in result.statuses.items() if status.startswith("2"))
    rate = count / result.elapsed if result.elapsed else float("nan")
    output.out(f"{count} requests to {url} in {result.elapsed:.2f} s: {rate:.0f} requests/s")
    if result.latencies:
        p50, p95, p99 = (percentile(result.latencies, f) * 1000 for f in (0.5, 0.95, 0.99))
        output.out(
            f"latency p50 {p50:.1f} ms  p95 {p95:.1f} ms  p99 {p99:.1f} ms  "
            f"(mean {statistics.fmean(result.latencies) * 1000:.1f} ms)"
        )
    output.out(
        "by status: " + ", ".join(f"{status}: {n}" for status, n in sorted(result.statuses.items()))
    )
    if ok != count:
        hint = f" ({result.first_error})" if result.first_error else ""
        raise OperationFailed(f"{count - ok} of {count} requests did not get a 2xx answer{hint}")


# --- The commands ------------------------------------------------------------------
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


def _signing_options(
    ctx: typer.Context,
    token_flag: str | None,
    request_id: str | None,
    on: str | None,
    alg: Algorithm,
    expires_in: int,
    iat: bool,
) -> SigningOptions:
    return SigningOptions(
        verification_token=verification_token_for(ctx, token_flag),
        request_id=request_id,
        on=on,
        algorithm=alg.value,
        expires_in=expires_in,
        include_iat=iat,
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
) -> None:
    """Print a webhook body signed as Avasam signs it (JSON on stdout, nothing else)."""
    signing_options = _signing_options(
        ctx, verification_token, request_id, on, alg, expires_in, iat
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
) -> None:
    """Sign and send test webhooks to a receiver: one, a forgery, or a load."""
    signing_options = _signing_options(
        ctx, verification_token, request_id, on, alg, expires_in, iat
    )
    item_options = ItemOptions(kind.value, tuple(sku or ()), quantity, price, items, data_file)
    if url is None:
        url = local_listener_url(ctx) + DEFAULT_WEBHOOK_PATHS[kind.value]
    if count > 1 and tamper is not None:
        raise UsageError("--tamper sends one forged request: leave out --count")
    if count > 1:
        send_load(url, item_options, signing_options, count, concurrency, timeout)
        return
    body = build_body(item_options, signing_options)
    if tamper is not None:
        body = tampered(body, tamper.value, signing_options)
    send_one(url, body, timeout, tamper.value if tamper else None)


def local_listener_url(ctx: typer.Context) -> str:
    """The base URL of `avasam listen` on this machine, from the profile's address."""
    from avasam_cli.net import local_base_url

    resolved = settings(ctx)
    return local_base_url(resolved.require("listen_host"), resolved.require("listen_port"))


def register(app: typer.Typer) -> None:
    app.command(
        "sign-test-payload",
        epilog="Examples:\n\n"
        "  avasam sign-test-payload --pretty\n\n"
        "  avasam sign-test-payload price --sku A-1 --price 12.5\n\n"
        "  avasam sign-test-payload | curl -H 'Content-Type: application/json' -d @- "
        "http://127.0.0.1:8787/webhooks/stock",
    )(sign_test_payload)
    app.command(
        "send-test",
        epilog="Examples:\n\n"
        "  avasam send-test\n\n"
        "  avasam send-test price --sku A-1 --price 12.5\n\n"
        "  avasam send-test --tamper signature\n\n"
        "  avasam send-test --count 1000 --concurrency 20 --url https://my-shop.example/avasam/stock",
    )(send_test)
