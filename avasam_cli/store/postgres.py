"""The PostgreSQL backend of the event store: for several listeners, on several hosts.

The same rules as the SQLite backend, kept the same way:
- duplicates are decided by the partial unique index on (request_id, kind) over
  verified rows (request id first: the other-kind check looks up by it alone), in
  one INSERT ... ON CONFLICT DO NOTHING RETURNING per batch;
- a batch and its delivery jobs are one transaction, committed before any answer,
  in three round trips when nothing is a duplicate;
- row ids grow in commit order: a batch takes one transaction-scoped advisory lock
  before its INSERT, as SQLite's one writer does, so `after(last_id)`
  (`events list --follow`, the inspector's stream) never skips a row committed late;
- jobs are claimed with FOR UPDATE SKIP LOCKED; a forward target is claimed by one
  runner at a time (a try-lock per target), so its updates arrive in order;
- every committed batch NOTIFYs `avasam_events`, so readers on any host wake at once.

psycopg is imported here only, and this module only when a PostgreSQL URL is used:
the extra is optional and start-up time does not pay for it.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from avasam_cli.errors import StoreError, StoreUnavailable
from avasam_cli.paths import DatabaseUrl
from avasam_cli.store.columns import INSERTED_COLUMNS
from avasam_cli.store.dialect import Dialect
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import FORWARD, Plan
from avasam_cli.store.sql import SqlStore
from avasam_cli.webhooks.contract import HTTP_STATUS, REUSED_DETAIL, Reason

try:
    import psycopg
except ImportError:  # pragma: no cover - the message is tested through open_store
    psycopg = None  # type: ignore[assignment]

INSTALL_HINT = "pip install 'avasam-cli[postgres]'"
CONNECT_TIMEOUT = 5  # seconds: an unreachable server is an error, not a hang
MAX_BATCH = 1_000  # rows per INSERT: a bounded statement (its bodies travel in one array)
CHANNEL = "avasam_events"  # NOTIFYed by every committed batch
# Advisory lock keys (a pair of int4): one namespace for this tool, one key per purpose.
LOCK_SPACE = 0x61766173  # "avas"
INSERT_LOCK = 1  # held for a batch's INSERT: ids in commit order
MIGRATE_LOCK = 2  # held while the schema is brought up to date
TARGET_SPACE = 0x61766174  # one key per forward target (hashtext): one claimer at a time
POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    typed_nulls=True,
    empty_body="''::bytea",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    for_update=" FOR UPDATE",
    in_body="position(?::bytea in body) > 0",  # the SKU as a JSON string in the body
    body_needle=str.encode,
    # A forward target's queue is claimed by one runner at a time, whatever the host.
    target_lock=f"SELECT pg_try_advisory_xact_lock({TARGET_SPACE}, hashtext(?))",
    any_array=True,
)
# The batch's columns as one JSON text of rows and its bodies as one bytea array, zipped
# in order by ROWS FROM: RETURNING follows it.  psycopg dumps an array in Python, element
# by element; orjson writes the rows in C, and the server reads them faster than eleven
# arrays (bench/: about half the writer's and the server's CPU per batch).  The EXISTS
# sees the table as it was before the statement: whether a row reuses a request id
# verified for another kind earlier.  The bodies are binary (%b): no text escaping.
_ROW_FIELDS = (
    "received_at text, kind text, status text, http_status int, reason text, detail text, "
    "request_id text, item_count int, client text, headers text"
)
_INSERT_SQL = (
    "WITH stored AS (INSERT INTO events ("  # noqa: S608 - literals only
    f"{INSERTED_COLUMNS}) SELECT * FROM ROWS FROM (json_to_recordset(%s::json) AS "
    f"({_ROW_FIELDS}), unnest(%b::bytea[])) "
    "ON CONFLICT DO NOTHING RETURNING id, kind, request_id, status) "
    "SELECT id, kind, request_id, status, status = 'verified' AND EXISTS (SELECT 1 FROM events "
    "e WHERE e.status = 'verified' AND e.request_id = stored.request_id AND e.kind <> "
    "stored.kind) FROM stored ORDER BY id"
)
# One round trip: the transaction, the lock that keeps ids in commit order, the NOTIFY.
# The INSERT's plan is the same for any batch: planned once (generic), not per batch as
# the connection's other statements are (see connect).
_BEGIN_LOCKED = (
    "BEGIN; SET LOCAL plan_cache_mode = auto; "
    f"SELECT pg_advisory_xact_lock({LOCK_SPACE}, {INSERT_LOCK}); NOTIFY {CHANNEL}"
)


# The schema, as ordered migrations, ending where SQLite's `migrations` do: `schema`
# describes both, and a test checks each database against it.
# The version is the number applied, kept in avasam_schema; a new step goes at the end.
MIGRATIONS = [
    """
    CREATE TABLE events (
        id             BIGSERIAL PRIMARY KEY,
        received_at    TEXT    NOT NULL,
        kind           TEXT    NOT NULL,
        status         TEXT    NOT NULL,
        http_status    INTEGER NOT NULL,
        reason         TEXT,
        detail         TEXT,
        request_id     TEXT,
        item_count     INTEGER,
        client         TEXT,
        headers        TEXT    NOT NULL,
        body           BYTEA   NOT NULL,
        ack_status     TEXT,
        ack_at         TEXT,
        ack_detail     TEXT,
        forward_status TEXT,
        forward_detail TEXT
    );
    CREATE UNIQUE INDEX events_verified_once ON events (request_id, kind)
        WHERE status = 'verified';
    CREATE INDEX events_request_id ON events (request_id);
    CREATE INDEX events_received_at ON events (received_at);
    -- Large bodies are compressed with lz4 where the server has it: pglz, the default,
    -- cost the server more than the receiver's whole verification of a 1,000-item update.
    DO $$ BEGIN
        ALTER TABLE events ALTER COLUMN body SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL;
    END $$;
    """,
    """
    CREATE TABLE deliveries (
        id              BIGSERIAL PRIMARY KEY,
        event_id        BIGINT  NOT NULL,
        job             TEXT    NOT NULL,
        target          TEXT    NOT NULL,
        state           TEXT    NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        queued_at       DOUBLE PRECISION NOT NULL,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        claimed_by      TEXT,
        claimed_until   DOUBLE PRECISION,
        last_result     TEXT
    );
    CREATE INDEX deliveries_pending ON deliveries (target, id) WHERE state = 'pending';
    CREATE INDEX deliveries_event ON deliveries (event_id);
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
    CREATE TABLE delivery_attempts (
        id          BIGSERIAL PRIMARY KEY,
        delivery_id BIGINT NOT NULL,
        at          TEXT   NOT NULL,
        status      TEXT   NOT NULL,
        latency_ms  DOUBLE PRECISION,
        excerpt     TEXT
    );
    CREATE INDEX delivery_attempts_job ON delivery_attempts (delivery_id);
    """,
    # The names of the forward headers a job was queued with (see the SQLite migration 3).
    "ALTER TABLE deliveries ADD COLUMN headers_needed TEXT",
]


def connect(location: DatabaseUrl) -> Any:
    """A connection in autocommit mode (transactions are explicit); StoreUnavailable
    naming the server, without its password, when that fails."""
    if psycopg is None:
        raise StoreUnavailable(
            f"the store {location} is a PostgreSQL database, and PostgreSQL support is not "
            f"installed: {INSTALL_HINT}"
        )
    try:
        conn = psycopg.connect(
            location.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="avasam",
        )
        # psycopg prepares a statement run often; PostgreSQL's generic plan for one then
        # ignores its values, and `id > $1 ... LIMIT $2` (a follower's read) became a scan
        # of the whole table.  Planned for the values each time, it reads the index.
        conn.execute("SET plan_cache_mode = force_custom_plan")
        return conn
    except psycopg.Error as error:
        reason = _first_line(error, location)
        raise StoreUnavailable(
            f"cannot connect to the event store {location}: {reason}; check that the server "
            "runs and accepts this user (host, port, database, password), or choose another "
            "store with --store"
        ) from None


def _first_line(error: BaseException, location: DatabaseUrl | None = None) -> str:
    """The driver's message, without the URL's password: in a URL, or quoted as it is (a
    password with a space comes back inside libpq's parse error)."""
    from avasam_cli.text import passwords_in, without_password

    text = without_password(str(error).strip().splitlines()[0] if str(error).strip() else "")
    for password in passwords_in(location.url) if location is not None else ():
        text = text.replace(password, "****")
    return text


def migrate(conn: Any, location: DatabaseUrl) -> None:
    """Bring the schema up to date in one transaction, one process at a time; refuse a
    database written by a newer release, untouched."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, MIGRATE_LOCK))
        conn.execute("CREATE TABLE IF NOT EXISTS avasam_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM avasam_schema").fetchone()
        version = row[0] if row else 0
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the event store {location} was written by a newer avasam-cli (schema "
                f"{version}, this release knows {len(MIGRATIONS)}): upgrade avasam-cli "
                "(the database was left untouched)"
            )
        for step in MIGRATIONS[version:]:
            conn.execute(step)
        if row is None:
            conn.execute("INSERT INTO avasam_schema VALUES (%s)", (len(MIGRATIONS),))
        elif version != len(MIGRATIONS):
            conn.execute("UPDATE avasam_schema SET version = %s", (len(MIGRATIONS),))


class PostgresStore(SqlStore):
    """The event store in a PostgreSQL database (see `store.base.EventStore`)."""

    batch_size = MAX_BATCH
    dialect = POSTGRES
    driver_error = psycopg.Error if psycopg is not None else Exception

    def _describe(self, error: Exception) -> str:
        return _first_line(error)

    def __init__(self, location: DatabaseUrl, read_only: bool = False) -> None:
        self.location = str(location)
        self._url = location
        self.read_only = read_only
        self._listener: Any = None
        self._open()

    def _open(self) -> None:
        self.conn = connect(self._url)
        try:
            migrate(self.conn, self._url)
            if self.read_only:  # the server refuses any write this session would try
                self.conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as error:
            self.conn.close()
            raise StoreError(
                f"cannot use the event store {self.location}: {_first_line(error)}; the user "
                "needs to create tables in this database once (or run `avasam doctor` as one "
                "who can)"
            ) from None

    def close(self) -> None:
        self.conn.close()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[Any]:
        try:
            with self.conn.transaction():
                yield self.conn
        except psycopg.Error as error:
            raise StoreError(
                f"cannot {doing} the event store {self.location}: {_first_line(error)}"
            ) from None

    def ensure_present(self) -> str | None:
        """Reconnect when the connection broke (the server restarted, a failover): the
        batch that met the break was answered 503, and Avasam sends it again.  None when
        nothing changed."""
        if self._usable():
            return None
        with contextlib.suppress(psycopg.Error):
            self.conn.close()
        self._open()
        return f"the connection to the event store {self.location} broke: it is open again"

    def _usable(self) -> bool:
        """Open, and idle as this autocommit connection is between statements.  A server
        gone in the middle of psycopg's executemany (a pipeline) can leave it in pipeline
        mode, its rollback failed, not `broken` yet refusing every query after."""
        conn = self.conn
        if conn.broken or conn.closed:
            return False
        idle: bool = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        return idle and bool(conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF)

    def check_writable(self) -> None:
        try:
            with self.conn.transaction():
                self.conn.execute("LOCK TABLE events IN ROW EXCLUSIVE MODE NOWAIT")
        except psycopg.Error as error:
            raise StoreError(
                f"the event store {self.location} is not writable: {_first_line(error)}"
            ) from None

    # --- writing -----------------------------------------------------------------
    def insert(self, events: Sequence[Event], plan: Plan | None = None) -> None:
        """Each batch in one transaction of three round trips: BEGIN with the insert lock
        (and the NOTIFY, sent at commit), the INSERT (which also tells which rows reuse
        a request id verified for the other kind), COMMIT."""
        for start in range(0, len(events), MAX_BATCH):
            batch = events[start : start + MAX_BATCH]
            _refuse_reuse_within(batch)
            conn = self.conn
            try:
                conn.execute(_BEGIN_LOCKED)
                inserted = self._insert(batch, None)
                duplicates = _match_inserted(batch, inserted)
                reused = [row[0] for row in inserted if row[4]]
                if reused:
                    self._refuse_reused(batch, reused)
                if duplicates:
                    rows = self._insert(duplicates, "duplicate")
                    for event, (row_id, *_) in zip(duplicates, rows, strict=True):
                        event.status = "duplicate"
                        event.id = row_id
                if plan:
                    _enqueue(conn, batch, plan, time.time())
                conn.execute("COMMIT")
            except BaseException as error:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                if isinstance(error, psycopg.Error):
                    raise StoreError(
                        f"cannot write to the event store {self.location}: {_first_line(error)}"
                    ) from None
                raise

    def _insert(self, events: Sequence[Event], status: str | None) -> list[Any]:
        """One statement for the batch, its text the same for any batch size, so psycopg
        parses it once and the server prepares it once."""
        rows = orjson.dumps([
            {"received_at": event.received_at, "kind": event.kind,
             "status": status or event.status, "http_status": event.http_status,
             "reason": event.reason, "detail": event.detail, "request_id": event.request_id,
             "item_count": event.item_count, "client": event.client,
             "headers": event.headers_json}
            for event in events
        ])  # fmt: skip
        bodies = [event.body for event in events]
        found: list[Any] = self.conn.execute(_INSERT_SQL, (rows.decode(), bodies)).fetchall()
        return found

    def _refuse_reused(self, events: Sequence[Event], row_ids: list[int]) -> None:
        """Rows just stored as verified whose request id was verified for another kind
        before: refused instead (rare: a misconfigured sender)."""
        self.conn.execute(
            "UPDATE events SET status = 'rejected', http_status = %s, reason = %s, detail = %s "
            "WHERE id = ANY(%s)",
            (HTTP_STATUS[Reason.REQUEST_ID_REUSED], Reason.REQUEST_ID_REUSED.value,
             REUSED_DETAIL, row_ids),
        )  # fmt: skip
        refused = set(row_ids)
        for event in events:
            if event.id in refused:
                _mark_reused(event)

    def reclaim_space(self, allow_vacuum: bool = True) -> Iterator[tuple[int, int]]:
        """A plain VACUUM of each table: it runs beside the listeners (it never locks
        writers out); autovacuum would get there too, later."""
        tables = ("events", "deliveries", "delivery_attempts")
        try:
            for done, table in enumerate(tables):
                yield done, len(tables)
                self.conn.execute(f"VACUUM {table}")
            yield len(tables), len(tables)
        except psycopg.Error as error:
            raise StoreError(
                f"cannot reclaim space in the event store {self.location}: {_first_line(error)}"
            ) from None

    # --- the live feed -------------------------------------------------------------
    def wait_for_rows(self, timeout: float) -> None:
        """Return when any process, on any host, committed rows (their NOTIFY), or after
        `timeout`; read from the socket of a connection that only LISTENs."""
        try:
            if self._listener is None:
                self._listener = connect(self._url)
                self._listener.execute(f"LISTEN {CHANNEL}")
            pgconn = self._listener.pgconn
            if select.select([pgconn.socket], [], [], timeout)[0]:
                pgconn.consume_input()
                while pgconn.notifies() is not None:  # one wake-up for all of them
                    pass
        except (psycopg.Error, OSError, StoreError):  # the server is away: wait, retry later
            with contextlib.suppress(psycopg.Error):
                if self._listener is not None:
                    self._listener.close()
            self._listener = None
            time.sleep(timeout)


def _refuse_reuse_within(events: Sequence[Event]) -> None:
    """In one batch, a request id verified for one kind and then another: the later ones
    are refused (the store checks against earlier batches)."""
    first_kind: dict[str | None, str] = {}
    for event in events:
        if (
            event.status == "verified"
            and first_kind.setdefault(event.request_id, event.kind) != event.kind
        ):
            _mark_reused(event)


def _mark_reused(event: Event) -> None:
    event.status = "rejected"
    event.http_status = HTTP_STATUS[Reason.REQUEST_ID_REUSED]
    event.reason = Reason.REQUEST_ID_REUSED.value
    event.detail = REUSED_DETAIL


def _match_inserted(events: Sequence[Event], inserted: Sequence[Any]) -> list[Event]:
    """Set the ids of the inserted rows (RETURNING gives them in the VALUES' order);
    the events left over were skipped by the unique index: duplicates."""
    rows = iter(inserted)
    pending = next(rows, None)
    duplicates = []
    for event in events:
        if pending is not None and (event.kind, event.request_id, event.status) == tuple(
            pending[1:4]
        ):
            event.id = pending[0]
            pending = next(rows, None)
        else:
            duplicates.append(event)
    return duplicates


def _enqueue(conn: Any, events: Sequence[Event], plan: Plan, now: float) -> None:
    needed = plan.headers_needed
    rows = [
        (event.id, job, target, now, now, needed if job == FORWARD else None)
        for event in events
        if event.status == "verified" and event.id is not None
        for job, target in plan.jobs_for(event.kind, event.headers_json)
    ]
    if rows:
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO deliveries (event_id, job, target, queued_at, next_attempt_at, "
                "headers_needed) VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
