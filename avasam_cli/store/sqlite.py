"""The SQLite backend of the event store: one file in WAL mode, in the data folder.

Only what SQLite does its own way is here: connecting, checkpoints, the hot insert
path and re-opening a replaced file; the rest is `store.sql`, written once for both
databases.  Duplicates are decided by a unique index on (request_id, kind) over
verified rows (see `migrations`), so the rule holds for concurrent deliveries and
across processes sharing the file.  Claims happen inside `BEGIN IMMEDIATE` (SQLite's
one writer), so two runners never hold the same job.  The receiver writes through its
store writer process, which commits requests in batches and only then lets their
answers go out.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from avasam_cli.defaults import FOLLOW_UP_DURABILITY
from avasam_cli.errors import StoreError
from avasam_cli.paths import create_private_file, make_missing_dirs
from avasam_cli.store.columns import INSERTED_COLUMNS
from avasam_cli.store.dialect import Dialect
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import FORWARD, Plan
from avasam_cli.store.migrations import MIGRATIONS, check_schema, migrate, schema_version
from avasam_cli.store.sql import SqlStore
from avasam_cli.store.transactions import write_transaction

BUSY_TIMEOUT_MS = 10_000
# The WAL grows while checkpoints cannot catch up with a burst: past WAL_RESTART_AT it
# is copied back and started over, and a WAL that starts over is cut back to the limit.
# It grows on while the checkpointer waits for its next look and copies: by 26-32 MB at
# 19,000 1-item requests a second (bench/), so the restart comes well before the limit.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
WAL_RESTART_AT = 16 * 1024 * 1024
IDLE_ROUNDS = 4  # checkpoint rounds with nothing written before the WAL file is emptied
MAX_BATCH = 256  # rows per INSERT: some SQLite builds allow only 32,766 variables
RECLAIM_STEP = 1_000  # pages per incremental_vacuum step
INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    typed_nulls=False,
    empty_body="X''",
    skip_locked="",
    for_update="",
    in_body="instr(body, ?) > 0",  # the SKU as a JSON string anywhere in the body
    body_needle=str,
)


SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}  # defaults.DURABILITY_LEVELS -> PRAGMA


def connect(path: Path, durability: str = FOLLOW_UP_DURABILITY) -> sqlite3.Connection:
    """Open (creating and migrating) the store; StoreError names the file when that fails."""
    try:
        # Only the folders avasam creates are made private: an existing one (a shared
        # folder, another user's) is never changed.
        make_missing_dirs(path.parent)
        created = create_private_file(path)
        conn = sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
            cached_statements=MAX_BATCH + 16,
            isolation_level=None,  # autocommit; transactions are explicit (BEGIN IMMEDIATE)
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if created:  # before any table: space freed by pruning goes back in short steps
            conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode, NORMAL: a commit survives a crash of this process, a power cut can
        # lose the last ones; FULL: the WAL is synced at every commit, a power cut too.
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[durability]}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        migrate(conn, str(path))
    except (sqlite3.Error, OSError) as error:
        raise StoreError(
            f"cannot open the event store {path}: {error}; check the folder's permissions "
            "and free space (or set AVASAM_HOME)"
        ) from None
    return conn


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open the store for reading only: no folder, schema or journal change.

    So `events` and `reconcile` work on a store in a read-only folder or file (a
    backup, another user's store).  A missing store reads as an empty one, and is not
    created.  When SQLite cannot create the WAL's index file beside a read-only
    store, the file is read as immutable: nobody can be writing to it then.
    """
    if not path.exists():
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        migrate(conn, str(path))
        return conn
    for options in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?{options}",
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
            version = schema_version(conn)
        except sqlite3.Error as error:
            failure = error
            continue
        if version == len(MIGRATIONS):
            return conn
        conn.close()
        check_schema(version, str(path))  # newer than this program: refused
        raise StoreError(
            f"the event store {path} was written by an older avasam-cli and this command "
            "only reads it: run `avasam doctor` once with write access to upgrade it"
        )
    raise StoreError(f"cannot read the event store {path}: {failure}; check its permissions")


