"""The store's contract: every `EventStore` method, with the same assertions, on a real
SQLite file and on a real PostgreSQL schema (`store_location` runs each test on both)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from avasam_cli.store.base import EventStore, open_store
from avasam_cli.store.deliveries import Attempt
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import ACKNOWLEDGE, AVASAM_API, FORWARD, TEST_MARKER, Plan

SHOP = "http://127.0.0.1:9/shop"
PLAN = Plan({"stock": SHOP, "price": SHOP}, acknowledge=True)


def _event(
    request_id: str,
    kind: str = "stock",
    status: str = "verified",
    at: str = "2026-11-27T10:00:00.000+00:00",
    sku: str = "MUG-RED",
    test: bool = False,
) -> Event:
    headers = '[["content-type", "application/json"]' + (
        f', ["{TEST_MARKER}", "1"]]' if test else "]"
    )
    return Event(
        received_at=at,
        kind=kind,
        status=status,
        http_status=200 if status == "verified" else 401,
        headers_json=headers,
        body=b'{"data": [{"sku": "%s", "quantity": 1}]}' % sku.encode(),
        request_id=request_id,
        item_count=1,
        reason=None if status == "verified" else "bad_signature",
    )


@pytest.fixture
def store(store_location: Any) -> Any:
    with open_store(store_location) as opened:
        yield opened


def _ids(events: Any) -> list[str | None]:
    return [event.request_id for event in events]


def test_insert_decides_duplicates_and_refuses_a_reused_request_id(store: EventStore) -> None:
    batch = [_event("a"), _event("a"), _event("b", kind="price"), _event("b")]
    store.insert(batch)
    later = [_event("a"), _event("r", status="rejected")]
    store.insert(later)
    assert [e.status for e in batch + later] == [
        "verified", "duplicate", "verified", "rejected", "duplicate", "rejected"
    ]  # fmt: skip
    assert all(e.id for e in batch + later)
    assert batch[3].reason == "request_id_reused"
    assert store.count_by_status() == {"verified": 2, "duplicate": 2, "rejected": 2}
    assert [at for at, _ in store.duplicates_of("stock", "a")] == [batch[1].received_at] * 2


def test_latest_after_and_their_filters(store: EventStore) -> None:
    store.insert([_event("s1"), _event("p1", kind="price"), _event("t1", test=True),
                  _event("x1", status="rejected")])  # fmt: skip
    assert _ids(store.latest(10)) == ["x1", "t1", "p1", "s1"]
    assert _ids(store.latest(2)) == ["x1", "t1"]
    assert _ids(store.latest(10, kind="price")) == ["p1"]
    assert _ids(store.latest(10, status="rejected")) == ["x1"]
    assert _ids(store.latest(10, test=True)) == ["t1"]
    assert _ids(store.latest(10, "stock", "verified", test=False)) == ["s1"]
    listed = next(store.latest(1, with_body=False))
    assert listed.body == b"" and listed.request_id == "x1"
    marked = next(store.latest(1, test=True, with_body=False))
    assert TEST_MARKER in marked.headers_json  # a listing still says it is a test event
    first = next(store.latest(10, kind="stock", status="verified", test=False))
    assert first.id is not None
    assert _ids(store.after(0, 10)) == ["s1", "p1", "t1", "x1"]
    assert _ids(store.after(first.id, 2)) == ["p1", "t1"]
    assert _ids(store.after(0, 10, kind="stock", test=False)) == ["s1", "x1"]


def test_search_pages_and_filters(store: EventStore) -> None:
    store.insert([
        _event("a", at="2026-11-01T00:00:00.000+00:00", sku="CUP-1"),
        _event("b", at="2026-11-02T00:00:00.000+00:00", kind="price"),
        _event("c", at="2026-11-03T00:00:00.000+00:00", status="rejected"),
    ])  # fmt: skip
    newest = store.search(2)
    assert _ids(newest) == ["c", "b"] and all(e.body == b"" for e in newest)
    assert newest[1].id is not None
    assert _ids(store.search(10, before_id=newest[1].id)) == ["a"]
    assert _ids(store.search(10, after_id=0)) == ["a", "b", "c"]
    assert _ids(store.search(10, filters={"kind": "price"})) == ["b"]
    assert _ids(store.search(10, filters={"status": "rejected"})) == ["c"]
    assert _ids(store.search(10, filters={"reason": "bad_signature"})) == ["c"]
    assert _ids(store.search(10, filters={"request_id": "a"})) == ["a"]
    assert _ids(store.search(10, filters={"sku": "CUP-1"})) == ["a"]
    assert _ids(store.search(10, filters={"sku": "CUP"})) == []  # the whole SKU only
    since = {"since": "2026-11-02T00:00:00", "until": "2026-11-03T00:00:00"}
    assert _ids(store.search(10, filters=since)) == ["b"]
    assert _ids(store.search(10, filters={"kind": ""})) == ["c", "b", "a"]  # empty: no filter


def test_find_by_row_id_or_request_id(store: EventStore) -> None:
    batch = [_event("f", status="rejected"), _event("f"), _event("f")]
    store.insert(batch)
    assert batch[0].id is not None
    found = store.find(str(batch[0].id))
    assert found is not None and found.status == "rejected"
    by_request = store.find("f")
    assert by_request is not None and by_request.status == "verified"  # verified first
    assert store.find("nope") is None
    assert store.find("99999999999999999999") is None  # above any row id: no overflow
    assert store.find("9223372036854775807") is None


def test_verified_since(store: EventStore) -> None:
    store.insert([
        _event("old", at="2026-11-01T00:00:00.000+00:00"),
        _event("new", at="2026-11-05T00:00:00.000+00:00"),
        _event("price", kind="price"),
        _event("bad", status="rejected"),
    ])  # fmt: skip
    assert _ids(store.verified_since("stock")) == ["old", "new"]
    assert _ids(store.verified_since("stock", "2026-11-02")) == ["new"]


def test_the_outbox_claims_in_order_and_acknowledges_after_the_forward(
    store: EventStore,
) -> None:
    first, second = _event("o1"), _event("o2")
    store.insert([first, second], PLAN)
    assert store.delivery_counts() == {"pending": 4}
    newest, due = store.outbox_marker()
    assert newest >= 4 and due is not None
    now = time.time() + 1
    claimed = store.claim_deliveries("runner-a", now, 60, 10)
    assert [(job.job, job.request_id) for job in claimed] == [(FORWARD, "o1"), (FORWARD, "o2")]
    assert store.claim_deliveries("runner-b", now, 60, 10) == []  # held by runner-a
    assert store.claim_deliveries("runner-b", now, 60, 10, only=ACKNOWLEDGE) == []  # waits
    at = "2026-11-27T10:00:01+00:00"
    store.finish_deliveries([Attempt(claimed[0].id, at, "200", 12.5, "ok", "delivered", 0.0)])
    assert store.delivery_counts_by_job() == {
        ("delivered", FORWARD): 1, ("pending", FORWARD): 1, ("pending", ACKNOWLEDGE): 2,
    }  # fmt: skip
    store.release_deliveries([claimed[1].id], "runner-a")
    acks = store.claim_deliveries("runner-b", now, 60, 10, only=ACKNOWLEDGE)
    assert [(job.job, job.target, job.request_id) for job in acks] == [
        (ACKNOWLEDGE, AVASAM_API, "o1")
    ]
    forwards = store.claim_deliveries("runner-b", now, 60, 10, only=FORWARD)
    assert [job.request_id for job in forwards] == ["o2"]
    event = store.find("o1")
    assert event is not None and (event.forward_status, event.forward_detail) == ("200", "200 ok")
    assert store.delivery_attempts(claimed[0].id) == [(at, "200", 12.5, "ok")]


def test_a_failed_attempt_is_retried_and_never_overwrites_an_acknowledgement(
    store: EventStore,
) -> None:
    store.insert([_event("k1")], Plan(acknowledge=True))
    (job,) = store.claim_deliveries("r", time.time() + 1, 60, 10)
    store.finish_deliveries([
        Attempt(job.id, "t1", "503", None, "busy", "pending", time.time() + 3600),
    ])  # fmt: skip
    event = store.find("k1")
    assert event is not None and event.ack_status == "failed"
    assert store.claim_deliveries("r", time.time() + 1, 60, 10) == []  # not due yet
    store.record_acknowledgement("k1", "acknowledged", "200 done", "t2")
    assert store.delivery_counts() == {"delivered": 1}  # the job is closed too
    store.record_acknowledgement("k1", "failed", "later failure", "t3")
    event = store.find("k1")
    assert event is not None and (event.ack_status, event.ack_detail) == (
        "acknowledged",
        "200 done",
    )
    statuses = [status for _, status, _, _ in store.delivery_attempts(job.id)]
    assert statuses == ["503", "200", "failed"]
    assert store.pending_acknowledgements() == []


def test_queue_acknowledgements_and_pending_ones(store: EventStore) -> None:
    store.insert([
        _event("q-old", at="2026-11-01T00:00:00.000+00:00"),
        _event("q-new", at="2026-11-05T00:00:00.000+00:00"),
        _event("q-test", test=True),
        _event("q-price", kind="price"),
    ])  # fmt: skip
    assert store.pending_acknowledgements() == ["q-old", "q-new", "q-test"]
    assert store.queue_acknowledgements("2026-11-02") == 1
    assert store.queue_acknowledgements() == 1  # the older one; never the test event
    assert store.queue_acknowledgements() == 0  # each once
    listed = store.deliveries(state="pending")
    assert sorted(row.request_id for row in listed) == ["q-new", "q-old"]
    assert {row.job for row in listed} == {ACKNOWLEDGE}


def test_deliveries_are_listed_filtered_and_moved(store: EventStore) -> None:
    store.insert([_event("m1"), _event("m2")], Plan({"stock": SHOP}))
    rows = store.deliveries()
    assert [row.request_id for row in rows] == ["m2", "m1"]  # newest first
    assert store.deliveries(target=SHOP, limit=1)[0].request_id == "m2"
    assert store.deliveries(target="http://elsewhere") == []
    assert [row.request_id for row in store.deliveries(event_id=rows[1].event_id)] == ["m1"]
    assert not rows[0].waits_for_forward
    assert store.change_deliveries("dead", ("pending",), ids=[rows[0].id]) == 1
    assert store.change_deliveries("dead", ("pending",)) == 0  # no selector: nothing
    assert store.change_deliveries("pending", ("dead",), every=True) == 1
    assert store.change_deliveries("cancelled", ("pending", "dead"), target=SHOP) == 2
    assert store.delivery_counts() == {"cancelled": 2}


def test_overdue_counts_pending_jobs_queued_before_a_time(store: EventStore) -> None:
    assert store.overdue(time.time()) == (0, None, None)
    store.insert([_event("d1"), _event("d2")], Plan({"stock": SHOP}))
    late, oldest, target = store.overdue(time.time() + 1)
    assert (late, target) == (2, SHOP) and oldest is not None and oldest <= time.time()
    assert store.overdue(oldest)[0] == 0  # none queued before the oldest


def test_prune_keeps_what_is_still_owed(store: EventStore) -> None:
    old = "2026-01-01T00:00:00.000+00:00"
    store.insert([_event("p-acked", at=old), _event("p-owed", at=old),
                  _event("p-bad", at=old, status="rejected"), _event("p-new")])  # fmt: skip
    store.record_acknowledgement("p-acked", "acknowledged", "200", "t")
    assert store.count_prunable("2026-06-01") == (2, 1)
    assert store.count_prunable("2026-06-01", status="rejected") == (1, 0)
    assert store.prune("2026-06-01", limit=1) == 1
    assert store.prune("2026-06-01") == 1
    assert store.prune("2026-06-01") == 0
    assert sorted(_ids(store.latest(10)), key=str) == ["p-new", "p-owed"]
    assert all(isinstance(step, tuple) for step in store.reclaim_space())


def test_the_stores_housekeeping(store: EventStore) -> None:
    assert store.ensure_present() is None
    store.check_writable()
    started = time.monotonic()
    store.wait_for_rows(0.05)
    assert time.monotonic() - started < 5


def test_a_connection_left_unusable_is_opened_again(postgres_store: str) -> None:
    """A PostgreSQL connection left in pipeline mode (a server gone in the middle of an
    executemany, its rollback failed: seen under a restart, every statement after it
    refused) or inside a transaction is not `broken`, yet not usable between statements:
    ensure_present opens it again, and the store reads again."""
    from avasam_cli.paths import DatabaseUrl

    with open_store(DatabaseUrl(postgres_store)) as store:
        store.insert([_event("u-1")])
        store.conn.pgconn.enter_pipeline_mode()  # type: ignore[attr-defined]
        assert "open again" in (store.ensure_present() or "")
        assert _ids(store.latest(10)) == ["u-1"]
        store.conn.execute("BEGIN")  # type: ignore[attr-defined]
        assert "open again" in (store.ensure_present() or "")
        assert _ids(store.latest(10)) == ["u-1"]
        assert store.ensure_present() is None


def test_a_batch_the_server_refuses_names_its_reason_and_the_next_is_stored(
    postgres_store: str,
) -> None:
    """PostgreSQL's batch call goes through libpq itself (`PostgresStore._store_batch`): a
    batch the server refuses is a StoreError with the server's reason, the connection
    stays usable for the next batch, and a connection opened again prepares the call
    again.  The bodies (binary, in one array) come back as they were sent."""
    import psycopg

    from avasam_cli.errors import StoreError
    from avasam_cli.paths import DatabaseUrl

    with open_store(DatabaseUrl(postgres_store)) as store:
        store.insert([_event("b-1"), _event("b-dup"), _event("b-dup")])
        with psycopg.connect(postgres_store, autocommit=True) as admin:
            admin.execute("ALTER TABLE events ADD CONSTRAINT no_bad CHECK (request_id <> 'b-bad')")
        bad = [_event("b-2"), _event("b-bad")]
        with pytest.raises(StoreError, match=r'cannot write to the event store .*"no_bad"'):
            store.insert(bad)
        store.insert([_event("b-3")])
        store.conn.close()  # type: ignore[attr-defined]  # as a server that went away
        assert "open again" in (store.ensure_present() or "")
        every_byte = _event("b-4")
        every_byte.body = bytes(range(256))
        store.insert([every_byte])
        stored = list(store.latest(10))
    assert sorted(_ids(stored), key=str) == ["b-1", "b-3", "b-4", "b-dup", "b-dup"]
    assert [event.status for event in stored].count("duplicate") == 1
    assert stored[0].request_id == "b-4" and stored[0].body == bytes(range(256))
