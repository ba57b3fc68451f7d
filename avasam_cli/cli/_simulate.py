"""Playing Avasam: signed bodies, forgeries, single sends and load runs (`send-test` and
`sign-test-payload`; imported only when one of them runs)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avasam_cli import output
from avasam_cli.cli._send import connection_failure, post_and_show
from avasam_cli.errors import OperationFailed, UsageError
from avasam_cli.store.jobs import TEST_MARKER

if TYPE_CHECKING:
    from avasam_cli.loadgen import LoadResult

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
    casing: str = "camel"  # how the body's keys are written: "camel" or "pascal"


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


def written(body: dict[str, Any], signing_options: SigningOptions, pretty: bool = False) -> bytes:
    """The body as sent, its keys in the casing asked for (the token signs the request id,
    whatever the casing of the keys around it)."""
    from avasam_cli.webhooks import sign as signing
    from avasam_cli.webhooks.keys import recased

    return signing.encode(recased(body, signing_options.casing), pretty=pretty)


def print_signed_body(items: ItemOptions, signing_options: SigningOptions, pretty: bool) -> None:
    body = written(build_body(items, signing_options), signing_options, pretty)
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


def send_one(url: str, body: bytes, timeout: float, tamper: str | None) -> None:
    headers = {"content-type": "application/json", TEST_MARKER: "1"}
    response = post_and_show(url, body, headers, timeout)
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


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _signed_bodies(items: ItemOptions, signing_options: SigningOptions) -> Iterator[bytes]:
    """Bodies signed as the run goes, with the time renewed every second, so a run longer
    than a token's lifetime still sends valid tokens.  The items are built once."""
    import time

    from avasam_cli.webhooks import sign as signing

    options = signing_options
    on = options.on or signing.iso_utc(options.now)
    data = build_items(items, on, options.now)
    now, renewed = options.now, time.monotonic()
    while True:
        if options.on is None and time.monotonic() - renewed >= 1:
            now, renewed = datetime.now(UTC), time.monotonic()
        body = signing.build_body(
            data,
            options.verification_token,
            now=now,
            request_id=options.request_id,
            on=options.on,
            algorithm=options.algorithm,
            expires_in=options.expires_in,
            include_iat=options.include_iat,
        )
        yield written(body, options)


def send_load(
    url: str,
    items: ItemOptions,
    signing_options: SigningOptions,
    count: int,
    concurrency: int,
    timeout: float,
) -> None:
    import asyncio

    from rich.progress import Progress

    from avasam_cli.loadgen import LoadResult, fastest_event_loop, run_load

    result = LoadResult()
    bodies = _signed_bodies(items, signing_options)
    console = output.make_console(stderr=True)
    interrupted = False
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("sending", total=count)
        try:
            with asyncio.Runner(loop_factory=fastest_event_loop()) as runner:
                runner.run(
                    run_load(
                        url, bodies, count, concurrency, timeout, result,
                        lambda: progress.advance(task),
                    )
                )  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
    _summarise(url, count, result, timeout)
    if interrupted:
        output.info(f"Interrupted after {result.sent} of {count} requests.")
        raise SystemExit(130)  # as after Ctrl-C anywhere else, once the summary is out
    ok = sum(n for label, n in result.statuses.items() if label.startswith("2"))
    if result.gave_up:
        raise connection_failure(url, result.first_error or OSError(), timeout)
    if ok != result.sent:
        raise OperationFailed(
            f"{result.sent - ok} of {result.sent} requests did not get a 2xx answer"
        )


def _summarise(url: str, count: int, result: LoadResult, timeout: float) -> None:
    import statistics

    answered = result.answered
    line = f"{result.sent} of {count} requests to {url} in {result.elapsed:.2f} s"
    if answered and result.elapsed:
        line += f": {answered / result.elapsed:.0f} answered requests/s"
    elif not answered:
        line += ": none answered, so no rate"
    output.out(line)
    if result.latencies:
        p50, p95, p99 = (percentile(result.latencies, f) * 1000 for f in (0.5, 0.95, 0.99))
        output.out(
            f"latency p50 {p50:.1f} ms  p95 {p95:.1f} ms  p99 {p99:.1f} ms  "
            f"(mean {statistics.fmean(result.latencies) * 1000:.1f} ms)"
        )
    output.out(
        "by answer: " + ", ".join(f"{label}: {n}" for label, n in sorted(result.statuses.items()))
    )
