"""Sending to a receiver and showing its answer: `send-test` and `events replay` alike."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from avasam_cli import output
from avasam_cli.errors import NetworkError, OperationFailed

if TYPE_CHECKING:
    import httpx


def connection_failure(
    url: str, error: Exception, timeout: float, url_option: str = "--url"
) -> OperationFailed:
    """A failed request to a receiver, in words: nothing listening, or no answer in time."""
    import httpx

    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return NetworkError(f"timed out after {timeout:g} s waiting for {url}")
    if isinstance(error, httpx.ConnectError | ConnectionRefusedError):
        from urllib.parse import urlsplit

        port = urlsplit(url).port
        return NetworkError(
            f"nothing is listening at {url} (port {port}): start `avasam listen` in another "
            f"terminal, or pass --port (the listener's port) or {url_option}"
        )
    return NetworkError(f"request to {url} failed: {error}")


def post_and_show(
    url: str,
    content: bytes,
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
    timeout: float,
    url_option: str = "--url",
) -> httpx.Response:
    """POST to a receiver; print status, latency and an excerpt of the answer; return it."""
    import httpx

    from avasam_cli.text import excerpt

    written: list[float] = []

    def trace(event: str, info: object) -> None:
        if event.endswith("send_request_headers.started"):
            written.append(time.perf_counter())

    # The clock runs from the request being written to the whole answer read, as curl's
    # does: making the client (TLS context, pools) is not the receiver's time.
    with httpx.Client(timeout=timeout) as client:
        try:
            response = client.post(
                url, content=content, headers=headers, extensions={"trace": trace}
            )
        except httpx.HTTPError as error:
            raise connection_failure(url, error, timeout, url_option) from None
        elapsed = (time.perf_counter() - written[-1]) * 1000
    output.out(f"{response.status_code} {response.reason_phrase}  {elapsed:.1f} ms  {url}")
    output.out(excerpt(response.text, 300))
    return response
