"""The outbox's rows, as the store hands them out (the same for every backend)."""

from __future__ import annotations

from typing import NamedTuple


class DeliveryJob(NamedTuple):
    """A claimed job, with what is needed to deliver it."""

    id: int
    event_id: int
    job: str  # forward | acknowledge
    target: str
    attempts: int  # made so far
    queued_at: float
    kind: str
    request_id: str
    headers_json: str
    body: bytes
    received_at: str


class Attempt(NamedTuple):
    """One attempt's outcome, and the job's state after it."""

    job_id: int
    at: str  # ISO time
    status: str  # the HTTP status, or "failed"
    latency_ms: float | None
    excerpt: str
    state: str  # pending | delivered | dead
    next_attempt_at: float


class DeliveryRow(NamedTuple):
    """A job as `deliveries list` and `events show` show it."""

    id: int
    event_id: int
    kind: str
    request_id: str
    job: str
    target: str
    state: str
    attempts: int
    queued_at: float
    next_attempt_at: float
    last_result: str | None
    waits_for_forward: bool  # an acknowledgement waiting for the shop to have the update
