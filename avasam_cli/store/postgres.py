"""The PostgreSQL backend of the event store: for several listeners, on several hosts.

The same rules as the SQLite backend, kept the same way:
- duplicates are decided against the verified rows, inside the batch's transaction,
  and the partial unique index on (request_id, kind) over verified rows holds the
  rule (request id first: the other-kind check looks up by it alone);
- a batch and its delivery jobs are one transaction, committed before any answer,
  in one round trip (the function avasam_store_batch);
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
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from avasam_cli.errors import StoreError, StoreUnavailable
from avasam_cli.paths import DatabaseUrl
from avasam_cli.store.columns import INSERTED_COLUMNS
from avasam_cli.store.dialect import Dialect
from avasam_cli.store.events import REUSED_ANSWER, Event
from avasam_cli.store.jobs import FORWARD, Plan
from avasam_cli.store.sql import SqlStore

try:
    import psycopg
    from psycopg.pq import ExecStatus
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
# A batch's columns as one JSON text of rows and its bodies as one bytea array, zipped
# in order by ROWS FROM.  psycopg dumps an array in Python, element by element; orjson
# writes the rows in C, and the server reads them faster than eleven arrays (bench/:
# about half the writer's and the server's CPU per batch).  The bodies are binary (%b):
# no text escaping.
_ROW_FIELDS = (
    "received_at text, kind text, status text, http_status int, reason text, detail text, "
    "request_id text, item_count int, client text, headers text"
)
_ROW_NAMES = ", ".join(field.split()[0] for field in _ROW_FIELDS.split(", "))
# A batch's transaction, in one round trip: this function, called on its own (the
# connection is in autocommit), where BEGIN, the INSERT and COMMIT sent apart took three
# (measured under wrk, 1-item updates: the writer 28-30 -> 22-24 us of CPU a request,
# the server's backend 35-38 -> 30-35, 9,000-11,000 -> 10,800-16,300 requests a second).
# In a function so that its INSERT runs with a snapshot taken after the lock: a plain
# statement's is taken before it waits for the lock, and would not see the batch another
# writer committed meanwhile.  In its order: the lock that keeps ids in commit order;
# the NOTIFY (sent at commit); each verified row judged against the stored ones: a
# duplicate, or a reuse of a request id verified for the other kind (refused with the
# reused_* answer), read from the rows alone: the bodies are copied once, into the
# table; the rows; the delivery jobs (`jobs`: by request id and kind) of the rows stored
# as verified, in the rows' order.  Returns each row's id and status, in the batch's
# order.
_STORE_BATCH = f"""
CREATE OR REPLACE FUNCTION avasam_store_batch(
    batch json, bodies bytea[], jobs json,
    reused_http integer, reused_reason text, reused_detail text
) RETURNS TABLE (stored_id bigint, stored_status text)
LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
DECLARE
    verdicts text[];
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_SPACE}, {INSERT_LOCK});
    PERFORM pg_notify('{CHANNEL}', '');
    SELECT array_agg(CASE WHEN g.status <> 'verified' THEN g.status ELSE coalesce((
        SELECT CASE WHEN e.kind = g.kind THEN 'duplicate' ELSE 'reused' END
        FROM events e WHERE e.status = 'verified' AND e.request_id = g.request_id
        ORDER BY e.kind = g.kind DESC LIMIT 1
    ), 'verified') END ORDER BY g.n) INTO verdicts
    FROM ROWS FROM (json_to_recordset(batch) AS ({_ROW_FIELDS}))
        WITH ORDINALITY AS g ({_ROW_NAMES}, n);
    RETURN QUERY
    WITH stored AS (
        INSERT INTO events ({INSERTED_COLUMNS})
        SELECT received_at, kind,
            CASE verdicts[n] WHEN 'reused' THEN 'rejected' ELSE verdicts[n] END,
            CASE verdicts[n] WHEN 'reused' THEN reused_http ELSE http_status END,
            CASE verdicts[n] WHEN 'reused' THEN reused_reason ELSE reason END,
            CASE verdicts[n] WHEN 'reused' THEN reused_detail ELSE detail END,
            request_id, item_count, client, headers, body
        FROM ROWS FROM (json_to_recordset(batch) AS ({_ROW_FIELDS}), unnest(bodies))
            WITH ORDINALITY AS g ({_ROW_NAMES}, body, n)
        ORDER BY n
        RETURNING id, kind, request_id, status
    ), queued AS (
        INSERT INTO deliveries (event_id, job, target, queued_at, next_attempt_at,
                                headers_needed)
        SELECT s.id, j.job, j.target, j.queued_at, j.queued_at, j.headers_needed
        FROM stored s JOIN ROWS FROM (json_to_recordset(jobs) AS (
            request_id text, kind text, job text, target text, queued_at double precision,
            headers_needed text
        )) WITH ORDINALITY AS j (request_id, kind, job, target, queued_at, headers_needed, n)
        ON s.status = 'verified' AND s.request_id = j.request_id AND s.kind = j.kind
        ORDER BY s.id, j.n
    )
    SELECT s.id, s.status FROM stored s ORDER BY s.id;
