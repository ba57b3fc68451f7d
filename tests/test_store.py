"""The store interface on its SQLite backend: writing, reading, and schema migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avasam_cli.errors import StoreError
from avasam_cli.store.base import open_store
from avasam_cli.store.events import Event, StoredEvent, event_json
from avasam_cli.store.migrations import MIGRATIONS


def event(request_id: str | None, kind: str = "stock", status: str = "verified") -> Event:
    return Event(
        received_at="2026-11-27T10:00:00.000+00:00",
        kind=kind,
        status=status,
        http_status=200 if status == "verified" else 401,
        headers_json='[["content-type", "application/json"]]',
        body=b'{"data": []}',
        request_id=request_id,
        item_count=0,
        reason=None if status == "verified" else "bad_signature",
    )


def test_insert_decides_duplicates_and_sets_ids(store_location: Any) -> None:
    """A verified (kind, request id) seen before becomes a duplicate row; ids follow order."""
    with open_store(store_location) as store:
        first = [event("a"), event("b"), event("p", kind="price"), event(None, status="rejected")]
        store.insert(first)
        again = [event("a"), event("c")]
        store.insert(again)
        # Ids grow from batch to batch.  Within one, SQLite stores the duplicates after
        # the new rows (a second statement), PostgreSQL in the batch's order.
        ids = [e.id or 0 for e in first + again]
        assert ids[:4] == sorted(ids[:4]) and max(ids[:4]) < min(ids[4:])
        assert len(set(ids)) == len(ids)
        assert [e.status for e in again] == ["duplicate", "verified"]
        assert store.count_by_status() == {"verified": 4, "duplicate": 1, "rejected": 1}


def test_reads_return_named_records(store_location: Any) -> None:
    """latest, find and pending_acknowledgements answer with StoredEvent records."""
    with open_store(store_location) as store:
        store.insert([event("a"), event("b"), event("p", kind="price"), event("a")])
        latest = list(store.latest(2))
        assert [(e.request_id, e.status) for e in latest] == [("a", "duplicate"), ("p", "verified")]
        found = store.find("a")
        assert isinstance(found, StoredEvent) and found.id == 1 and found.status == "verified"
        assert store.find(str(latest[0].id)) is not None and store.find("nope") is None
        assert next(store.latest(10, kind="price")).request_id == "p"
        assert store.pending_acknowledgements() == ["a", "b"]  # stock only: price is not acked
        store.record_acknowledgement("a", "acknowledged", "200 ok", "2026-11-27T10:00:01+00:00")
        assert store.pending_acknowledgements() == ["b"]


def test_one_json_shape_for_listen_and_events(store_location: Any) -> None:
    """A stored event's JSON keeps listen --json's names and adds what happened after."""
    with open_store(store_location) as store:
        store.insert([event("a"), event("x", status="rejected")])
        verified, rejected = store.find("a"), store.find("x")
    assert verified is not None and rejected is not None
    record = event_json(verified)
    assert record["requestId"] == "a" and record["status"] == "verified"
    assert record["acknowledgement"] == {"status": None, "at": None, "detail": None}
    assert [list(pair) for pair in record["headers"]] == [["content-type", "application/json"]]
    assert event_json(rejected)["reason"] == "bad_signature"


def test_new_store_is_at_the_latest_schema(tmp_path: Path) -> None:
    """Opening creates the file at mode 0600 with every migration applied."""
    path = tmp_path / "s.sqlite3"
    open_store(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_unversioned_store_is_migrated_in_place(tmp_path: Path) -> None:
    """A file with no schema yet gets every migration; its other tables are kept."""
    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('kept')")
    with open_store(path) as store:
        store.insert([event("a")])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT text FROM notes").fetchall() == [("kept",)]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_store_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    """A schema newer than this program: a clear StoreError, and the file is not changed."""
    path = tmp_path / "s.sqlite3"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    before = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StoreError, match="newer avasam-cli"):
            open_store(path, read_only=read_only)
    assert path.read_bytes() == before


def test_read_only_access_never_writes(tmp_path: Path) -> None:
    """A reader never migrates (an older store is explained), and never creates a file."""
    missing = tmp_path / "missing.sqlite3"
    with open_store(missing, read_only=True) as store:
        assert list(store.latest(5)) == []
    assert not missing.exists()
    older = tmp_path / "older.sqlite3"
    with sqlite3.connect(older) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    before = older.read_bytes()
    with pytest.raises(StoreError, match=r"older avasam-cli.*avasam doctor"):
        open_store(older, read_only=True)
    assert older.read_bytes() == before


def test_one_request_id_is_verified_for_one_kind_only(store_location: Any) -> None:
    """Within one batch or across batches, the second kind for a request id is refused."""
    with open_store(store_location) as store:
        batch = [event("r"), event("r", kind="price")]
        store.insert(batch)
        later = [event("r", kind="price")]
        store.insert(later)
    assert [e.status for e in batch + later] == ["verified", "rejected", "rejected"]
    assert {e.reason for e in batch[1:] + later} == {"request_id_reused"}


@pytest.mark.parametrize("restart_at", [None, 4096], ids=["small-burst", "past-restart"])
def test_the_writer_leaves_an_empty_wal_once_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart_at: int | None
) -> None:
    """After a burst, the receiver's store copies its WAL back and truncates it (it would
    otherwise keep its largest size until the listener stops); also when the burst ended
    with the WAL past the size at which it is restarted (a restart leaves it that size
    until the next write)."""
    import time

    from avasam_cli.store import sqlite as sqlite_store

    if restart_at is not None:
        monkeypatch.setattr(sqlite_store, "WAL_RESTART_AT", restart_at)
    path = tmp_path / "s.sqlite3"
    wal = tmp_path / "s.sqlite3-wal"
    with open_store(path, bulk_writer=True) as store:
        for start in range(0, 2000, 100):
            store.insert([event(f"r-{n}") for n in range(start, start + 100)])
        assert wal.stat().st_size > 0
        deadline = time.monotonic() + 20
        while wal.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wal.stat().st_size == 0
        assert len(list(store.latest(5000))) == 2000


def test_a_listing_reads_no_bodies_and_streams(tmp_path: Path) -> None:
    """`events list` asks for columns only; rows come one at a time."""
    path = tmp_path / "s.sqlite3"
    with open_store(path) as store:
        store.insert([event(f"r-{n}") for n in range(3)])
        listed = store.latest(10, with_body=False)
        first = next(listed)
        assert first.request_id == "r-2" and first.body == b"" and first.headers_json == "[]"
        assert [e.request_id for e in listed] == ["r-1", "r-0"]
        assert next(store.latest(1)).body == b'{"data": []}'


def _sqlite_schema(path: Path) -> dict[str, Any]:
    import re

    with sqlite3.connect(path) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )]  # fmt: skip
        columns = {t: sorted(row[1] for row in conn.execute(f"PRAGMA table_info({t})"))
                   for t in tables}  # fmt: skip
        indexes = {}
        for name, table, sql in conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ):
            on = [row[2] for row in conn.execute(f"PRAGMA index_info({name})")]
            where = re.search(r"WHERE (.*)$", sql, re.S)
            unique = sql.upper().startswith("CREATE UNIQUE")
            indexes[name] = (table, on, unique, where[1].strip() if where else None)
    return {"columns": columns, "indexes": indexes}


def _postgres_schema(url: str) -> dict[str, Any]:
    import re

    import psycopg

    with psycopg.connect(url) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s",
            (schema,),
        ):
            columns.setdefault(table, []).append(column)
        indexes = {}
        for name, table, definition in conn.execute(
            "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = %s",
            (schema,),
        ):
            if name.endswith("_pkey"):
                continue  # SQLite's INTEGER PRIMARY KEY is the row id, no index of its own
            on = re.search(r"\((.*?)\)", definition)[1]  # type: ignore[index]
            where = re.search(r"WHERE \((.*)\)$", definition)
            unique = definition.startswith("CREATE UNIQUE")
            indexes[name] = (table, [c.strip() for c in on.split(",")], unique,
                             where[1] if where else None)  # fmt: skip
    columns.pop("avasam_schema")  # its version: SQLite keeps it in PRAGMA user_version
    return {"columns": {t: sorted(c) for t, c in columns.items()}, "indexes": indexes}


def _matches_the_description(found: dict[str, Any], where_of: Any) -> None:
    from avasam_cli.store.schema import INDEXES, TABLES

    assert found["columns"] == {table: sorted(columns) for table, columns in TABLES.items()}
    assert set(found["indexes"]) == set(INDEXES)
    for name, (table, on, unique, where) in found["indexes"].items():
        described = INDEXES[name]
        assert (table, tuple(on), unique) == described[:3], name
        assert where_of(where) == described.where, name


def test_both_databases_end_with_the_described_schema(tmp_path: Path, postgres_store: str) -> None:
    """Every migration of each backend applied: the tables, columns and indexes (unique
    and partial alike) of `store.schema`, on both."""
    from avasam_cli.paths import DatabaseUrl

    sqlite_path = tmp_path / "s.sqlite3"
    open_store(sqlite_path).close()
    open_store(DatabaseUrl(postgres_store)).close()
    _matches_the_description(_sqlite_schema(sqlite_path), lambda where: where)
    # PostgreSQL writes a predicate back its own way: (status = 'verified'::text).
    _matches_the_description(
        _postgres_schema(postgres_store),
        lambda where: where.replace("::text", "") if where else where,
    )


def test_a_postgresql_store_at_schema_4_gets_the_current_batch_function(
    postgres_store: str,
) -> None:
    """Step 5 replaces the function step 4 created: a store migrated to 4 by the release
    before stores its batches with this release's."""
    import psycopg

    from avasam_cli.paths import DatabaseUrl
    from avasam_cli.store import postgres

    open_store(DatabaseUrl(postgres_store)).close()
    with psycopg.connect(postgres_store, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION avasam_store_batch(batch json, bodies bytea[], "
            "jobs json, reused_http integer, reused_reason text, reused_detail text) "
            "RETURNS TABLE (stored_id bigint, stored_status text) LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE 'the function of schema 4'; END $$"
        )
        conn.execute("UPDATE avasam_schema SET version = 4")
    with open_store(DatabaseUrl(postgres_store)) as store:
        first, again = [event("a"), event("b", kind="price")], [event("a"), event("b")]
        store.insert(first)
        store.insert(again)
    assert [e.status for e in first + again] == ["verified", "verified", "duplicate", "rejected"]
    assert again[1].reason == "request_id_reused"
    with psycopg.connect(postgres_store) as conn:
        version = conn.execute("SELECT version FROM avasam_schema").fetchone()
    assert version == (len(postgres.MIGRATIONS),)


def test_an_older_sqlite_store_keeps_its_attempts_through_the_migration(tmp_path: Path) -> None:
    """A store at schema 3 (attempts without an id of their own): migrated, its attempts
    are kept, in the order they were written."""
    from avasam_cli.store.migrations import MIGRATIONS as STEPS

    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as conn:
        for step in STEPS[:3]:
            step(conn)
        conn.execute("PRAGMA user_version = 3")
        conn.execute("INSERT INTO deliveries (event_id, job, target, queued_at, next_attempt_at) "
                     "VALUES (1, 'forward', 'http://shop', 0, 0)")  # fmt: skip
        for status in ("500", "502", "200"):
            conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, at, status) VALUES (1, 'now', ?)",
                (status,),
            )
    with open_store(path) as store:
        assert [attempt[1] for attempt in store.delivery_attempts(1)] == ["500", "502", "200"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"Host", b"X-Api-Key", b"authorization", b"X-\xe9"]) | st.binary(),
            st.binary(),
        ),
        max_size=8,
    )
)
def test_stored_headers_are_json_dumps_of_the_redacted_pairs(
    raw: list[tuple[bytes, bytes]],
) -> None:
    """The store writer's header writer gives exactly json.dumps's text (readers look for
    markers in it), names lower-case, credentials redacted, whatever the bytes."""
    import json

    from avasam_cli.store.events import REDACTED, is_credential_header, redacted_headers

    pairs = []
    for name, value in raw:
        text = name.decode("latin-1").lower()
        pairs.append((text, REDACTED if is_credential_header(text) else value.decode("latin-1")))
    assert redacted_headers(raw) == json.dumps(pairs)
    assert redacted_headers(raw) == json.dumps(pairs)  # the names' second time, from memory


