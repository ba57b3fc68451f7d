"""What the listener does after answering a verified update: acknowledge it, forward it.

Nothing here delays an answer to Avasam: it starts once the 200 is sent.
Acknowledgements run one at a time on a worker thread with the API client's
retries; forwarding runs on the event loop with an async client.  Outcomes are
printed on stderr and stored on the update's row (on the worker thread, since
disk I/O stays off the event loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from avasam_cli.errors import ApiError, NetworkError

# Headers that describe the original connection, not the request: not forwarded.
HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})
Say = Callable[[str], None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class FollowUp:
    store_path: Path
    say: Say
    acknowledge: Callable[[str], str] | None = None  # the API client's acknowledge
    forward_to: Mapping[str, str] = field(default_factory=dict)  # kind -> URL
    forward_timeout: float = 10.0
    _worker: concurrent.futures.ThreadPoolExecutor = field(init=False)
    _pending_acks: dict[str, concurrent.futures.Future[None]] = field(default_factory=dict)
    _down: set[str] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="avasam-ack")

    @property
    def active(self) -> bool:
        return self.acknowledge is not None or bool(self.forward_to)

    async def start(self) -> None:
        if self.forward_to:
            self._client = httpx.AsyncClient(timeout=self.forward_timeout)
            for url in sorted(set(self.forward_to.values())):
                await self._check_reachable(url)

    async def _check_reachable(self, url: str) -> None:
        assert self._client is not None
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as error:
            self._down.add(url)
            self.say(
                f"Warning: forward target {url} is not reachable ({type(error).__name__}); "
                "updates are still stored, and `avasam events replay` can resend them"
            )
        else:
            self.say(f"Forwarding verified updates to {url} (it answered {response.status_code})")

    def submit(
        self, kind: str, request_id: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Called right after a verified, new update has been answered 200."""
        if self.acknowledge is not None and kind == "stock":
            future = self._worker.submit(self._acknowledge, request_id)
            self._pending_acks[request_id] = future
            future.add_done_callback(lambda _: self._pending_acks.pop(request_id, None))
        url = self.forward_to.get(kind)
        if url is not None:
            task = asyncio.get_running_loop().create_task(
                self._forward(url, kind, request_id, headers, body)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _record(self, column: str, request_id: str, kind: str, status: str, detail: str) -> None:
        from avasam_cli.store import EventStore

        with EventStore(self.store_path) as store:
            if column == "ack":
                store.record_acknowledgement(request_id, status, detail, _now())
            else:
                store.record_forward(kind, request_id, status, detail)

    def _acknowledge(self, request_id: str) -> None:
        assert self.acknowledge is not None
        try:
            answer = self.acknowledge(request_id)
        except (ApiError, NetworkError) as error:
            self.say(
                f"Acknowledgement of {request_id} failed: {error.message} "
                "(`avasam ack --pending` will retry)"
            )
            self._record("ack", request_id, "stock", "failed", error.message)
            return
        self.say(f"Acknowledged {request_id} ({answer})")
        self._record("ack", request_id, "stock", "acknowledged", answer)

    async def _forward(
        self, url: str, kind: str, request_id: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        assert self._client is not None
        sent = [(n, v) for n, v in headers if n.decode("latin-1").lower() not in HOP_BY_HOP]
        sent += [(b"x-avasam-event", kind.encode()), (b"x-avasam-verified", b"true")]
        start = time.perf_counter()
        try:
            response = await self._client.post(url, content=body, headers=sent)
        except httpx.HTTPError as error:
            status, detail = "failed", f"{type(error).__name__}"
            if url not in self._down:
                self._down.add(url)
                self.say(
                    f"Warning: forward target {url} is down ({detail}); updates are still "
                    "stored and answered, and `avasam events replay` can resend them"
                )
        else:
            elapsed = (time.perf_counter() - start) * 1000
            excerpt = " ".join(response.text.split())[:80]
            status, detail = str(response.status_code), f"{elapsed:.0f} ms {excerpt}".strip()
            if url in self._down:
                self._down.discard(url)
                self.say(f"Forward target {url} is reachable again")
            self.say(f"Forwarded {kind} {request_id} to {url}: {status} in {detail}")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._worker, self._record, "forward", request_id, kind, status, detail
        )

    async def close(self) -> list[str]:
        """Finish forwards in flight; return the acknowledgements left pending."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        pending = [rid for rid, future in self._pending_acks.items() if not future.running()]
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown_worker)
        return pending

    def _shutdown_worker(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)


def describe_pending(pending: list[str]) -> str:
    shown = ", ".join(pending[:10]) + (
        f" and {len(pending) - 10} more" if len(pending) > 10 else ""
    )
    return (
        f"{len(pending)} acknowledgements still pending ({shown}): "
        "run `avasam ack --pending` to send them"
    )
