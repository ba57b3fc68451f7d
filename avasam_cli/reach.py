"""The go-live self-test: does the public URL pasted into Avasam reach this listener?

The first day's biggest risk is a URL that leads elsewhere: a tunnel that is down, a
proxy with the wrong path, another server.  `probe` sends one signed test update to
the public URL's stock endpoint and looks for its request id in the store the running
listener writes to; the listener commits before it answers, so one look after the
answer is enough.  The update is marked as a test and as a probe: it is stored and
shown, never forwarded, never acknowledged.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from avasam_cli.store.events import PROBE_MARKER, TEST_MARKER

if TYPE_CHECKING:
    import httpx

    from avasam_cli.paths import StoreLocation

PROBE_TIMEOUT = 10.0  # seconds for the public URL to answer


@dataclass(frozen=True)
class Reach:
    reached: bool
    said: str  # one sentence, for doctor's check line and listen's note


def probe(
    public_url: str, stock_path: str, token: str, store: StoreLocation,
    timeout: float = PROBE_TIMEOUT,
) -> Reach:  # fmt: skip
    import httpx

    from avasam_cli.webhooks import sign as signing

    url = public_url.rstrip("/") + stock_path
    now = datetime.now(UTC)
    request_id = f"go-live-{uuid.uuid4()}"
    items = signing.generate_items("stock", 1, now)
    body = signing.encode(signing.build_body(items, token, now=now, request_id=request_id))
    headers = {"content-type": "application/json", TEST_MARKER: "1", PROBE_MARKER: "1"}
    started = time.perf_counter()
    try:
        answer = httpx.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        return Reach(False, f"{url} does not reach this listener: {_no_answer(error, timeout)}")
    elapsed = (time.perf_counter() - started) * 1000
    arrived = _stored_status(store, request_id)
    if arrived is None:
        return Reach(False, f"{url} answered {_answer(answer)}, but the test update never "
                            f"reached this listener: {_hint(answer, stock_path)}")  # fmt: skip
    if answer.status_code != 200:
        return Reach(False, f"{url} reaches this listener, which answered {_answer(answer)} "
                            f"(stored as {arrived}): is it the same profile's token?")  # fmt: skip
    said = (f"{url} reaches this listener: the test update arrived and was answered 200 in "
            f"{elapsed:.0f} ms (test {request_id}, never acknowledged)")  # fmt: skip
    return Reach(True, said)


def _stored_status(store: StoreLocation, request_id: str) -> str | None:
    from avasam_cli.errors import StoreError
    from avasam_cli.store.base import open_store

    try:
        with open_store(store, read_only=True) as events:
            found = events.find(request_id)
    except StoreError:
        return None
    if found is None:
        return None
    return found.status if found.status != "rejected" else f"rejected: {found.reason}"


def _no_answer(error: httpx.HTTPError, timeout: float) -> str:
    import ssl

    import httpx

    if isinstance(error, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return f"the TLS handshake failed ({cause.reason or cause}): its certificate or proxy"
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, httpx.ConnectError):
        return f"nothing answered ({error or 'connection failed'}): is the tunnel or proxy up?"
    return f"{type(error).__name__}: {error}"


def _answer(answer: httpx.Response) -> str:
    from avasam_cli.text import excerpt

    server = answer.headers.get("server")
    text = excerpt(answer.text, 80)
    return (f"{answer.status_code}" + (f" {text!r}" if text else "")
            + (f" (server: {server})" if server else ""))  # fmt: skip


def _hint(answer: httpx.Response, stock_path: str) -> str:
    if answer.status_code == 404:
        return (f"a proxy or tunnel with the wrong path? This listener's stock endpoint is "
                f"{stock_path}, and the URL pasted into Avasam must end with it")  # fmt: skip
    if answer.status_code in (502, 503, 504):
        return "a proxy that cannot reach this listener: is it pointed at the listener's port?"
    return "another server answered: the URL leads elsewhere"
