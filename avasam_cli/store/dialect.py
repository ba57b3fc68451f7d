"""The two SQL databases' differences in one small object (`Dialect`), and the base the
shared store logic stands on (`SqlBase`): statements written once, with `?` for a
parameter and `?t`, `?i`, `?b` for one whose NULL is tested (PostgreSQL must be told
its type then: text, bigint, boolean); the dialect turns them into the backend's own."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from avasam_cli.errors import StoreError
from avasam_cli.webhooks.kinds import ACKNOWLEDGED_KINDS

CHUNK = 500  # ids per IN list: old SQLite builds allow 999 variables per statement
PRUNE_BATCH = 2_000  # rows per DELETE transaction
# Our own constants, spelled into the SQL: the kinds Avasam expects acknowledged.
ACKNOWLEDGED_IN = "(" + ", ".join(f"'{kind}'" for kind in ACKNOWLEDGED_KINDS) + ")"
# Verified updates still to be acknowledged: `ack --pending` sends them, and pruning
# keeps them whatever their age.
AWAITING_ACK = (
    f"(kind IN {ACKNOWLEDGED_IN} AND status = 'verified' "
    "AND (ack_status IS NULL OR ack_status != 'acknowledged'))"
)
# Kept by pruning whatever their age: also an update whose delivery is still pending.
KEPT = (
    f"({AWAITING_ACK} OR EXISTS (SELECT 1 FROM deliveries d "  # noqa: S608 - literals
    "WHERE d.event_id = events.id AND d.state = 'pending'))"
)
# The inspector's filters, each one condition on a row (values bound, never spliced);
# the SKU's is the dialect's (`Dialect.in_body`).
SEARCH_FILTERS = {
    "kind": "kind = ?",
    "status": "status = ?",
    "reason": "reason = ?",
    "request_id": "request_id = ?",
    "sku": None,
    "since": "received_at >= ?",
    "until": "received_at < ?",
}
_PARAMETER = re.compile(r"\?([tib])?(?!\w)")
_CASTS = {None: "", "t": "::text", "i": "::bigint", "b": "::boolean"}


@dataclass(frozen=True)
class Dialect:
    """What differs between the two databases' SQL, and nothing else."""

    name: str
    placeholder: str  # "?" or "%s"
    typed_nulls: bool  # a parameter tested for NULL needs its type spelled out
    empty_body: str  # an empty BLOB / BYTEA, for listings without bodies
    skip_locked: str  # after a SELECT of rows to change: others' locked rows skipped
    for_update: str  # after a SELECT of rows to change: locked until the commit
    # A body containing the parameter, and what the parameter is made of (a SKU).
    in_body: str
    body_needle: Callable[[str], Any]
    # Whether a runner may claim this target's queue now (another may be at it), or
    # None: the write transaction already makes claims one at a time.
    target_lock: str | None = None
    any_array: bool = False  # `col = ANY(?)` with a list, instead of `col IN (?, ?...)`

    def sql(self, text: str) -> str:
        return _translated(self, text)

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `values`: the condition and its parameters."""
        if self.any_array:
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)


@functools.lru_cache(maxsize=512)
def _translated(dialect: Dialect, text: str) -> str:
    if dialect.placeholder == "?":
        return _PARAMETER.sub("?", text)
    escaped = text.replace("%", "%%")  # psycopg reads % as a placeholder's start
    return _PARAMETER.sub(
        lambda found: dialect.placeholder + (_CASTS[found[1]] if dialect.typed_nulls else ""),
        escaped,
    )


def chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


class SqlBase:
    """What the shared store logic runs on.  A backend gives `conn` (with `execute`, and
    cursors with `executemany`), `dialect`, `location`, `driver_error` and `_describe`
    (a driver error as words), and `_transaction(doing)`."""

    conn: Any
    dialect: Dialect
    location: str
    driver_error: type[Exception]

    def _describe(self, error: Exception) -> str:
        return str(error)

    def _transaction(self, doing: str) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            rows: list[Any] = self.conn.execute(self.dialect.sql(sql), params).fetchall()
        except self.driver_error as error:
            raise StoreError(
                f"cannot read the event store {self.location}: {self._describe(error)}"
            ) from None
        return rows

    def _run(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        """One statement inside a transaction (whose errors the transaction maps)."""
        return conn.execute(self.dialect.sql(sql), params)

    def _run_many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with contextlib.closing(conn.cursor()) as cursor:
            cursor.executemany(self.dialect.sql(sql), rows)
