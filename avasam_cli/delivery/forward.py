"""Passing a received request on to another URL: which headers go, and what comes back."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import httpx

from avasam_cli.delivery.signature import message_id, signature_headers
from avasam_cli.store.events import is_credential_header
from avasam_cli.text import excerpt

# Headers that describe the original connection, not the request: never passed on.
HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})


def tls_verify(setting: bool | str) -> bool | ssl.SSLContext:
    """httpx's `verify` for --forward-ca FILE (a path) or --forward-insecure (False)."""
    return ssl.create_default_context(cafile=setting) if isinstance(setting, str) else setting


def split_header(text: str) -> tuple[str, str] | None:
    """`Name: value` as (name, value); None when it is not one header line."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or any(ch in name.strip() for ch in " \t\r\n"):
        return None
    if "\n" in value or "\r" in value:
        return None
    return name.strip(), value.strip()


def passed_on(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers of a stored or received request that may be sent again elsewhere: not
    the connection's own, and not whatever credentials the sender attached (the public
    URL's callers must not reach the shop with their Authorization or cookies)."""
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in HOP_BY_HOP
        and not is_credential_header(name.lower())
        # Standard Webhooks' headers are ours to set: a caller's would pose as our signature.
        and not name.lower().startswith("webhook-")
    ]


class ForwardResult(NamedTuple):
    status: str  # the HTTP status as text, or "failed" when there was no answer
    detail: str  # latency and an excerpt of the answer, or the error's name
    answered: bool
    code: int | None = None  # the HTTP status
    latency_ms: float | None = None
    excerpt: str = ""  # of the answer, or the error
    retry_after: float | None = None  # seconds, from a 429's or 503's Retry-After


ANSWER_READ = 64 * 1024  # of a target's answer, only an excerpt is kept: read no more


async def forward(
    client: httpx.AsyncClient,
    url: str,
    kind: str,
    headers: list[tuple[str, str]],
    body: bytes,
    deadline: float,
    extra: list[tuple[str, str]] | None = None,
    secrets: Sequence[str] = (),
    request_id: str | None = None,
) -> ForwardResult:
    """POST a verified update to `url`, marked with its kind and as verified (plus the
    `extra` headers), signed with `secrets` (Standard Webhooks; see `signature`); the
    whole exchange within `deadline` seconds, and at most ANSWER_READ bytes of the
    answer read."""
    sent = [*passed_on(headers), ("x-avasam-event", kind), ("x-avasam-verified", "true")]
    sent += extra or []
    sent += signature_headers(secrets, message_id(kind, request_id, url), body)
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
        why = f"no answer within {deadline:g} s"
        return ForwardResult("failed", why, answered=False, excerpt=why)
    except httpx.HTTPError as error:
        why = type(error).__name__
        return ForwardResult("failed", why, answered=False, excerpt=why)
    elapsed = (time.perf_counter() - start) * 1000
    shown = excerpt(answer[:ANSWER_READ].decode("utf-8", "replace"), 80)
    detail = f"{elapsed:.0f} ms {shown}".strip()
    code = response.status_code
    return ForwardResult(
        str(code), detail, True, code, elapsed, shown, retry_after(response.headers)
    )


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a Retry-After header given in seconds (an HTTP date is ignored)."""
    value = headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