@pytest.mark.parametrize(("durability", "pragma"), [("normal", 1), ("full", 2)])
def test_the_sqlite_store_commits_with_the_durability_asked_for(
    tmp_path: Path, durability: str, pragma: int
) -> None:
    """`--durability` (profile `durability`) is SQLite's `synchronous` on the writer's
    connection: FULL syncs the WAL at every commit, so a power cut loses nothing."""
    store = open_store(tmp_path / "events.sqlite3", bulk_writer=True, durability=durability)
    try:
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == pragma  # type: ignore[attr-defined]
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # type: ignore[attr-defined]
    finally:
        store.close()


def test_the_receivers_writer_syncs_every_commit_unless_told_otherwise(tmp_path: Path) -> None:
    """By default what is answered 200 survives a power cut: `listen`'s writer runs FULL
    (the profile's field, the flag's and the writer's defaults agree); the other writers'
    connections (runner, ack) NORMAL."""
    from avasam_cli.config.fields import BY_NAME
    from avasam_cli.receiver.writer import StoreWriter

    assert BY_NAME["durability"].default == StoreWriter(tmp_path / "e.sqlite3").durability == "full"
    store = open_store(tmp_path / "events.sqlite3")
    try:
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # type: ignore[attr-defined]
    finally:
        store.close()


