"""The outbox, written once for both databases: jobs claimed as the registry of job
types says (`store.jobs.JOB_TYPES`), attempts recorded, jobs listed and moved, and the
acknowledgement bookkeeping.

A claim is a lease: a runner that died (kill -9) loses its jobs when the lease ends,
or at once when it ran on this host and its process is gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from avasam_cli.store.columns import FORWARDS_DONE, JOB_COLUMNS, ROW_COLUMNS
from avasam_cli.store.deliveries import Attempt, DeliveryJob, DeliveryRow, gone_runners
from avasam_cli.store.dialect import ACKNOWLEDGED_IN, AWAITING_ACK, SqlBase, chunks
from avasam_cli.store.jobs import ACKNOWLEDGE, AVASAM_API, JOB_TYPES, TEST_MARKER


class SqlOutbox(SqlBase):
    # --- acknowledgements --------------------------------------------------------
    def pending_acknowledgements(self) -> list[str]:
        """Request ids of verified updates that need acknowledging and are not yet, oldest first."""
        return [
            request_id
            for (request_id,) in self._rows(
                f"SELECT request_id FROM events WHERE {AWAITING_ACK} ORDER BY id"  # noqa: S608
            )
        ]

    def queue_acknowledgements(self, since: str | None = None) -> int:
        """Acknowledgement jobs for the verified stock updates (received since `since`)
        not acknowledged and without such a job pending (received without --auto-ack,
        before the outbox, or whose job went dead); test events excepted.  How many."""
        now = time.time()
        with self._transaction("write to") as conn:
            cursor = self._run(
                conn,
                "INSERT INTO deliveries (event_id, job, target, queued_at, next_attempt_at) "  # noqa: S608
                f"SELECT e.id, ?, ?, ?, ? FROM events e WHERE {AWAITING_ACK} "
                "AND (?t IS NULL OR e.received_at >= ?) AND e.headers NOT LIKE ? "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id "
                "AND d.job = ? AND d.state IN ('pending', 'delivered')) ORDER BY e.id",
                (ACKNOWLEDGE, AVASAM_API, now, now, since, since, f'%"{TEST_MARKER}"%',
                 ACKNOWLEDGE),
            )  # fmt: skip
            return int(cursor.rowcount)

    def record_acknowledgement(self, request_id: str, status: str, detail: str, at: str) -> None:
        """Note an acknowledgement made outside the outbox (`avasam ack ID`, the
        inspector); a success also closes the update's pending acknowledgement job, so
        that no runner sends it again."""
        verified = f"kind IN {ACKNOWLEDGED_IN} AND status = 'verified' AND request_id = ?"
        with self._transaction("write to") as conn:
            self._run(  # a failure never overwrites an earlier success
                conn,
                "UPDATE events SET ack_status = ?, ack_detail = ?, ack_at = ? "  # noqa: S608
                f"WHERE {verified} AND (?t = 'acknowledged' OR ack_status IS NULL "
                "OR ack_status != 'acknowledged')",
                (status, detail, at, request_id, status),
            )
            if status != "acknowledged":  # the history keeps it: on the update's job
                self._run(
                    conn,
                    "INSERT INTO delivery_attempts (delivery_id, at, status, excerpt) "  # noqa: S608
                    "SELECT d.id, ?t, 'failed', ?t FROM deliveries d WHERE d.job = ? "
                    f"AND d.event_id IN (SELECT id FROM events WHERE {verified})",
                    (at, f"ack outside the outbox: {detail}", ACKNOWLEDGE, request_id),
                )
                return
            found = self._run(
                conn,
                "SELECT id FROM deliveries WHERE job = ? AND state = 'pending' "  # noqa: S608
                f"AND event_id IN (SELECT id FROM events WHERE {verified})"
                + self.dialect.for_update,
                (ACKNOWLEDGE, request_id),
            ).fetchall()
            for (job_id,) in found:
                self._run(
                    conn,
                    "INSERT INTO delivery_attempts (delivery_id, at, status, excerpt) "
                    "VALUES (?, ?, '200', ?)",
                    (job_id, at, f"acknowledged outside the outbox: {detail}"),
                )
                self._run(
                    conn,
                    "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, "
                    "claimed_by = NULL, claimed_until = NULL, last_result = ? WHERE id = ?",
                    (detail, job_id),
                )

    # --- the outbox --------------------------------------------------------------
    def claim_deliveries(
        self,
        runner: str,
        now: float,
        lease: float,
        per_target: int,
        due_by: float | None = None,
        only: str | None = None,
    ) -> list[DeliveryJob]:
        """Jobs due by `due_by` (default: now) for this runner, for each job type as the
        registry says: in order per target (its oldest pending jobs, up to the first that
        is not due or is held by another runner, so updates reach a target in the order
        they were received), or row by row, those waiting for their update's forwards
        only once these are delivered.  `only`: jobs of that type only."""
        due_by = now if due_by is None else due_by
        with self._transaction("claim deliveries in") as conn:
            self._release_dead_runners(conn, now)
            taken: list[int] = []
            for job in JOB_TYPES.values():
                if only not in (None, job.name):
                    continue
                if job.in_order_per_target:
                    taken += self._claim_in_order(conn, job.name, runner, now, per_target, due_by)
                    continue
                waits = f" AND {FORWARDS_DONE}" if job.waits_for_forwards else ""
                taken += [
                    job_id
                    for (job_id,) in self._run(
                        conn,
                        "SELECT d.id FROM deliveries d WHERE d.state = 'pending' AND d.job = ? "  # noqa: S608
                        "AND d.next_attempt_at <= ? AND (d.claimed_by IS NULL OR d.claimed_by = ? "
                        f"OR d.claimed_until < ?){waits} ORDER BY d.id LIMIT ?"
                        + self.dialect.skip_locked,
                        (job.name, due_by, runner, now, per_target),
                    ).fetchall()
                ]
            jobs: list[DeliveryJob] = []
            for chunk in chunks(taken):
                among, ids = self.dialect.among("id", chunk)
                self._run(
                    conn,
                    f"UPDATE deliveries SET claimed_by = ?, claimed_until = ? WHERE {among}",  # noqa: S608
                    (runner, now + lease, *ids),
                )
                among, ids = self.dialect.among("d.id", chunk)
                jobs += [
                    DeliveryJob(*row)
                    for row in self._run(
                        conn,
                        f"SELECT {JOB_COLUMNS} FROM deliveries d "  # noqa: S608
                        f"JOIN events e ON e.id = d.event_id WHERE {among} ORDER BY d.id",
                        ids,
                    ).fetchall()
                ]
        return jobs

    def _claim_in_order(
        self, conn: Any, job: str, runner: str, now: float, per_target: int, due_by: float
    ) -> list[int]:
        taken: list[int] = []
        targets = self._run(
            conn,
            "SELECT DISTINCT target FROM deliveries WHERE state = 'pending' AND job = ?",
            (job,),
        ).fetchall()
        for (target,) in targets:
            lock = self.dialect.target_lock
            if lock is not None and not self._run(conn, lock, (target,)).fetchone()[0]:
                continue  # another runner is claiming this target's queue right now
            queue = self._run(
                conn,
                "SELECT id, next_attempt_at, claimed_by, claimed_until FROM deliveries "  # noqa: S608
                "WHERE state = 'pending' AND target = ? AND job = ? ORDER BY id LIMIT ?"
                + self.dialect.skip_locked,
                (target, job, per_target),
            ).fetchall()
            for job_id, due, claimant, until in queue:
                if due > due_by or (claimant not in (None, runner) and until >= now):
                    break
                taken.append(job_id)
        return taken

    def _release_dead_runners(self, conn: Any, now: float) -> None:
        """Jobs claimed by a runner on this host whose process is gone: claimable at once."""
        claimants = self._run(
            conn,
            "SELECT DISTINCT claimed_by FROM deliveries "
            "WHERE state = 'pending' AND claimed_until >= ?",
            (now,),
        ).fetchall()
        gone = gone_runners(name for (name,) in claimants)
        for chunk in chunks(gone):
            among, names = self.dialect.among("claimed_by", chunk)
            self._run(
                conn,
                "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL "  # noqa: S608
                f"WHERE {among} AND state = 'pending'",
                names,
            )

    def finish_deliveries(self, attempts: Sequence[Attempt]) -> None:
        """Record attempts and the jobs' new states in one transaction; the update's own
        columns for its job's type follow (for `events list` and `ack --pending`)."""
        if not attempts:
            return
        with self._transaction("write to") as conn:
            self._run_many(
                conn,
                "INSERT INTO delivery_attempts (delivery_id, at, status, latency_ms, excerpt) "
                "VALUES (?, ?, ?, ?, ?)",
                [(a.job_id, a.at, a.status, a.latency_ms, a.excerpt) for a in attempts],
            )
            self._run_many(
                conn,
                "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, "
                "claimed_by = NULL, claimed_until = NULL, last_result = ? WHERE id = ?",
                [
                    (a.state, a.next_attempt_at, f"{a.status} {a.excerpt}".strip(), a.job_id)
                    for a in attempts
                ],
            )
            for attempt in attempts:
                self._note_on_event(conn, attempt)

    def _note_on_event(self, conn: Any, attempt: Attempt) -> None:
        """The update's own columns for its job's type (`JOB_TYPES`) follow the attempt."""
        job, event_id = self._run(
            conn, "SELECT job, event_id FROM deliveries WHERE id = ?", (attempt.job_id,)
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
        columns, values = [kind.status_column, kind.detail_column], [status, detail]
        if kind.at_column is not None:
            columns.append(kind.at_column)
            values.append(attempt.at)
        sets = ", ".join(f"{column} = ?" for column in columns)
        where = "id = ?"
        values.append(event_id)
        if keep is not None and status != keep:  # a failure never overwrites a success
            where += f" AND ({kind.status_column} IS NULL OR {kind.status_column} != ?)"
            values.append(keep)
        self._run(conn, f"UPDATE events SET {sets} WHERE {where}", values)  # noqa: S608

    def release_deliveries(self, job_ids: Iterable[int], runner: str) -> None:
        ids = list(job_ids)
        if not ids:
            return
        with self._transaction("write to") as conn:
            for chunk in chunks(ids):
                among, values = self.dialect.among("id", chunk)
                self._run(
                    conn,
                    "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL "  # noqa: S608
                    f"WHERE claimed_by = ? AND {among}",
                    (runner, *values),
                )

    def deliveries(
        self,
        state: str | None = None,
        target: str | None = None,
        limit: int = 50,
        event_id: int | None = None,
    ) -> list[DeliveryRow]:
        return [
            DeliveryRow._make((*row[:-1], bool(row[-1])))
            for row in self._rows(
                f"SELECT {ROW_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id "  # noqa: S608
                "WHERE (?t IS NULL OR d.state = ?) AND (?t IS NULL OR d.target = ?) "
                "AND (?i IS NULL OR d.event_id = ?) ORDER BY d.id DESC LIMIT ?",
                (state, state, target, target, event_id, event_id, limit),
            )
        ]

    def delivery_attempts(self, job_id: int) -> list[tuple[str, str, float, str]]:
        return [
            tuple(row)
            for row in self._rows(
                "SELECT at, status, latency_ms, excerpt FROM delivery_attempts "
                "WHERE delivery_id = ? ORDER BY id",
                (job_id,),
            )
        ]

    def outbox_marker(self) -> tuple[int, float | None]:
        """(the newest job's id, the earliest due time of a pending job): read without a
        write lock, from the primary key and an index."""
        newest, due = self._rows(
            "SELECT (SELECT MAX(id) FROM deliveries), "
            "(SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending')"
        )[0]
        return newest or 0, due

    def overdue(self, queued_before: float) -> tuple[int, float | None, str | None]:
        """(pending jobs queued before `queued_before`, the oldest pending job's queue time,
        its target): what `deliveries check` reports."""
        (count,) = self._rows(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND queued_at < ?",
            (queued_before,),
        )[0]
        oldest = self._rows(
            "SELECT queued_at, target FROM deliveries WHERE state = 'pending' "
            "ORDER BY queued_at LIMIT 1"
        )
        return int(count), *(oldest[0] if oldest else (None, None))

    def delivery_counts(self) -> dict[str, int]:
        return dict(self._rows("SELECT state, COUNT(*) FROM deliveries GROUP BY state"))

    def delivery_counts_by_job(self) -> dict[tuple[str, str], int]:
        rows = self._rows("SELECT state, job, COUNT(*) FROM deliveries GROUP BY state, job")
        return {(state, job): int(count) for state, job, count in rows}

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
        where, params = self.dialect.among("state", from_states)
        if ids:
            by_id, id_params = self.dialect.among("id", ids)
            where += f" AND {by_id}"
            params += id_params
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
        with self._transaction("write to") as conn:
            cursor = self._run(
                conn,
                f"UPDATE deliveries SET state = ?{reset} WHERE {where}",  # noqa: S608 - marks
                [*head, *params],
            )
            return int(cursor.rowcount)
