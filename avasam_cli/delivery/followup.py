"""What the listener does after answering a verified update: acknowledge it, forward it.

Nothing here delays an answer to Avasam: it starts once the 200 is sent.
Acknowledgements run one at a time on a worker thread with the API client's
retries; forwarding runs on the event loop with an async client.  Outcomes are
printed on stderr and written to the `ResultLog` given at start (the
receiver's store writer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from avasam_cli.defaults import DEFAULT_FORWARD_TIMEOUT, DEFAULT_SHUTDOWN_WAIT
from avasam_cli.delivery.acknowledge import acknowledge_one
from avasam_cli.delivery.forward import forward
from avasam_cli.store.base import ResultLog
from avasam_cli.webhooks.kinds import KINDS

Say = Callable[[str], None]
# What the forwarding warnings recommend for resending what a target missed.
RESEND_HINT = "`avasam events replay ID --to URL` resends one"


@dataclass
class FollowUp:
    say: Say
    acknowledge: Callable[[str], str] | None = None  # the API client's acknowledge
    forward_to: Mapping[str, str] = field(default_factory=dict)  # kind -> URL
    forward_timeout: float = DEFAULT_FORWARD_TIMEOUT
    own_port: int | None = None  # the listener's port, to recognise a forward to itself
    shutdown_wait: float = DEFAULT_SHUTDOWN_WAIT  # seconds a stop waits for what is in flight
    _log: ResultLog | None = None
    # Acknowledgements wait in `_queued` for the one worker thread.  It is a daemon: an
    # acknowledgement still in flight when the stop's wait is over must not hold the exit.
    _queued: dict[str, None] = field(default_factory=dict)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _in_flight: str | None = None
    _closing: bool = False
    _worker: threading.Thread = field(init=False)
    _down: set[str] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._worker = threading.Thread(target=self._ack_loop, name="avasam-ack", daemon=True)
        self._worker.start()

    @property
    def active(self) -> bool:
        return self.acknowledge is not None or bool(self.forward_to)

    async def start(self, log: ResultLog) -> None:
        self._log = log
        if self.forward_to:
            self._client = httpx.AsyncClient(timeout=self.forward_timeout)
            for url in sorted(set(self.forward_to.values())):
                if self._is_this_listener(url):
                    self.say(
                        f"Warning: forward target {url} is this listener itself: forwarded "
                        "updates would come back as duplicates. Did you mean your shop's port?"
                    )
                else:
                    await self._check_reachable(url)

    def _is_this_listener(self, url: str) -> bool:
        from urllib.parse import urlsplit

        from avasam_cli.net import WILDCARD_HOSTS, is_loopback_host

        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname
        return port == self.own_port and (is_loopback_host(host) or host in WILDCARD_HOSTS)

    async def _check_reachable(self, url: str) -> None:
        assert self._client is not None
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as error:
            self._down.add(url)
            self.say(
                f"Warning: forward target {url} is not reachable ({type(error).__name__}); "
                f"updates are still stored, and {RESEND_HINT}"
            )
        else:
            self.say(f"Forwarding verified updates to {url} (it answered {response.status_code})")

    def submit(
        self, kind: str, request_id: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Called right after a verified, new update has been answered 200."""
        if self.acknowledge is not None and KINDS[kind].acknowledged:
            with self._wake:
                self._queued[request_id] = None
                self._wake.notify()
        url = self.forward_to.get(kind)
        if url is not None:
            task = asyncio.get_running_loop().create_task(
                self._forward(url, kind, request_id, headers, body)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _ack_loop(self) -> None:
        while True:
            with self._wake:
                while not self._queued and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                request_id = next(iter(self._queued))
                del self._queued[request_id]
                self._in_flight = request_id
            try:
                self._acknowledge(request_id)
            except Exception as error:  # a stop may close the store under a late answer
                self.say(f"Warning: the acknowledgement of {request_id} was not recorded: {error}")
            finally:
                self._in_flight = None

    def _acknowledge(self, request_id: str) -> None:
        assert self.acknowledge is not None and self._log is not None
        outcome = acknowledge_one(self.acknowledge, request_id, self._log)
        if outcome.acknowledged:
            self.say(f"Acknowledged {request_id} ({outcome.detail})")
        else:
            self.say(
                f"Acknowledgement of {request_id} failed: {outcome.detail} "
                "(`avasam ack --pending` will retry)"
            )

    async def _forward(
        self, url: str, kind: str, request_id: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        assert self._client is not None and self._log is not None
        text_headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
        result = await forward(self._client, url, kind, text_headers, body, self.forward_timeout)
        if not result.answered:
            if url not in self._down:
                self._down.add(url)
                self.say(
                    f"Warning: forward target {url} is down ({result.detail}); updates are "
                    f"still stored and answered, and {RESEND_HINT}"
                )
        else:
            if url in self._down:
                self._down.discard(url)
                self.say(f"Forward target {url} is reachable again")
            self.say(f"Forwarded {kind} {request_id} to {url}: {result.status} in {result.detail}")
        self._log.record_forward(kind, request_id, result.status, result.detail)

    async def close(self) -> list[str]:
        """Wait at most `shutdown_wait` in all for the forwards and the acknowledgement in
        flight; return the acknowledgements left pending (never started, or not finished)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_wait
        with self._wake:
            self._closing = True
            pending = list(self._queued)
            self._queued.clear()
            self._wake.notify()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.shutdown_wait)
            for task in late:
                task.cancel()
            if late:
                self.say(
                    f"Warning: {len(late)} forwards still in flight after {self.shutdown_wait:g} s "
                    f"were stopped; {RESEND_HINT}"
                )
        if self._client is not None:
            await self._client.aclose()
        await asyncio.to_thread(self._worker.join, max(0.0, deadline - loop.time()))
        in_flight = self._in_flight
        if self._worker.is_alive() and in_flight is not None:
            self.say(
                f"Warning: the acknowledgement of {in_flight} was still in flight after "
                f"{self.shutdown_wait:g} s and was abandoned"
            )
            pending.insert(0, in_flight)
        return pending


def describe_pending(pending: list[str]) -> str:
    shown = ", ".join(pending[:10]) + (
        f" and {len(pending) - 10} more" if len(pending) > 10 else ""
    )
    return (
        f"{len(pending)} acknowledgements still pending ({shown}): "
        "run `avasam ack --pending` to send them"
    )