class Checkpointer:
    """Copies the WAL into the database from a thread of its own, four times a second.

    Checkpoints are the only step that waits for the disk (fsync); left to SQLite
    they would run inside a commit, and every answer waiting on that commit would
    wait for the disk too.  PASSIVE checkpoints never block the writer, but under a
    steady burst they never finish either, and the WAL only restarts from its
    beginning after a finished one.  So past WAL_RESTART_AT a RESTART checkpoint
    finishes one, and once the store is idle a TRUNCATE checkpoint empties the file.
    """

    def __init__(self, path: Path, interval: float = 0.25) -> None:
        self.conn = connect(path)
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="avasam-checkpoint", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        frame_size = self.conn.execute("PRAGMA page_size").fetchone()[0] + 24  # page + header
        previous, quiet = -1, 0
        while not self.stopping.wait(self.interval):
            with contextlib.suppress(sqlite3.Error):  # busy now: the next round will do
                _, frames, copied = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                unchanged = frames == previous == copied and frames > 0
                quiet = quiet + 1 if unchanged else 0
                previous = frames
                if quiet >= IDLE_ROUNDS:  # nothing written for a second: empty the file
                    self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    quiet = 0
                elif frames * frame_size > WAL_RESTART_AT and not unchanged:
                    # The bulk is copied already: RESTART blocks the writer only for the
                    # frames written meanwhile, and the WAL starts over in place at the
                    # next write.  Until one comes the WAL looks as large, and a burst's
                    # end is then the idle case above, not another restart.
                    self.conn.execute("PRAGMA wal_checkpoint(RESTART)")

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


@functools.lru_cache(maxsize=MAX_BATCH)
def _insert_sql(rows: int) -> str:
    values = ", ".join([_ROW_PLACEHOLDERS] * rows)
    return f"INSERT INTO events ({INSERTED_COLUMNS}) VALUES {values} ON CONFLICT DO NOTHING"  # noqa: S608


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


def insert_events(
    conn: sqlite3.Connection,
    events: Sequence[Event],
    plan: Plan | None = None,
    lock_wait: float = 0.0,
) -> None:
    """Store a batch; a verified event whose request id was seen becomes a duplicate.

    The whole batch is one multi-row INSERT inside one transaction: every call into
    SQLite hands the GIL to the event loop's thread and back, so the fewer calls, the
    fewer costly thread switches.  Rows inserted by one statement get consecutive
    ids (the statement holds the write lock).  When the unique index skipped some
    rows (duplicates), the inserted ones are read back to tell which, and the rest
    are inserted again as duplicates.
    """
    with write_transaction(conn, lock_wait):
        _refuse_other_kinds(conn, events)
        inserted, last = _insert(conn, events, None)
        if inserted == len(events):
            for rowid, event in enumerate(events, start=last - inserted + 1):
                event.id = rowid
        else:
            _mark_duplicates(conn, events, first=last - inserted + 1, last=last)
        if plan:  # the follow-ups are as durable as the updates: same transaction
            _enqueue(conn, events, plan, time.time())


