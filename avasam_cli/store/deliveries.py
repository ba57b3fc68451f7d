"""The outbox's rows, as the store hands them out (the same for every backend)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import NamedTuple

from avasam_cli.processes import process_alive


def runner_name() -> str:
    """How a runner signs its claims: host and process, so that a claim left by a
    process that died on this host can be released at once."""
    return f"{socket.gethostname()}:{os.getpid()}"


def gone_runners(claimants: Iterable[str | None]) -> list[str]:
    """The claimants among `claimants` that ran on this host and whose process is gone."""
    host = socket.gethostname()
    gone = []
    for claimant in claimants:
        name, _, pid = (claimant or "").rpartition(":")
        if name != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        if not process_alive(int(pid)):
            gone.append(f"{name}:{pid}")
    return gone


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
    headers_needed: str | None = None  # the forward headers it was queued with (names)


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
