"""Acknowledging stock updates and writing down the outcomes: one (`ack ID`, the
inspector's button), or every pending one through the outbox (`ack --pending`, the
inspector's "Acknowledge pending")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from avasam_cli.errors import ApiError, NetworkError
from avasam_cli.store.base import ResultLog

if TYPE_CHECKING:
    from avasam_cli.store.base import EventStore
    from avasam_cli.store.deliveries import DeliveryJob

ACK_LEASE = 24 * 3600.0  # claimed jobs stay this run's until it releases them (or dies)


class AckOutcome(NamedTuple):
    acknowledged: bool
    detail: str  # Avasam's answer, or why it failed
    error: ApiError | NetworkError | None


def acknowledge_one(
    acknowledge: Callable[[str], str], request_id: str, log: ResultLog
) -> AckOutcome:
    """Call the API client's `acknowledge` for `request_id` and record the outcome in `log`."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        answer = acknowledge(request_id)
    except (ApiError, NetworkError) as error:
        log.record_acknowledgement(request_id, "failed", error.message, at)
        return AckOutcome(False, error.message, error)
    log.record_acknowledgement(request_id, "acknowledged", answer, at)
    return AckOutcome(True, answer, None)


@dataclass
class PendingAcks:
    """The acknowledgement jobs one run has claimed: none can go twice, even beside a
    listener's runner.  `release` gives back those not attempted."""

    store: EventStore
    runner: str
    jobs: list[DeliveryJob]
    waiting: int  # other pending jobs: waiting for a retry or for their forward
    tests: int  # verified test events, never acknowledged
    attempted: set[int] = field(default_factory=set)

    def acknowledge(self, acknowledge: Callable[[str], str], job: DeliveryJob) -> AckOutcome:
        """One job: the API call, its outcome written as an outbox attempt (a failure is
        retried on the schedule, like any acknowledgement job)."""
        self.attempted.add(job.id)
        return acknowledge_one(acknowledge, job.request_id, _OutboxLog(self.store, job))

    def release(self) -> None:
        left = [job.id for job in self.jobs if job.id not in self.attempted]
        self.store.release_deliveries(left, self.runner)


def claim_pending(store: EventStore, after: str | None, limit: int | None) -> PendingAcks:
    """Queue a job for each verified stock update never given one (received since
    `after`), and claim the due acknowledgement jobs, oldest first (at most `limit`)."""
    from avasam_cli.store.deliveries import runner_name
    from avasam_cli.store.jobs import ACKNOWLEDGE

    store.queue_acknowledgements(after)
    name = runner_name()
    claimed = store.claim_deliveries(
        name, time.time(), ACK_LEASE, limit or 10**9, float("inf"), ACKNOWLEDGE
    )
    jobs = [job for job in claimed if after is None or job.received_at >= after]
    store.release_deliveries([job.id for job in claimed if job not in jobs], name)
    waiting = store.delivery_counts().get("pending", 0) - len(jobs)
    return PendingAcks(store, name, jobs, waiting, _test_events(store, after))


def _test_events(store: EventStore, after: str | None) -> int:
    """Verified test events of the acknowledged kinds (received since `after`)."""
    from avasam_cli.webhooks.kinds import ACKNOWLEDGED_KINDS

    return sum(
        1
        for kind in ACKNOWLEDGED_KINDS
        for event in store.latest(10**9, kind, "verified", with_body=False, test=True)
        if after is None or event.received_at >= after
    )


class _OutboxLog:
    """Writes one job's outcome as its outbox attempt."""

    def __init__(self, store: EventStore, job: DeliveryJob) -> None:
        self.store = store
        self.job = job

    def record_acknowledgement(self, request_id: str, status: str, detail: str, at: str) -> None:
        from avasam_cli.delivery.outbox import RetryRules
        from avasam_cli.store.deliveries import Attempt

        job = self.job
        answer, _, said = detail.partition(" ")
        if status == "acknowledged":
            attempt = Attempt(job.id, at, answer, None, said, "delivered", 0.0)
        else:
            state, wait = RetryRules().next_state(
                "retry", job.attempts + 1, time.time() - job.queued_at
            )
            attempt = Attempt(job.id, at, "failed", None, detail, state, time.time() + wait)
        self.store.finish_deliveries([attempt])


def acknowledge_all(acknowledge: Callable[[str], str], claimed: PendingAcks) -> str:
    """Every claimed job in turn, then the rest released: a summary of one line (the
    inspector's "Acknowledge pending")."""
    done = failed = 0
    try:
        for job in claimed.jobs:
            outcome = claimed.acknowledge(acknowledge, job)
            done += 1
            failed += not outcome.acknowledged
    finally:
        claimed.release()
    if not claimed.jobs:
        return "Nothing to acknowledge: every verified stock update is acknowledged."
    said = f"Acknowledged {done - failed} of {len(claimed.jobs)}"
    said += f"; {failed} failed (retried on the schedule)." if failed else "."
    if claimed.waiting > 0:
        said += f" {claimed.waiting} other jobs wait for a retry or for their forward."
    return said
