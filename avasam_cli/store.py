"""The event store: every request the receiver got, in SQLite (WAL), in the data folder.

Duplicates are decided by a unique index on (kind, request_id) over verified
rows, so the rule holds for concurrent deliveries and across processes
sharing the file.  The receiver writes through `BatchWriter`: one thread that
commits requests in small batches and only then lets their answers go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
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
MAX_BATCH = 256


@dataclass(slots=True)
class Event:
    """One received request, as stored and as printed."""

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
    items: list[dict[str, Any]] | None = field(default=None, repr=False)  # not stored
    id: int | None = None
    store_error: str | None = None


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) the store; StoreError names the file when that fails."""
    try:
        ensure_private_dir(path.parent)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
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


_INSERT = (
    "INSERT INTO events (received_at, kind, status, http_status, reason, detail, request_id, "
    "item_count, client, headers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)


def _row(event: Event, status: str) -> tuple[Any, ...]:
    return (
        event.received_at,
        event.kind,
        status,
        event.http_status,
        event.reason,
        event.detail,
        event.request_id,
        event.item_count,
        event.client,
        event.headers_json,
        event.body,
    )


def insert_events(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Insert in one transaction; a verified event whose id was seen becomes a duplicate."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for event in events:
            cursor = conn.execute(_INSERT, _row(event, event.status))
            if cursor.rowcount == 0:  # the unique index said: seen before
                event.status = "duplicate"
                cursor = conn.execute(_INSERT, _row(event, "duplicate"))
            event.id = cursor.lastrowid
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


Report = Callable[[Sequence[Event]], None]
_STOP = object()


class BatchWriter:
    """A thread that commits events in batches; `record` returns after the commit.

    Batching lets many concurrent requests share one commit while each answer
    still waits for its own row to be durable; the thread keeps SQLite's disk
    I/O off the event loop.  `report` is called from the thread after each
    commit (or failed commit), so printing never delays an answer either.
    """

    def __init__(self, path: Path, report: Report | None = None) -> None:
        self.path = path
        self.report = report
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        self._conn = connect(self.path)
        self._thread = threading.Thread(target=self._run, name="avasam-store", daemon=True)
        self._thread.start()

    async def record(self, event: Event) -> None:
        """Store `event`; afterwards its status may be "duplicate" or its store_error set."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((event, future, loop))
        await future

    def close(self) -> None:
        """Commit everything queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < MAX_BATCH:
                    batch.append(self._queue.get_nowait())
            if _STOP in batch:
                stopping = True
                batch = [entry for entry in batch if entry is not _STOP]
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[tuple[Event, asyncio.Future[None], Any]]) -> None:
        events = [event for event, _, _ in batch]
        try:
            assert self._conn is not None
            insert_events(self._conn, events)
        except Exception as error:  # the thread must outlive any failure, or answers hang
            for event in events:
                event.store_error = str(error) or type(error).__name__
        by_loop: dict[Any, list[asyncio.Future[None]]] = {}
        for _, future, loop in batch:
            by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_resolve, futures)
        if self.report is not None:
            # Output trouble (a closed pipe) must not stop the storing.
            with contextlib.suppress(Exception):
                self.report(events)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


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

    def count_by_status(self) -> dict[str, int]:
        cursor = self.conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status")
        return {status: count for status, count in cursor}
