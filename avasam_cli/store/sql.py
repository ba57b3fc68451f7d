"""The event store's logic written once for both SQL databases: reads and retention here,
the outbox and acknowledgements in `sql_outbox`, the differences in `dialect`.  Each
backend (`sqlite`, `postgres`) keeps only what must differ: connecting, its hot insert
path, its migrations' DDL, and its live feed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from avasam_cli.errors import StoreError
from avasam_cli.store.columns import IS_TEST, STORED_COLUMNS, listed_columns
from avasam_cli.store.dialect import KEPT, PRUNE_BATCH, SEARCH_FILTERS, chunks
from avasam_cli.store.events import StoredEvent, row_id, stored_event_maker
from avasam_cli.store.sql_outbox import SqlOutbox

__all__ = ["SEARCH_FILTERS", "SqlStore"]


class SqlStore(SqlOutbox):
    """The `EventStore` methods both backends share (see `dialect.SqlBase` for what a
    backend gives)."""

    def _select(
        self, where: str, params: Sequence[Any], tail: str = "", columns: str = STORED_COLUMNS
    ) -> Iterator[StoredEvent]:
        sql = self.dialect.sql(f"SELECT {columns} FROM events WHERE {where} {tail}")  # noqa: S608
        try:
            cursor = self.conn.execute(sql, params)
        except self.driver_error as error:
            raise StoreError(
                f"cannot read the event store {self.location}: {self._describe(error)}"
            ) from None
        names = tuple(column[0] for column in cursor.description or ())
        return map(stored_event_maker(names), cursor)

    @property
    def _listed(self) -> str:
        return listed_columns(self.dialect.empty_body)

    def latest(
        self,
        limit: int,
        kind: str | None = None,
        status: str | None = None,
        with_body: bool = True,
        test: bool | None = None,
    ) -> Iterator[StoredEvent]:
        """Newest first, optionally of one kind and status, read as they are iterated."""
        return self._select(
            f"(?t IS NULL OR kind = ?) AND (?t IS NULL OR status = ?) "
            f"AND (?b IS NULL OR ({IS_TEST}) = ?)",
            (kind, kind, status, status, test, test, limit),
            "ORDER BY id DESC LIMIT ?",
            STORED_COLUMNS if with_body else self._listed,
        )

    def after(
        self,
        last_id: int,
        limit: int,
        kind: str | None = None,
        status: str | None = None,
        with_body: bool = True,
        test: bool | None = None,
    ) -> Iterator[StoredEvent]:
        """Oldest first, the rows after row `last_id`: on both backends ids grow in commit
        order (SQLite has one writer; PostgreSQL's inserts take one lock in turn)."""
        return self._select(
            "id > ? AND (?t IS NULL OR kind = ?) AND (?t IS NULL OR status = ?) "
            f"AND (?b IS NULL OR ({IS_TEST}) = ?)",
            (last_id, kind, kind, status, status, test, test, limit),
            "ORDER BY id LIMIT ?",
            STORED_COLUMNS if with_body else self._listed,
        )

    def search(
        self,
        limit: int,
        before_id: int | None = None,
        after_id: int | None = None,
        filters: Mapping[str, str] | None = None,
    ) -> list[StoredEvent]:
        """A page of the listing, without bodies: newest first below `before_id`, or
        oldest first above `after_id`; `filters` (see SEARCH_FILTERS) narrow it."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        if after_id is not None:
            where.append("id > ?")
            params.append(after_id)
        for name, value in (filters or {}).items():
            if value:
                condition = SEARCH_FILTERS[name]
                where.append(condition if condition is not None else self.dialect.in_body)
                sku = name == "sku"
                params.append(self.dialect.body_needle(f'"{value}"') if sku else value)
        order = "ORDER BY id" if after_id is not None else "ORDER BY id DESC"
        return list(
            self._select(" AND ".join(where), (*params, limit), f"{order} LIMIT ?", self._listed)
        )

    def find(self, id_or_request_id: str) -> StoredEvent | None:
        """By row id (digits), else the latest row with that request id (verified first)."""
        number = row_id(id_or_request_id)
        if number is not None:
            found = next(self._select("id = ?", (number,)), None)
            if found is not None:
                return found
        return next(
            self._select(
                "request_id = ?",
                (id_or_request_id,),
                "ORDER BY status = 'verified' DESC, id DESC LIMIT 1",
            ),
            None,
        )

    def duplicates_of(self, kind: str, request_id: str) -> list[tuple[str, str | None]]:
        return [
            (at, client)
            for at, client in self._rows(
                "SELECT received_at, client FROM events "
                "WHERE request_id = ? AND kind = ? AND status = 'duplicate' ORDER BY id",
                (request_id, kind),
            )
        ]

    def count_by_status(self) -> dict[str, int]:
        return dict(self._rows("SELECT status, COUNT(*) FROM events GROUP BY status"))

    def verified_since(self, kind: str, since: str | None = None) -> Iterator[StoredEvent]:
        return self._select(
            "kind = ? AND status = 'verified' AND (?t IS NULL OR received_at >= ?)",
            (kind, since, since),
            "ORDER BY id",
        )

    # --- retention ---------------------------------------------------------------
    def count_prunable(self, before: str, status: str | None = None) -> tuple[int, int]:
        """(rows received before `before` that `prune` would delete, rows it keeps because
        their acknowledgement or a delivery is still pending)."""
        deleted, kept = self._rows(
            f"SELECT COALESCE(SUM(CASE WHEN {KEPT} THEN 0 ELSE 1 END), 0), "  # noqa: S608
            f"COALESCE(SUM(CASE WHEN {KEPT} THEN 1 ELSE 0 END), 0) "
            "FROM events WHERE received_at < ? AND (?t IS NULL OR status = ?)",
            (before, status, status),
        )[0]
        return int(deleted), int(kept)

    def prune(self, before: str, status: str | None = None, limit: int = PRUNE_BATCH) -> int:
        """Delete up to `limit` rows received before `before`, oldest first, with their
        delivery jobs, never one whose acknowledgement or a delivery is pending; how many
        went.  Small batches keep each write lock short while a listener shares the store."""
        with self._transaction("prune") as conn:
            doomed = [
                found
                for (found,) in self._run(
                    conn,
                    "SELECT id FROM events WHERE received_at < ? "  # noqa: S608
                    f"AND (?t IS NULL OR status = ?) AND NOT {KEPT} ORDER BY id LIMIT ?"
                    + self.dialect.skip_locked,
                    (before, status, status, limit),
                ).fetchall()
            ]
            for chunk in chunks(doomed):
                among, ids = self.dialect.among("event_id", chunk)
                self._run(
                    conn,
                    "DELETE FROM delivery_attempts WHERE delivery_id IN "  # noqa: S608
                    f"(SELECT id FROM deliveries WHERE {among})",
                    ids,
                )
                self._run(conn, f"DELETE FROM deliveries WHERE {among}", ids)  # noqa: S608
                among, ids = self.dialect.among("id", chunk)
                self._run(conn, f"DELETE FROM events WHERE {among}", ids)  # noqa: S608
        return len(doomed)
