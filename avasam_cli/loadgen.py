"""The load generator behind `send-test --count`: enough speed to measure the receiver.

A general HTTP client spends most of a small request in pool bookkeeping (httpx
measured about 500 requests/s where wrk got 14,500).  A load run needs much
less: each worker owns one keep-alive HTTP/1.1 connection on asyncio streams,
writes a POST, and reads one answer (Content-Length or chunked).  Nothing is
imported, looked up or allocated per request beyond the bytes themselves.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

CONNECT_FAILURES_BEFORE_GIVING_UP = 3  # in a row, before any answer: nothing is listening


class AnswerError(Exception):
    """The server's answer was not HTTP/1.1 as we can read it."""


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests only
    statuses: Counter[str] = field(default_factory=Counter)  # "200 ok", "200 duplicate", ...
    sent: int = 0
    elapsed: float = 0.0
    first_error: Exception | None = None
    gave_up: bool = False  # stopped early: the first connections all failed

    @property
    def answered(self) -> int:
        return len(self.latencies)

    def record_failure(self, error: Exception) -> None:
        self.sent += 1
        self.statuses[_error_label(error)] += 1
        self.first_error = self.first_error or error
        if not self.answered and self.statuses.total() >= CONNECT_FAILURES_BEFORE_GIVING_UP:
            self.gave_up = True


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname or "", port, path, tls)

    def request_head(self, length: int) -> bytes:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
            "X-Avasam-Cli-Test: 1\r\n"  # see delivery.outbox.TEST_MARKER
            "User-Agent: avasam-cli send-test\r\n\r\n"
        ).encode("latin-1")


def fastest_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when uvicorn[standard] brought it (about a tenth more requests/s
    in bench/load.py), else asyncio's own (None)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _answer_label(status: int, body: bytes) -> str:
    """`200 ok`, `200 duplicate`, `401 bad_signature`: the status and the receiver's word."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return str(status)
    word = answer.get("status") or answer.get("error") if isinstance(answer, dict) else None
    return f"{status} {word}" if isinstance(word, str) and word.isidentifier() else str(status)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise AnswerError(f"not an HTTP answer: {lines[0][:80]!r}") from None
    length = -1
    chunked = False
    keep_alive = lines[0].startswith("HTTP/1.1")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            keep_alive = value.strip().lower() != "close"
    if chunked:
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # no trailers are sent to a POST's answer
        return status, b"".join(parts), keep_alive
    if length >= 0:
        return status, await reader.readexactly(length), keep_alive
    return status, await reader.read(), False  # until the server closes


class _Connection:
    """One keep-alive connection, opened on first use and again after the server closes it."""

    def __init__(self, target: Target, context: ssl.SSLContext | None) -> None:
        self.target, self.context = target, context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is not None:
            try:
                return await self._exchange(request)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()  # the server closed it while idle: once more, on a new one
        self.reader, self.writer = await asyncio.open_connection(
            self.target.host, self.target.port, ssl=self.context
        )
        return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        status, body, keep_alive = await _read_answer(self.reader)
        if not keep_alive:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_load(
    url: str,
    bodies: Iterator[bytes],
    count: int,
    concurrency: int,
    timeout: float,
    result: LoadResult,
    on_answer: Callable[[], None] = lambda: None,
) -> None:
    """POST `count` bodies from `bodies` to `url` over `concurrency` connections; stop
    early when the first connections all fail (nothing is listening)."""
    target = Target.parse(url)
    context = ssl.create_default_context() if target.tls else None
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        connection = _Connection(target, context)
        try:
            while remaining > 0 and not result.gave_up:
                remaining -= 1
                body = next(bodies)
                request = target.request_head(len(body)) + body
                start = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout):
                        status, answer = await connection.post(request)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, AnswerError) as error:
                    connection.close()
                    result.record_failure(error)
                else:
                    result.latencies.append(time.perf_counter() - start)
                    result.sent += 1
                    result.statuses[_answer_label(status, answer)] += 1
                on_answer()
        finally:
            connection.close()

    begin = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    finally:
        result.elapsed = time.perf_counter() - begin


def _error_label(error: Exception) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, asyncio.IncompleteReadError):
        return "connection closed"
    return type(error).__name__
