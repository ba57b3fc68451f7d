"""The outbox's rows, as the store hands them out (the same for every backend)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol

from avasam_cli.processes import process_alive
from avasam_cli.store.jobs import JOB_TYPES


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


class _Executes(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


def note_on_event(conn: _Executes, attempt: Attempt, mark: str) -> None:
    """Inside `finish_deliveries`' transaction: the update's own columns for its job's
    type (`JOB_TYPES`) follow the attempt.  `mark` is the backend's parameter
    placeholder (? or %s); the SQL is the same on both."""
    job, event_id = conn.execute(
        f"SELECT job, event_id FROM deliveries WHERE id = {mark}",  # noqa: S608 - a mark
        (attempt.job_id,),
    ).fetchone()
    kind = JOB_TYPES.get(job)
    if kind is None:  # a job type this release does not know: its columns are not ours
        return
    detail = f"{attempt.status} {attempt.excerpt}".strip()
    keep = kind.delivered_status
    if keep is None:
        status = attempt.status if attempt.state != "pending" else "retrying"
    elif attempt.state == "delivered":
        status, detail = keep, attempt.excerpt
    else:
        status = "failed"
    columns = [
        kind.status_column,
        kind.detail_column,
        *([kind.at_column] if kind.at_column else []),
    ]
    values = [status, detail, *([attempt.at] if kind.at_column else [])]
    sets = ", ".join(f"{column} = {mark}" for column in columns)
    where = f"id = {mark}"
    if keep is not None and status != keep:  # a failure never overwrites a success
        where += f" AND ({kind.status_column} IS NULL OR {kind.status_column} != {mark})"
        values += [event_id, keep]
    else:
        values.append(event_id)
    conn.execute(f"UPDATE events SET {sets} WHERE {where}", values)  # noqa: S608 - our names