END $$
"""  # noqa: S608 - literals only
# The writer calls it through libpq itself (psycopg's `pgconn`), as a statement prepared
# once per connection, with its parameters already bytes: psycopg's `execute` adapted
# each parameter in Python and looked its statement up on every batch, a fifth of the
# writer's CPU (bench/, 1-item updates: 23-25 -> 18-19 us a request).
_BATCH_STATEMENT = b"avasam_store_batch"
_BATCH_CALL = b"SELECT * FROM avasam_store_batch($1, $2, $3, $4, $5, $6)"
_BYTEA, _BYTEA_ARRAY = 17, 1001  # type oids
_BATCH_TYPES = [0, _BYTEA_ARRAY, 0, 0, 0, 0]  # 0: the server infers it from the function
_BATCH_FORMATS = [0, 1, 0, 0, 0, 0]  # the bodies in binary (no escaping), the rest text
_REUSED_PARAMS = [str(value).encode() for value in REUSED_ANSWER]
_ARRAY_HEAD = struct.Struct(">iiiii")  # dimensions, has nulls, element type, size, lower bound
_LENGTH = struct.Struct(">i")


def _bytea_array(bodies: Sequence[bytes]) -> bytes:
    """`bodies` as a one-dimensional bytea[] in PostgreSQL's binary format."""
    parts = [_ARRAY_HEAD.pack(1, 0, _BYTEA, len(bodies), 1)]
    for body in bodies:
        parts += (_LENGTH.pack(len(body)), body)
    return b"".join(parts)


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
    # A batch's transaction in one round trip (no table changes: SQLite has no step here).
    _STORE_BATCH,
    # The same function, for the stores step 4 gave its first version: that one carried
    # the bodies through a materialized look-up, a copy of each (1,000-item updates: the
    # server's backend about 600 us of CPU a request, this one 290-370 in most runs).
    _STORE_BATCH,
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
        self._batch_prepared = False  # on this connection: see _store_batch
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
        """Each batch in one transaction of one round trip (see _STORE_BATCH)."""
        for start in range(0, len(events), MAX_BATCH):
            batch = events[start : start + MAX_BATCH]
            _judge_within(batch)
            rows = orjson.dumps([
                {"received_at": event.received_at, "kind": event.kind, "status": event.status,
                 "http_status": event.http_status, "reason": event.reason,
                 "detail": event.detail, "request_id": event.request_id,
                 "item_count": event.item_count, "client": event.client,
                 "headers": event.headers_json}
                for event in batch
            ])  # fmt: skip
            jobs = _jobs(batch, plan) if plan else None
            bodies = _bytea_array([event.body for event in batch])
            try:
                stored = self._store_batch([rows, bodies, jobs, *_REUSED_PARAMS])
            except psycopg.Error as error:
                raise StoreError(
                    f"cannot write to the event store {self.location}: {_first_line(error)}"
                ) from None
            for event, (row_id, status) in zip(batch, stored, strict=True):
                event.id = row_id
                if status == "duplicate":
                    event.status = "duplicate"
                elif status != event.status:
                    event.refuse_as_reused()

    def _store_batch(self, params: list[bytes | None]) -> list[tuple[int, str]]:
        """avasam_store_batch's (id, status) rows for one batch (see _BATCH_STATEMENT);
        psycopg.Error when the server or the connection fails."""
        pgconn = self.conn.pgconn
        if not self._batch_prepared:
            self._check(pgconn.prepare(_BATCH_STATEMENT, _BATCH_CALL, _BATCH_TYPES), "prepare")
            self._batch_prepared = True
        result = pgconn.exec_prepared(_BATCH_STATEMENT, params, _BATCH_FORMATS)
        self._check(result, "store")
        value = result.get_value
        return [(int(value(row, 0)), value(row, 1).decode()) for row in range(result.ntuples)]

    def _check(self, result: Any, doing: str) -> None:
        if result.status not in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
            said = result.error_message or self.conn.pgconn.error_message
            raise psycopg.OperationalError(said.decode("utf-8", "replace") or f"cannot {doing}")

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


def _judge_within(events: Sequence[Event]) -> None:
    """In one batch, a request id verified again: for the same kind a duplicate, for the
    other kind refused (avasam_store_batch judges each against the earlier batches)."""
    first_kind: dict[str | None, str] = {}
    for event in events:
        if event.status != "verified":
            continue
        kind = first_kind.get(event.request_id)
        if kind is None:
            first_kind[event.request_id] = event.kind
        elif kind == event.kind:
            event.status = "duplicate"
        else:
            event.refuse_as_reused()


def _jobs(events: Sequence[Event], plan: Plan) -> bytes:
    """The delivery jobs of the verified updates among `events`, for avasam_store_batch:
    queued only for those it stores as verified."""
    now, needed = time.time(), plan.headers_needed
    return orjson.dumps([
        {"request_id": event.request_id, "kind": event.kind, "job": job, "target": target,
         "queued_at": now, "headers_needed": needed if job == FORWARD else None}
        for event in events
        if event.status == "verified"
        for job, target in plan.jobs_for(event.kind, event.headers_json)
    ])  # fmt: skip