def test_the_writer_asks_again_for_a_held_lock_in_short_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's transaction (the delivery runner's) holds the write lock: the
    receiver's writer asks again after FIRST_STEP, not SQLite's first millisecond, and
    stores the batch once the lock is free."""
    from avasam_cli.store import transactions

    path = tmp_path / "events.sqlite3"
    store = open_store(path, bulk_writer=True)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    steps: list[float] = []

    def sleep(seconds: float) -> None:  # the other transaction ends while the writer waits
        steps.append(seconds)
        if len(steps) == 3:
            other.execute("COMMIT")

    monkeypatch.setattr("avasam_cli.store.transactions.time.sleep", sleep)
    try:
        store.insert([event("held-lock")])
        assert steps == [transactions.FIRST_STEP * 2**n for n in range(3)]
        assert [e.request_id for e in store.latest(5)] == ["held-lock"]
    finally:
        other.close()
        store.close()


def test_a_lock_held_past_the_wait_fails_as_busy(tmp_path: Path) -> None:
    from avasam_cli.store.transactions import write_transaction

    path = tmp_path / "events.sqlite3"
    open_store(path).close()
    mine = sqlite3.connect(path, isolation_level=None)
    mine.execute("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"), write_transaction(mine, 0.02):
            pass
        assert not mine.in_transaction
    finally:
        other.close()
        mine.close()


def test_rows_become_stored_events_by_position_as_by_keyword() -> None:
    """The maker that reads rows builds what keywords would, for the store's full and
    listed columns in any order, and refuses what keywords refuse."""
    from avasam_cli.store.events import stored_event_maker

    values: dict[str, Any] = {
        "id": 7, "received_at": "2026-12-06T00:00:00.000+00:00", "kind": "stock",
        "status": "verified", "http_status": 200, "headers_json": "[]", "body": b"{}",
        "reason": None, "detail": "d", "request_id": "r-7", "item_count": 1,
        "client": "127.0.0.1:5", "ack_status": "acknowledged", "ack_at": "t",
        "ack_detail": None, "forward_status": "delivered", "forward_detail": "200",
    }  # fmt: skip
    for columns in (tuple(values), tuple(reversed(values)), ("body", "received_at", "kind",
                    "status", "http_status", "headers_json")):  # fmt: skip
        row = tuple(values[name] for name in columns)
        made = stored_event_maker(columns)(row)
        assert made == StoredEvent(**dict(zip(columns, row, strict=True)))
    with pytest.raises(TypeError, match="nope"):
        stored_event_maker((*values, "nope"))
    with pytest.raises(TypeError, match="body"):
        stored_event_maker(("received_at", "kind", "status", "http_status", "headers_json"))
