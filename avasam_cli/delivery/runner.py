"""The delivery runner: takes due jobs from the outbox and delivers them.

One runs inside `avasam listen` (in a process of its own, off the request path),
and `avasam deliveries run` is one that stops when nothing is due.  Any number
may run at once on one store: claims are exclusive (see the store's outbox).

Each forward target is served by one task, in the order its jobs were queued;
a failure leaves the rest of its queue waiting behind it.  Acknowledgements go
through the API client (its token renewal and retries included), one at a time
on a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from avasam_cli import logs
from avasam_cli.alerts import Alerts
from avasam_cli.defaults import DEFAULT_FORWARD_TIMEOUT
from avasam_cli.delivery.forward import forward, tls_verify
from avasam_cli.delivery.outbox import RetryRules, Verdict, judge
from avasam_cli.delivery.signature import Secrets, no_secrets
from avasam_cli.errors import ApiError, CredentialsRefused, NetworkError, StoreError
from avasam_cli.metrics.counts import Counts
from avasam_cli.metrics.counts import here as metrics_here
from avasam_cli.store.base import EventStore
from avasam_cli.store.deliveries import Attempt, DeliveryJob
from avasam_cli.store.events import REDACTED
from avasam_cli.store.jobs import ACKNOWLEDGE, FORWARD, JOB_TYPES

Say = Callable[[str], None]
PER_TARGET = 200  # jobs claimed at once per target
LEASE_MARGIN = 60.0  # seconds a claim outlives the time its jobs may take
STORE_RETRY = 1.0  # seconds between looks at a store that is away
# An attempt's outcome: verdict, status, latency (ms), excerpt, Retry-After (s).
Outcome = tuple[Verdict, str, float | None, str, float | None]


@dataclass
class Tally:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0

    def add(self, other: Tally) -> None:
        self.delivered += other.delivered
        self.retrying += other.retrying
        self.dead += other.dead

    def count(self, state: str) -> None:
        if state == "delivered":
            self.delivered += 1
        elif state == "dead":
            self.dead += 1
        else:
            self.retrying += 1


@dataclass
class DeliveryRunner:
    store: EventStore
    name: str
    say: Say
    acknowledge: Callable[[str], str] | None = None  # the API client's
    rules: RetryRules = field(default_factory=RetryRules)
    timeout: float = DEFAULT_FORWARD_TIMEOUT
    extra_headers: Sequence[tuple[str, str]] = ()
    verify: bool | str = True  # TLS: False, or a CA bundle's path, for a local HTTPS shop
    clock: Callable[[], float] = time.time
    on_attempt: Callable[[str], None] | None = None  # the job's state after each attempt
    only: str | None = None  # claim jobs of this type only (FORWARD, ACKNOWLEDGE)
    forward_secrets: Secrets = no_secrets  # sign forwards with these (Standard Webhooks)
    alerts: Alerts | None = None  # a person is told of a dead job, of refused API keys
    counts: Counts | None = field(default_factory=metrics_here)  # with listen --metrics-port
    _client: httpx.AsyncClient | None = None
    _down: set[str] = field(default_factory=set)
    _said_no_keys: bool = False
    _said_missing: set[str] = field(default_factory=set)
    _stop: asyncio.Event | None = None  # watch's: once set, no job is started

    async def __aenter__(self) -> DeliveryRunner:
        self._client = httpx.AsyncClient(timeout=self.timeout, verify=tls_verify(self.verify))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def run_due(self, everything: bool = False) -> Tally:
        """Deliver what is due now, pass after pass, until nothing due is left; with
        `everything`, the first pass takes every pending job, waits of the schedule
        skipped (`deliveries run`: the target is back, deliver now)."""
        total = Tally()
        due_by: float | None = float("inf") if everything else None
        while True:
            lease = self.timeout * PER_TARGET + LEASE_MARGIN
            jobs = self.store.claim_deliveries(
                self.name, self.clock(), lease, PER_TARGET, due_by, self.only
            )
            due_by = None
            if not jobs or self._stopping():
                self.store.release_deliveries([job.id for job in jobs], self.name)
                return total
            queues: dict[tuple[str, str], list[DeliveryJob]] = defaultdict(list)
            for job in jobs:
                queues[(job.job, job.target)].append(job)
            tallies = await asyncio.gather(*(self._drain(queue) for queue in queues.values()))
            progress = Tally()
            for tally in tallies:
                progress.add(tally)
            total.add(progress)
            if progress.delivered + progress.dead == 0:
                return total  # everything claimed is waiting for a retry: nothing more is due

    async def watch(self, stop: asyncio.Event, poll: float = 0.2, recheck: float = 1.0) -> Tally:
        """Deliver as jobs become due, until `stop` is set.

        Claiming takes the store's write lock, which the listener's commits need too;
        so every `poll` seconds only a cheap read asks whether there is anything new,
        and claiming runs when a job was added, or at most every `recheck` seconds while
        a job is due (it may be one waiting behind a failing target).  The first pass
        takes every pending job, the schedule's waits skipped.
        """
        self._stop = stop  # a backlog is left in the outbox, for the next runner
        total = Tally()
        # seen is -1 for a runner starting (a listener after a stop or a crash) and for
        # one whose store is back: each tries every job that waits, at once, and either
        # may meet the store going away.
        seen, next_check = -1, 0.0
        away: str | None = None  # why the store cannot be read now, said once
        while not stop.is_set():
            try:
                if away is not None:
                    self.store.ensure_present()  # a broken connection is opened again
                newest, due = self.store.outbox_marker()
                now = self.clock()
                if newest != seen or (due is not None and due <= now and now >= next_check):
                    everything = seen == -1
                    seen, next_check = newest, now + recheck
                    total.add(await self.run_due(everything=everything))
                if away is not None:
                    away = None
                    self.say("The event store is back: delivering what waits.")
            except StoreError as error:  # PostgreSQL restarting, say: wait, look again
                if away is None:
                    self.say(f"Warning: {error.message}; deliveries wait until it is back")
                away, seen = error.message, -1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STORE_RETRY if away else poll)
        return total

    async def _drain(self, queue: list[DeliveryJob]) -> Tally:
        """Deliver one target's claimed jobs in order; the first failure gives the rest
        back, to wait behind it.  Each attempt is recorded before the next is sent: after
        a crash, only the one in flight can reach the target again."""
        tally = Tally()
        for index, job in enumerate(queue):
            attempt = None if self._stopping() else await self._attempt(job)
            if attempt is None:  # asked to stop, or it cannot be tried here: give it back
                self.store.release_deliveries([j.id for j in queue[index:]], self.name)
                break
            self.store.finish_deliveries([attempt])
            tally.count(attempt.state)
            if self.counts is not None:
                outcome = "failed" if attempt.state == "pending" else attempt.state
                self.counts.count("avasam_delivery_attempts", (job.job, outcome))
            self._tell(job, attempt)
            if self.on_attempt is not None:
                self.on_attempt(attempt.state)
            in_order = job.job in JOB_TYPES and JOB_TYPES[job.job].in_order_per_target
            if attempt.state == "pending" and in_order:  # the rest wait behind it
                self.store.release_deliveries([j.id for j in queue[index + 1 :]], self.name)
                break
        return tally

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _attempt(self, job: DeliveryJob) -> Attempt | None:
        """One attempt by the handler of the job's type; None when this run cannot make
        it (no API keys, a missing forward header, a type it does not know)."""
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        handler = {FORWARD: self._forward, ACKNOWLEDGE: self._acknowledge}.get(job.job)
        outcome = await handler(job) if handler is not None else None
        if outcome is None:
            return None
        verdict, status, latency, text, after = outcome
        state, wait = self.rules.next_state(
            verdict, job.attempts + 1, self.clock() - job.queued_at, after
        )
        return Attempt(job.id, at, status, latency, text, state, self.clock() + wait)

    def _lacks_headers(self, job: DeliveryJob) -> bool:
        """A forward queued with a header this runner does not have waits (said once per
        header): sent without it, the shop would refuse it, and the job would go dead."""
        needed = set(job.headers_needed.split(",")) if job.headers_needed else set()
        missing = needed - {name.lower() for name, _ in self.extra_headers}
        for name in sorted(missing - self._said_missing):
            self._said_missing.add(name)
            self.say(
                f"Warning: forwards to {job.target} were queued with the header {name}, which "
                "this run does not have: they stay pending. Save it for every run with "
                f"`avasam configure --forward-header '{name}: VALUE'`"
            )
        return bool(missing)

    async def _forward(self, job: DeliveryJob) -> Outcome | None:
        if self._lacks_headers(job):
            return None
        assert self._client is not None
        headers = [
            (name, value) for name, value in json.loads(job.headers_json) if value != REDACTED
        ]
        extra = [*self.extra_headers, ("x-avasam-delivery-attempt", str(job.attempts + 1))]
        result = await forward(
            self._client,
            job.target,
            job.kind,
            headers,
            job.body,
            self.timeout,
            extra,
            self.forward_secrets(),
            job.request_id,
        )
        return (
            judge(result.code),
            result.status,
            result.latency_ms,
            result.excerpt,
            (result.retry_after),
        )

    async def _acknowledge(self, job: DeliveryJob) -> Outcome | None:
        if self.acknowledge is None:
            if not self._said_no_keys:
                self._said_no_keys = True
                self.say(
                    "Warning: acknowledgements are waiting in the outbox, and this run "
                    "has no API keys to send them: `avasam configure` adds them"
                )
            return None
        start = time.perf_counter()
        try:
            answer = await asyncio.to_thread(self.acknowledge, job.request_id)
        except NetworkError as error:
            return "unreachable", "failed", None, error.message, None
        except ApiError as error:
            if isinstance(error, CredentialsRefused) and self.alerts is not None:
                self.alerts.send("token_refused", error.message, request_id=job.request_id)
            code = error.status_code
            return judge(code), str(code or "failed"), None, error.message, None
        latency = (time.perf_counter() - start) * 1000
        status, _, said = answer.partition(" ")  # the client's "200 <excerpt>"
        return "delivered", status, latency, said, None

    def _tell(self, job: DeliveryJob, attempt: Attempt) -> None:
        """One line per outcome; a target going down is said once, and its return."""
        what = "Acknowledged" if job.job == ACKNOWLEDGE else f"Forwarded {job.kind}"
        where = "" if job.job == ACKNOWLEDGE else f" to {job.target}"
        fields = {"delivery": job.id, "job": job.job, "request_id": job.request_id,
                  "target": job.target, "attempt": job.attempts + 1, "status": attempt.status,
                  "state": "failed" if attempt.state == "pending" else attempt.state}  # fmt: skip
        if attempt.state == "delivered":
            if job.target in self._down:
                self._down.discard(job.target)
                self.say(logs.said(f"{job.target} accepts deliveries again: delivering what "
                                   "waited", "target_back", target=job.target))  # fmt: skip
            said = f"{what} {job.request_id}{where}: {attempt.status} {attempt.excerpt}".strip()
            self.say(logs.said(said, "delivery", **fields))
            return
        if attempt.state == "dead":
            # Every attempt in its history, those before a `deliveries retry` included.
            tried = len(self.store.delivery_attempts(job.id))  # this one recorded already
            said = (
                f"gave up on delivery {job.id} ({job.job} {job.request_id}{where}) "
                f"after {tried} {'attempt' if tried == 1 else 'attempts'}: "
                f"{_outcome(attempt)}; `avasam deliveries retry {job.id}` tries again"
            )
            self.say(logs.said(f"Error: {said}", "delivery", **fields, attempts=tried))
            if self.alerts is not None:
                self.alerts.send("delivery_dead", said, delivery=job.id, job=job.job,
                                 request_id=job.request_id, target=job.target,
                                 attempts=tried, outcome=_outcome(attempt))  # fmt: skip
            return
        if job.target not in self._down:
            self._down.add(job.target)
            wait = max(0.0, attempt.next_attempt_at - self.clock())
            said = (
                f"Warning: {job.job} of {job.request_id}{where} failed ({_outcome(attempt)}); "
                f"kept in the outbox, next try in {wait:.0f} s"
            )
            self.say(logs.said(said, "delivery", **fields, next_try_in=round(wait)))


def _outcome(attempt: Attempt) -> str:
    """ "503 busy", or the error alone ("ConnectError") when there was no answer."""
    if attempt.status == "failed":
        return attempt.excerpt or "failed"
    return f"{attempt.status} {attempt.excerpt}".strip()
