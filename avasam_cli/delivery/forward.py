"""Passing a received request on to another URL: which headers go, and what comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import NamedTuple

import httpx

from avasam_cli.store.events import is_credential_header
from avasam_cli.text import excerpt

# Headers that describe the original connection, not the request: never passed on.
HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})


def passed_on(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers of a stored or received request that may be sent again elsewhere: not
    the connection's own, and not whatever credentials the sender attached (the public
    URL's callers must not reach the shop with their Authorization or cookies)."""
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in HOP_BY_HOP and not is_credential_header(name.lower())
    ]


class ForwardResult(NamedTuple):
    status: str  # the HTTP status as text, or "failed" when there was no answer
    detail: str  # latency and an excerpt of the answer, or the error's name
    answered: bool


ANSWER_READ = 64 * 1024  # of a target's answer, only an excerpt is kept: read no more


async def forward(
    client: httpx.AsyncClient,
    url: str,
    kind: str,
    headers: list[tuple[str, str]],
    body: bytes,
    deadline: float,
) -> ForwardResult:
    """POST a verified update to `url`, marked with its kind and as verified; the whole
    exchange within `deadline` seconds, and at most ANSWER_READ bytes of the answer read."""
    sent = [*passed_on(headers), ("x-avasam-event", kind), ("x-avasam-verified", "true")]
    start = time.perf_counter()
    try:
        async with (
            asyncio.timeout(deadline),
            client.stream("POST", url, content=body, headers=sent) as response,
        ):
            answer = bytearray()
            async for chunk in response.aiter_bytes():
                answer += chunk
                if len(answer) >= ANSWER_READ:
                    break
    except TimeoutError:
        return ForwardResult("failed", f"no answer within {deadline:g} s", answered=False)
    except httpx.HTTPError as error:
        return ForwardResult("failed", type(error).__name__, answered=False)
    elapsed = (time.perf_counter() - start) * 1000
    text = answer[:ANSWER_READ].decode("utf-8", "replace")
    detail = f"{elapsed:.0f} ms {excerpt(text, 80)}".strip()
    return ForwardResult(str(response.status_code), detail, answered=True)