def _refuse_other_kinds(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """A verified event whose request id is verified for another kind becomes a refusal.

    Inside the write transaction, so the rule holds across processes sharing the file.
    """
    verified = [event for event in events if event.status == "verified"]
    if not verified:
        return
    ids = list({event.request_id for event in verified})
    marks = ", ".join("?" * len(ids))
    first_kind: dict[str | None, str] = {}
    for request_id, kind in conn.execute(
        f"SELECT request_id, kind FROM events WHERE status = 'verified' "  # noqa: S608 - marks
        f"AND request_id IN ({marks}) ORDER BY id",
        ids,
    ):
        first_kind.setdefault(request_id, kind)
    for event in verified:
        if first_kind.setdefault(event.request_id, event.kind) != event.kind:
            event.refuse_as_reused()


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


def _enqueue(conn: sqlite3.Connection, events: Sequence[Event], plan: Plan, now: float) -> None:
    """The jobs of the new verified updates among `events` (inside their transaction)."""
    rows: list[Any] = []
    needed = plan.headers_needed
    for event in events:
        if event.status == "verified" and event.id is not None:
            for job, target in plan.jobs_for(event.kind, event.headers_json):
                rows += (event.id, job, target, now, now, needed if job == FORWARD else None)
    for start in range(0, len(rows), 6 * 150):
        chunk = rows[start : start + 6 * 150]
        marks = ", ".join(["(?, ?, ?, ?, ?, ?)"] * (len(chunk) // 6))
        conn.execute(
            "INSERT INTO deliveries (event_id, job, target, queued_at, next_attempt_at, "  # noqa: S608
            f"headers_needed) VALUES {marks}",
            chunk,
        )


class SqliteStore(SqlStore):
    """The event store in one SQLite file (see `store.base.EventStore`)."""

    batch_size = MAX_BATCH
    dialect = SQLITE
    driver_error = sqlite3.Error

    def __init__(
        self,
        path: Path,
        bulk_writer: bool = False,
        read_only: bool = False,
        durability: str = FOLLOW_UP_DURABILITY,
    ) -> None:
        self.location = str(path)
        self.path = path
        self.bulk_writer = bulk_writer
        self.durability = durability
        self._checkpointer: Checkpointer | None = None
        # The bulk writer asks for the write lock in short steps (see transactions).
        self._lock_wait = BUSY_TIMEOUT_MS / 1000 if bulk_writer else 0.0
        if read_only:
            self.conn = connect_read_only(path)
        else:
            self._open()

    def _open(self) -> None:
        self.conn = connect(self.path, self.durability)
        info = os.stat(self.path)
        self._identity = (info.st_dev, info.st_ino)
        if self.bulk_writer:
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's job
            self.conn.execute("PRAGMA busy_timeout = 0")  # its BEGINs wait in short steps
            self._checkpointer = Checkpointer(self.path)

    def close(self) -> None:
        self.conn.close()
        if self._checkpointer is not None:
            self._checkpointer.close()

    def ensure_present(self) -> str | None:
        """Re-open the store if its file was deleted or replaced, and say so; else None.

        SQLite would go on committing into a deleted file, and every later update would
        be lost with it.  Checked before each batch the writer commits.
        """
        try:
            info = os.stat(self.path)
            identity: tuple[int, int] | None = (info.st_dev, info.st_ino)
        except FileNotFoundError:
            identity = None
        if identity == self._identity:
            return None
        self.close()
        self._open()
        what = "deleted" if identity is None else "replaced by another file"
        return (
            f"the event store {self.location} was {what} while the listener ran: it is "
            "open again (a new file if it was deleted), and updates are stored there"
        )

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- writing -----------------------------------------------------------------
    def insert(self, events: Sequence[Event], plan: Plan | None = None) -> None:
        for start in range(0, len(events), MAX_BATCH):
            insert_events(self.conn, events[start : start + MAX_BATCH], plan, self._lock_wait)

    def check_writable(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("ROLLBACK")
        except sqlite3.Error as error:
            raise StoreError(f"the event store {self.location} is not writable: {error}") from None

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        try:
            with write_transaction(self.conn, self._lock_wait) as conn:
                yield conn
        except sqlite3.Error as error:
            raise StoreError(f"cannot {doing} the event store {self.location}: {error}") from None

    # --- retention and the live feed -----------------------------------------------
    def reclaim_space(self, allow_vacuum: bool = True) -> Iterator[tuple[int, int]]:
        """Give the pages freed by `prune` back to the disk, yielding (done, total) pages.

        Stores made by this release reclaim incrementally, in short steps a listener
        can write between.  An older store is converted once with VACUUM, which holds
        the store for its duration (so only when `allow_vacuum`).
        """
        try:
            total = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
            if self.conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
                if not allow_vacuum or not total:
                    return
                yield 0, total
                self.conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
                self.conn.execute("VACUUM")
                yield total, total
                return
            left = total
            while left:
                self.conn.execute(f"PRAGMA incremental_vacuum({RECLAIM_STEP})")
                left = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
                yield total - left, total
        except sqlite3.Error as error:
            raise StoreError(
                f"cannot reclaim space in the event store {self.location}: {error}"
            ) from None

    def wait_for_rows(self, timeout: float) -> None:
        """SQLite tells no one of a commit: a short sleep, and the caller reads again."""
        time.sleep(timeout)
