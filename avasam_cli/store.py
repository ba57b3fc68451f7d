"""The event store: every request the receiver got, in SQLite (WAL), in the data folder.

Duplicates are decided by a unique index on (kind, request_id) over verified
rows, so the rule holds for concurrent deliveries and across processes
sharing the file.  The receiver writes through `store_process`, which commits
requests in batches and only then lets their answers go out.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avasam_cli.errors import StoreError
from avasam_cli.paths import ensure_private_dir

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY,
    received_at   TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL,  -- verified | duplicate | rejected
    http_status   INTEGER NOT NULL,
    reason        TEXT,
    detail        TEXT,
    request_id    TEXT,
    item_count    INTEGER,
    client        TEXT,
    headers       TEXT    NOT NULL,  -- JSON list of [name, value], secrets redacted
    body          BLOB    NOT NULL,
    ack_status    TEXT,              -- NULL (not tried) | acknowledged | failed
    ack_at        TEXT,
    ack_detail    TEXT,
    forward_status TEXT,
    forward_detail TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS events_verified_once
    ON events (kind, request_id) WHERE status = 'verified';
CREATE INDEX IF NOT EXISTS events_request_id ON events (request_id);
"""
BUSY_TIMEOUT_MS = 10_000
# Header names that may carry credentials: stored as "[redacted]".
_SECRET_HEADER_MARKERS = ("auth", "cookie", "token", "secret", "key", "signature")
MAX_BATCH = 256


@dataclass(slots=True)
class Event:
    """One received request, as stored and as printed (`data_json` only for printing)."""

    received_at: str
    kind: str
    status: str  # what verification concluded: "verified" or "rejected"
    http_status: int
    headers_json: str
    body: bytes
    reason: str | None = None
    detail: str | None = None
    request_id: str | None = None
    item_count: int | None = None
    client: str | None = None
    data_json: bytes | None = field(default=None, repr=False)  # the verified items, as JSON
    id: int | None = None
    store_error: str | None = None


def redacted_headers(raw: list[tuple[bytes, bytes]]) -> str:
    pairs = []
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        secret = any(marker in name for marker in _SECRET_HEADER_MARKERS)
        pairs.append((name, "[redacted]" if secret else value_bytes.decode("latin-1")))
    return json.dumps(pairs)


