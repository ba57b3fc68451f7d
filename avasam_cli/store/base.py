"""The store interface: what the receiver, the follow-ups and the commands may ask of a store.

Consumers call `open_store` and use these methods only; no SQL, connection or
file handling leaves the backend modules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from avasam_cli.defaults import FOLLOW_UP_DURABILITY
from avasam_cli.paths import DatabaseUrl, StoreLocation
from avasam_cli.store.deliveries import Attempt, DeliveryJob, DeliveryRow
from avasam_cli.store.events import Event, StoredEvent
from avasam_cli.store.jobs import Plan


class ResultLog(Protocol):
    """Where `avasam ack` writes the outcome of acknowledging an update."""

    def record_acknowledgement(self, request_id: str, status: str, detail: str, at: str) -> None:
        """Note the outcome on the verified update (`status`: acknowledged or failed)."""


class EventStore(ResultLog, Protocol):
    location: str  # shown to the user: a path, or a URL without its password
    batch_size: int  # the most events `insert` commits in one transaction

    def close(self) -> None: ...

    def __enter__(self) -> EventStore: ...

    def __exit__(self, *_: object) -> None: ...

    def insert(self, events: Sequence[Event], plan: Plan | None = None) -> None:
        """Commit `events`, setting each one's `id`; a verified event whose (kind, request
        id) is stored already becomes a "duplicate" row.  Raises on failure, storing none.
        With a `plan`, the delivery jobs of the new verified updates are committed with
        them."""

    # --- the outbox -------------------------------------------------------------
    def claim_deliveries(
        self,
        runner: str,
        now: float,
        lease: float,
        per_target: int,
        due_by: float | None = None,
        only: str | None = None,
    ) -> list[DeliveryJob]:
        """Jobs due by `due_by` (default `now`), held by `runner` for `lease` seconds from
        `now` (see outbox_sqlite)."""

    def finish_deliveries(self, attempts: Sequence[Attempt]) -> None:
        """Record attempts and the new states of their jobs, releasing them."""

    def release_deliveries(self, job_ids: Sequence[int], runner: str) -> None:
        """Give claimed jobs back untried."""

    def deliveries(
        self,
        state: str | None = None,
        target: str | None = None,
        limit: int = 50,
        event_id: int | None = None,
    ) -> list[DeliveryRow]:
        """Jobs, newest first."""

    def delivery_attempts(self, job_id: int) -> list[tuple[str, str, float, str]]:
        """(at, status, latency ms, excerpt) of each attempt, oldest first."""

    def delivery_counts(self) -> dict[str, int]: ...

    def delivery_counts_by_job(self) -> dict[tuple[str, str], int]:
        """{(state, job type): jobs}, for the metrics."""

    def overdue(self, queued_before: float) -> tuple[int, float | None, str | None]:
        """(pending jobs queued before `queued_before`, the oldest pending job's queue time,
        its target)."""

    def outbox_marker(self) -> tuple[int, float | None]:
        """(the newest job's id, the earliest due time among pending jobs, or None)."""

    def queue_acknowledgements(self, since: str | None = None) -> int:
        """Acknowledgement jobs for the verified stock updates (since `since`) that have
        none pending and are not acknowledged; how many were queued."""

    def change_deliveries(
        self,
        to: str,
        from_states: Sequence[str],
        ids: Sequence[int] = (),
        target: str | None = None,
        every: bool = False,
    ) -> int:
        """Move jobs to state `to` (retry: pending; cancel: cancelled); how many moved."""

    def ensure_present(self) -> str | None:
        """Re-open the store if it vanished or was replaced under us; a message saying so,
        or None when nothing changed."""

    def check_writable(self) -> None:
        """Raise StoreError unless a write transaction can be started now."""

    def latest(
        self,
        limit: int,
        kind: str | None = None,
        status: str | None = None,
        with_body: bool = True,
        test: bool | None = None,
    ) -> Iterator[StoredEvent]:
        """Newest first, optionally of one kind and status (and only test events, or none,
        with `test`), read as they are iterated; without `with_body`, headers and body are
        left empty (a listing; the test marker is kept)."""

    def after(
        self,
        last_id: int,
        limit: int,
        kind: str | None = None,
        status: str | None = None,
        with_body: bool = True,
        test: bool | None = None,
    ) -> Iterator[StoredEvent]:
        """Oldest first, the rows stored after row `last_id` (as `latest` filters them):
        what `events list --follow` has not shown yet."""

    def search(
        self,
        limit: int,
        before_id: int | None = None,
        after_id: int | None = None,
        filters: Mapping[str, str] | None = None,
    ) -> list[StoredEvent]:
        """A page of the listing without bodies: newest first below `before_id`, or oldest
        first above `after_id`; filters by kind, status, reason, request_id, sku, since,
        until."""

    def find(self, id_or_request_id: str) -> StoredEvent | None:
        """By row id (digits), else the latest row with that request id (verified first)."""

    def duplicates_of(self, kind: str, request_id: str) -> list[tuple[str, str | None]]:
        """(received_at, client) of each later delivery of a verified update, oldest first."""

    def pending_acknowledgements(self) -> list[str]:
        """Request ids of verified updates that need acknowledging and are not yet."""

    def count_by_status(self) -> dict[str, int]: ...

    def count_prunable(self, before: str, status: str | None = None) -> tuple[int, int]:
        """(rows received before `before` that `prune` would delete, rows it keeps because
        their acknowledgement is still pending)."""

    def prune(self, before: str, status: str | None = None, limit: int = ...) -> int:
        """Delete up to `limit` rows received before `before` (an ISO time in UTC), oldest
        first, never one whose acknowledgement is pending; how many went."""

    def reclaim_space(self, allow_vacuum: bool = True) -> Iterator[tuple[int, int]]:
        """Give freed space back to the disk, yielding progress as (done, total); a step
        that would hold the store for long (a full VACUUM) only when `allow_vacuum`."""

    def verified_since(self, kind: str, since: str | None = None) -> Iterator[StoredEvent]:
        """Every verified update of `kind` received at or after `since` (an ISO time in UTC),
        oldest first, bodies included, read as they are iterated."""

    def wait_for_rows(self, timeout: float) -> None:
        """Return once rows may have been committed by any process, at the latest after
        `timeout` seconds: how followers (`events list --follow`, the inspector's
        stream) wait between reads."""


def open_store(
    location: StoreLocation,
    bulk_writer: bool = False,
    read_only: bool = False,
    durability: str = FOLLOW_UP_DURABILITY,
) -> EventStore:
    """Open the store at `location` (a SQLite file, or a PostgreSQL database), creating
    and migrating it as needed.

    `bulk_writer` is for the receiver's writer process: the one writer that commits
    at full speed, and takes on the store's upkeep (checkpoints) off its commit path.
    `read_only` is for commands that only read: they never create, migrate or lock
    the store, so they work on a read-only copy, and a missing store reads as empty.
    `durability` is SQLite's (defaults.DURABILITY_LEVELS: the receiver's writer is given
    listen's, every other writer keeps FOLLOW_UP_DURABILITY); a PostgreSQL server's own
    settings decide its commits' (durable, by default).
    """
    if isinstance(location, DatabaseUrl):
        from avasam_cli.store.postgres import PostgresStore

        return PostgresStore(location, read_only=read_only)
    from avasam_cli.store.sqlite import SqliteStore

    return SqliteStore(location, bulk_writer, read_only, durability)
