"""The SQLite store's schema, as ordered migrations (simonw/llm's `migrations.py` is the model).

The schema version is SQLite's `user_version`: the number of migrations applied.
Opening a store applies the missing ones in one transaction; a store written by
a newer release (more migrations than we know) is refused and left untouched.
A new column is a new function at the end of this file, never an edit above it, with
the same step at the end of `postgres.MIGRATIONS` and its line in `schema` (the schema
both must end with: a test checks each database against it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from avasam_cli.errors import StoreError

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(function: Migration) -> Migration:
    MIGRATIONS.append(function)
    return function


@migration
def m001_events(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
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
        )
        """
    )
    # Duplicates are decided by this index, so the rule holds across processes.
    conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS events_verified_once "
        "ON events (kind, request_id) WHERE status = 'verified'"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS events_request_id ON events (request_id)")


def schema_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(conn: sqlite3.Connection, location: str) -> None:
    """Bring the schema up to date; StoreError if the store is newer than this program."""
    if check_schema(schema_version(conn), location):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn)  # another process may have migrated meanwhile
        if not check_schema(version, location):
            for step in MIGRATIONS[version:]:
                step(conn)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def check_schema(version: int, location: str) -> bool:
    """True when the schema is current; StoreError when it is newer than we know."""
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the event store {location} was written by a newer avasam-cli (schema "
            f"{version}, this release knows {len(MIGRATIONS)}): upgrade avasam-cli, or point "
            "AVASAM_HOME elsewhere (the file was left untouched)"
        )
    return version == len(MIGRATIONS)


@migration
def m002_deliveries(conn: sqlite3.Connection) -> None:
    """The outbox: what must follow each 200 (forwards, acknowledgements), and every
    attempt at it.  Written in the transaction that stores the update."""
    conn.execute(
        """
        CREATE TABLE deliveries (
            id              INTEGER PRIMARY KEY,
            event_id        INTEGER NOT NULL,  -- events.id
            job             TEXT    NOT NULL,  -- forward | acknowledge
            target          TEXT    NOT NULL,  -- the URL, or avasam-api
            state           TEXT    NOT NULL DEFAULT 'pending',
            attempts        INTEGER NOT NULL DEFAULT 0,
            queued_at       REAL    NOT NULL,  -- Unix time
            next_attempt_at REAL    NOT NULL,
            claimed_by      TEXT,              -- host:pid of the runner delivering it
            claimed_until   REAL,
            last_result     TEXT
        )
        """
    )
    conn.execute(
        "CREATE INDEX deliveries_pending ON deliveries (target, id) WHERE state = 'pending'"
    )
    conn.execute("CREATE INDEX deliveries_event ON deliveries (event_id)")
    # The earliest due time among pending jobs, in one step: a runner's cheap "anything
    # to do?" before it takes the write lock to claim.
    conn.execute(
        "CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending'"
    )
    conn.execute(
        """
        CREATE TABLE delivery_attempts (
            delivery_id INTEGER NOT NULL,
            at          TEXT    NOT NULL,
            status      TEXT    NOT NULL,  -- the HTTP status, or failed
            latency_ms  REAL,
            excerpt     TEXT               -- of the answer, or the error
        )
        """
    )
    conn.execute("CREATE INDEX delivery_attempts_job ON delivery_attempts (delivery_id)")


@migration
def m003_headers_needed(conn: sqlite3.Connection) -> None:
    """The names of the forward headers a job was queued with (lower case, comma-separated):
    a runner that lacks one leaves the job pending instead of sending it without."""
    conn.execute("ALTER TABLE deliveries ADD COLUMN headers_needed TEXT")


@migration
def m004_as_postgresql(conn: sqlite3.Connection) -> None:
    """The same tables, columns and indexes as the PostgreSQL store (they had drifted):
    `received_at` indexed (`events prune`, `--since`), the unique index on
    (request_id, kind), and attempts with an `id` of their own."""
    conn.execute("CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at)")
    conn.execute("DROP INDEX IF EXISTS events_verified_once")
    conn.execute(
        "CREATE UNIQUE INDEX events_verified_once ON events (request_id, kind) "
        "WHERE status = 'verified'"
    )
    conn.execute(
        """
        CREATE TABLE delivery_attempts_new (
            id          INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL,
            at          TEXT    NOT NULL,
            status      TEXT    NOT NULL,  -- the HTTP status, or failed
            latency_ms  REAL,
            excerpt     TEXT               -- of the answer, or the error
        )
        """
    )
    conn.execute(
        "INSERT INTO delivery_attempts_new (id, delivery_id, at, status, latency_ms, excerpt) "
        "SELECT rowid, delivery_id, at, status, latency_ms, excerpt FROM delivery_attempts"
    )
    conn.execute("DROP TABLE delivery_attempts")
    conn.execute("ALTER TABLE delivery_attempts_new RENAME TO delivery_attempts")
    conn.execute("CREATE INDEX delivery_attempts_job ON delivery_attempts (delivery_id)")
