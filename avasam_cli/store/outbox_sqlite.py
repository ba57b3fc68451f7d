"""The outbox in SQLite: jobs written with their update, claimed by one runner at a time.

Claims happen inside `BEGIN IMMEDIATE` (SQLite's one writer), so two runners, in
one process or several, never hold the same job.  A claim is a lease: a runner
that died (kill -9) loses its jobs when the lease ends, or at once when it ran
on this host and its process is gone.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from avasam_cli.store.columns import FORWARDS_DONE, JOB_COLUMNS, ROW_COLUMNS
from avasam_cli.store.deliveries import (
    Attempt,
    DeliveryJob,
    DeliveryRow,
    gone_runners,
    note_on_event,
)
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import ACKNOWLEDGE, FORWARD, Plan, is_test_event
from avasam_cli.store.transactions import write_transaction


def enqueue(conn: sqlite3.Connection, events: Sequence[Event], plan: Plan, now: float) -> None:
    """The jobs of the new verified updates among `events` (inside their transaction)."""
    rows: list[Any] = []
    needed = plan.headers_needed
    for event in events:
        if event.status == "verified" and event.id is not None:
            for job, target in plan.jobs_for(event.kind, is_test_event(event.headers_json)):
                rows += (event.id, job, target, now, now, needed if job == FORWARD else None)
    for start in range(0, len(rows), 6 * 150):
        chunk = rows[start : start + 6 * 150]
        marks = ", ".join(["(?, ?, ?, ?, ?, ?)"] * (len(chunk) // 6))
        conn.execute(
            "INSERT INTO deliveries (event_id, job, target, queued_at, next_attempt_at, "  # noqa: S608
            f"headers_needed) VALUES {marks}",
            chunk,
        )


def _release_dead_runners(conn: sqlite3.Connection, now: float) -> None:
    """Jobs claimed by a runner on this host whose process is gone: claimable at once."""
    claimants = conn.execute(
        "SELECT DISTINCT claimed_by FROM deliveries WHERE state = 'pending' AND claimed_until >= ?",
        (now,),
    ).fetchall()
    for claimant in gone_runners(name for (name,) in claimants):
        conn.execute(
            "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL "
            "WHERE claimed_by = ? AND state = 'pending'",
            (claimant,),
        )


class SqliteOutbox:
    """The outbox's methods of `SqliteStore` (see `store.base.EventStore`)."""

    conn: sqlite3.Connection

    def claim_deliveries(
        self,
        runner: str,
        now: float,
        lease: float,
        per_target: int,
        due_by: float | None = None,
        only: str | None = None,
    ) -> list[DeliveryJob]:
        """Jobs due by `due_by` (default: now) for this runner: for each forward target, its
        oldest pending jobs in order up to the first that is not due or is held by another
        runner (so updates reach a target in the order they were received); acknowledgements
        whose forwards are delivered.  `only`: jobs of that kind only."""
        conn = self.conn
        due_by = now if due_by is None else due_by
        with write_transaction(conn):
            _release_dead_runners(conn, now)
            taken: list[int] = []
            targets = (
                conn.execute(
                    "SELECT DISTINCT target FROM deliveries WHERE state = 'pending' AND job = ?",
                    (FORWARD,),
                ).fetchall()
                if only in (None, FORWARD)
                else []
            )
            for (target,) in targets:
                queue = conn.execute(
                    "SELECT id, next_attempt_at, claimed_by, claimed_until FROM deliveries "
                    "WHERE state = 'pending' AND target = ? AND job = ? ORDER BY id LIMIT ?",
                    (target, FORWARD, per_target),
                )
                for job_id, due, claimant, until in queue:
                    if due > due_by or (claimant not in (None, runner) and until >= now):
                        break
                    taken.append(job_id)
            taken += (
                []
                if only not in (None, ACKNOWLEDGE)
                else [
                    job_id
                    for (job_id,) in conn.execute(
                        f"SELECT d.id FROM deliveries d WHERE d.state = 'pending' AND d.job = ? "  # noqa: S608
                        f"AND d.next_attempt_at <= ? AND (d.claimed_by IS NULL OR d.claimed_by = ? "
                        f"OR d.claimed_until < ?) AND {FORWARDS_DONE} ORDER BY d.id LIMIT ?",
                        (ACKNOWLEDGE, due_by, runner, now, per_target),
                    )
                ]
            )
            jobs: list[DeliveryJob] = []
            for start in range(0, len(taken), 500):
                chunk = taken[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                conn.execute(
                    "UPDATE deliveries SET claimed_by = ?, claimed_until = ? "  # noqa: S608
                    f"WHERE id IN ({marks})",
                    (runner, now + lease, *chunk),
                )
                jobs += [
                    DeliveryJob(*row)
                    for row in conn.execute(
                        f"SELECT {JOB_COLUMNS} FROM deliveries d "  # noqa: S608
                        f"JOIN events e ON e.id = d.event_id WHERE d.id IN ({marks}) ORDER BY d.id",
                        chunk,
                    )
                ]
        return jobs

    def finish_deliveries(self, attempts: Sequence[Attempt]) -> None:
        """Record attempts and the jobs' new states in one transaction; the update's own
        acknowledgement and forward columns follow (for `events list` and `ack --pending`)."""
        conn = self.conn
        if not attempts:
            return
        with write_transaction(conn):
            conn.executemany(
                "INSERT INTO delivery_attempts (delivery_id, at, status, latency_ms, excerpt) "
                "VALUES (?, ?, ?, ?, ?)",
                [(a.job_id, a.at, a.status, a.latency_ms, a.excerpt) for a in attempts],
            )
            conn.executemany(
                "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, "
                "claimed_by = NULL, claimed_until = NULL, last_result = ? WHERE id = ?",
                [
                    (a.state, a.next_attempt_at, f"{a.status} {a.excerpt}".strip(), a.job_id)
                    for a in attempts
                ],
            )
            for attempt in attempts:
                note_on_event(conn, attempt, "?")

    def release_deliveries(self, job_ids: Iterable[int], runner: str) -> None:
        conn = self.conn
        ids = list(job_ids)
        if ids:
            marks = ", ".join("?" * len(ids))
            conn.execute(
                f"UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL "  # noqa: S608
                f"WHERE claimed_by = ? AND id IN ({marks})",
                (runner, *ids),
            )

    def deliveries(
        self,
        state: str | None = None,
        target: str | None = None,
        limit: int = 50,
        event_id: int | None = None,
    ) -> list[DeliveryRow]:
        conn = self.conn
        return [
            DeliveryRow._make((*row[:-1], bool(row[-1])))
            for row in conn.execute(
                f"SELECT {ROW_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id "  # noqa: S608
                "WHERE (? IS NULL OR d.state = ?) AND (? IS NULL OR d.target = ?) "
                "AND (? IS NULL OR d.event_id = ?) ORDER BY d.id DESC LIMIT ?",
                (state, state, target, target, event_id, event_id, limit),
            )
        ]

    def delivery_attempts(self, job_id: int) -> list[tuple[str, str, float, str]]:
        conn = self.conn
        return conn.execute(
            "SELECT at, status, latency_ms, excerpt FROM delivery_attempts "
            "WHERE delivery_id = ? ORDER BY id",
            (job_id,),
        ).fetchall()

    def outbox_marker(self) -> tuple[int, float | None]:
        """(the newest job's id, the earliest due time of a pending job): read without the
        write lock, from the primary key and an index."""
        conn = self.conn
        newest = conn.execute("SELECT MAX(id) FROM deliveries").fetchone()[0] or 0
        due = conn.execute(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'"
        ).fetchone()[0]
        return newest, due

    def delivery_counts(self) -> dict[str, int]:
        conn = self.conn
        return dict(
            conn.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
        )

    def change_deliveries(
        self,
        to: str,
        from_states: Sequence[str],
        ids: Sequence[int] = (),
        target: str | None = None,
        every: bool = False,
    ) -> int:
        """Move jobs (by id, by target, or all `from_states` ones) to `to`; how many moved.
        Jobs put back to pending are due now, with their attempts counted afresh."""
        conn = self.conn
        marks = ", ".join("?" * len(from_states))
        where = f"state IN ({marks})"
        params: list[Any] = list(from_states)
        if ids:
            where += f" AND id IN ({', '.join('?' * len(ids))})"
            params += ids
        elif target is not None:
            where += " AND target = ?"
            params.append(target)
        elif not every:
            return 0
        now = time.time()
        pending = to == "pending"
        reset = (
            ", attempts = 0, next_attempt_at = ?, queued_at = ?, claimed_by = NULL"
            if pending
            else ""
        )
        head = [to, now, now] if pending else [to]
        cursor = conn.execute(
            f"UPDATE deliveries SET state = ?{reset} WHERE {where}",  # noqa: S608 - marks only
            [*head, *params],
        )
        return cursor.rowcount