class Checkpointer:
    """Copies the WAL into the database from a thread of its own, once a second.

    Checkpoints are the only step that waits for the disk (fsync); left to SQLite
    they would run inside a commit, and every answer waiting on that commit would
    wait for the disk too.  PASSIVE checkpoints never block the writer.
    """

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.conn = connect(path)
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="avasam-checkpoint", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            with contextlib.suppress(sqlite3.Error):  # busy now: the next round will do
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) the store; StoreError names the file when that fails."""
    try:
        ensure_private_dir(path.parent)
        conn = sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
            cached_statements=MAX_BATCH + 16,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a crash of this process; only a power cut
        # can lose the last transactions (see the README's durability note).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        path.chmod(0o600)
    except (sqlite3.Error, OSError) as error:
        raise StoreError(
            f"cannot open the event store {path}: {error}; check the folder's permissions "
            "and free space (or set AVASAM_HOME)"
        ) from None
    conn.isolation_level = None  # transactions are explicit (BEGIN IMMEDIATE)
    return conn


_COLUMNS = (
    "received_at, kind, status, http_status, reason, detail, request_id, item_count, client, "
    "headers, body"
)
_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


@functools.lru_cache(maxsize=MAX_BATCH)
def _insert_sql(rows: int) -> str:
    values = ", ".join([_ROW_PLACEHOLDERS] * rows)
    return f"INSERT INTO events ({_COLUMNS}) VALUES {values} ON CONFLICT DO NOTHING"  # noqa: S608


def _insert(
    conn: sqlite3.Connection, events: Sequence[Event], status: str | None
) -> tuple[int, int]:
    """One statement for many rows; returns how many were inserted and the last id."""
    params: list[Any] = []
    for event in events:
        params += (
            event.received_at,
            event.kind,
            status or event.status,
            event.http_status,
            event.reason,
            event.detail,
            event.request_id,
            event.item_count,
            event.client,
            event.headers_json,
            event.body,
        )
    before = conn.total_changes
    cursor = conn.execute(_insert_sql(len(events)), params)
    return conn.total_changes - before, cursor.lastrowid or 0


def insert_events(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Store a batch; a verified event whose request id was seen becomes a duplicate.

    The whole batch is one multi-row INSERT inside one transaction: every call into
    SQLite hands the GIL to the event loop's thread and back, so the fewer calls, the
    fewer costly thread switches.  Rows inserted by one statement get consecutive
    ids (the statement holds the write lock).  When the unique index skipped some
    rows (duplicates), the inserted ones are read back to tell which, and the rest
    are inserted again as duplicates.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        inserted, last = _insert(conn, events, None)
        if inserted == len(events):
            for rowid, event in enumerate(events, start=last - inserted + 1):
                event.id = rowid
        else:
            _mark_duplicates(conn, events, first=last - inserted + 1, last=last)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _mark_duplicates(
    conn: sqlite3.Connection, events: Sequence[Event], first: int, last: int
) -> None:
    rows = iter(
        conn.execute(
            "SELECT id, kind, request_id, status FROM events WHERE id BETWEEN ? AND ? ORDER BY id",
            (first, last),
        ).fetchall()
    )
    pending = next(rows, None)
    duplicates = []
    for event in events:
        if pending is not None and (event.kind, event.request_id, event.status) == pending[1:]:
            event.id = pending[0]
            pending = next(rows, None)
        else:
            duplicates.append(event)
    _, last = _insert(conn, duplicates, "duplicate")
    for rowid, event in enumerate(duplicates, start=last - len(duplicates) + 1):
        event.status = "duplicate"
        event.id = rowid


class EventStore:
    """Reading and updating stored events (for the CLI's history commands and tests)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path)
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def rows(self, where: str = "1", params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        sql = f"SELECT * FROM events WHERE {where} ORDER BY id"  # noqa: S608 - callers pass literals
        return list(self.conn.execute(sql, params))

    def latest(
        self, limit: int, kind: str | None = None, status: str | None = None
    ) -> list[sqlite3.Row]:
        """Newest first, optionally of one kind and status."""
        sql = "SELECT * FROM events WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR status = ?) "
        sql += "ORDER BY id DESC LIMIT ?"
        return list(self.conn.execute(sql, (kind, kind, status, status, limit)))

    def find(self, id_or_request_id: str) -> sqlite3.Row | None:
        """By row id (digits), else the latest row with that request id."""
        if id_or_request_id.isdigit():
            row = self.conn.execute(
                "SELECT * FROM events WHERE id = ?", (int(id_or_request_id),)
            ).fetchone()
            if row is not None:
                return row  # type: ignore[no-any-return]
        row = self.conn.execute(
            "SELECT * FROM events WHERE request_id = ? ORDER BY status = 'verified' DESC, id DESC",
            (id_or_request_id,),
        ).fetchone()
        return row  # type: ignore[no-any-return]

    def pending_acknowledgements(self) -> list[str]:
        """Request ids of verified stock updates not acknowledged yet, oldest first."""
        cursor = self.conn.execute(
            "SELECT request_id FROM events WHERE kind = 'stock' AND status = 'verified' "
            "AND (ack_status IS NULL OR ack_status != 'acknowledged') ORDER BY id"
        )
        return [request_id for (request_id,) in cursor]

    def record_acknowledgement(self, request_id: str, status: str, detail: str, at: str) -> bool:
        """Note the outcome on the verified stock update; False if it is not in the store."""
        with self.conn:
            cursor = self.conn.execute(
                "UPDATE events SET ack_status = ?, ack_detail = ?, ack_at = ? "
                "WHERE kind = 'stock' AND status = 'verified' AND request_id = ?",
                (status, detail, at, request_id),
            )
        return cursor.rowcount > 0

    def record_forward(self, kind: str, request_id: str, status: str, detail: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE events SET forward_status = ?, forward_detail = ? "
                "WHERE kind = ? AND status = 'verified' AND request_id = ?",
                (status, detail, kind, request_id),
            )

    def count_by_status(self) -> dict[str, int]:
        cursor = self.conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status")
        return {status: count for status, count in cursor}
