"""Retention: `events prune`, `listen --retain`, and the store methods under them."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from avasam_cli.store.base import open_store
from avasam_cli.store.events import Event
from tests.conftest import Cli
from tests.helpers import ListenProcess, store_rows


def days_ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")


def fill(path: Path, days: float, count: int, kind: str = "price", status: str = "verified",
         prefix: str = "r", ack: str | None = None) -> None:  # fmt: skip
    """`count` events received `days` ago, each with a 2 KB body (so space can be freed)."""
    events = [
        Event(
            received_at=days_ago(days),
            kind=kind,
            status=status,
            http_status=200 if status != "rejected" else 401,
            headers_json="[]",
            body=b"x" * 2048,
            request_id=f"{prefix}-{n}",
            item_count=1,
        )
        for n in range(count)
    ]
    with open_store(path) as store:
        store.insert(events)
        if ack:
            for event in events:
                store.record_acknowledgement(event.request_id or "", ack, "", days_ago(days))


def test_prune_keeps_pending_acknowledgements_and_recent_rows(store_location: Any) -> None:
    path = store_location
    fill(path, 40, 300, prefix="old-price")
    fill(path, 40, 20, kind="stock", prefix="old-pending")
    fill(path, 40, 10, kind="stock", prefix="old-acked", ack="acknowledged")
    fill(path, 40, 5, kind="stock", prefix="old-failed", ack="failed")
    fill(path, 1, 7, prefix="new")
    before = days_ago(30)
    with open_store(path) as store:
        assert store.count_prunable(before) == (310, 25)
        assert store.prune(before, limit=100) == 100
        while store.prune(before, limit=100):
            pass
        assert store.count_prunable(before) == (0, 25)
    left = {row["request_id"].rsplit("-", 1)[0] for row in store_rows(path)}
    assert left == {"old-pending", "old-failed", "new"}


def test_prune_by_status(store_location: Any) -> None:
    path = store_location
    fill(path, 40, 3, prefix="kept")
    fill(path, 40, 4, status="rejected", prefix="gone")
    with open_store(path) as store:
        assert store.prune(days_ago(30), status="rejected") == 4
    assert {row["status"] for row in store_rows(path)} == {"verified"}


def test_space_goes_back_to_the_disk(tmp_path: Path) -> None:
    """New stores reclaim in steps; an older store (no auto_vacuum) is converted once."""
    new = tmp_path / "new.sqlite3"
    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(old) as conn:  # as a store made before auto_vacuum was set
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("CREATE TABLE placeholder (x)")
    for path in (new, old):
        fill(path, 40, 2000)
        with open_store(path) as store:
            while store.prune(days_ago(30)):
                pass
            if path == old:
                assert list(store.reclaim_space(allow_vacuum=False)) == []
            steps = list(store.reclaim_space())
            assert steps and steps[-1][0] == steps[-1][1] > 500
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
            assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental now
        assert path.stat().st_size < 200_000


def test_events_prune_command(cli: Cli, isolated_home: Path) -> None:
    path = isolated_home / "data" / "events.sqlite3"
    fill(path, 40, 50, prefix="old")
    fill(path, 40, 3, kind="stock", prefix="pending")
    fill(path, 2, 5, prefix="new")
    dry = cli("events", "prune", "--older-than", "30d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would delete 50 events" in dry.stderr and "Keeping 3 verified stock" in dry.stderr
    assert len(store_rows(path)) == 58
    unconfirmed = cli("events", "prune", "--older-than", "30d")
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.stderr
    assert len(store_rows(path)) == 58
    done = cli("events", "prune", "--older-than", "30d", "--yes")
    assert done.exit_code == 0, done.output
    assert "Deleted 50 events" in done.stderr
    assert len(store_rows(path)) == 8
    again = cli("events", "prune", "--older-than", "30d", "--yes")
    assert "No events received before" in again.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--older-than", "soon"], "--older-than 24h"),
        (["--older-than", "30d", "--status", "old"], "verified, duplicate or rejected"),
    ],
)
def test_events_prune_usage_errors(cli: Cli, args: list[str], fragment: str) -> None:
    result = cli("events", "prune", *args)
    assert result.exit_code == 2 and fragment in result.stderr


def test_listen_retain_prunes_off_the_request_path(isolated_home: Path) -> None:
    """A listener with --retain deletes what is older, while it answers."""
    path = isolated_home / "data" / "events.sqlite3"
    fill(path, 40, 3000, prefix="old")
    fill(path, 1, 4, prefix="new")
    listener = ListenProcess(isolated_home, "--retain", "30d")
    try:
        deadline = time.monotonic() + 20
        while len(store_rows(path, "request_id LIKE 'old-%'")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store_rows(path, "request_id LIKE 'old-%'") == []
        assert len(store_rows(path, "request_id LIKE 'new-%'")) == 4
    finally:
        code, _, err = listener.stop()
    assert code == 0
    assert "Retention: deleted 3,000 events received before" in err


def test_listen_retain_needs_a_duration(cli: Cli) -> None:
    result = cli("listen", "--retain", "forever")
    assert result.exit_code == 2 and "--retain 30d" in result.stderr


def test_prune_keeps_updates_with_a_pending_delivery_and_drops_the_rest_with_their_jobs(
    tmp_path: Path,
) -> None:
    """An old price update whose forward is still pending is kept; once delivered, it goes
    with its job and attempts."""
    import sqlite3

    from avasam_cli.store.deliveries import Attempt
    from avasam_cli.store.jobs import Plan

    path = tmp_path / "s.sqlite3"
    with open_store(path) as store:
        store.insert(
            [
                Event(days_ago(40), "price", "verified", 200, "[]", b"{}",
                      request_id=f"fw-{n}", item_count=1)
                for n in range(3)
            ],
            Plan({"price": "http://127.0.0.1:9/shop"}),
        )  # fmt: skip
        (job, *_) = store.claim_deliveries("t", 1e12, 60, 10, None)
        store.finish_deliveries([Attempt(job.id, "now", "200", 1.0, "ok", "delivered", 0.0)])
        assert store.count_prunable(days_ago(30)) == (1, 2)
        assert store.prune(days_ago(30)) == 1
        assert sorted(row.request_id for row in store.deliveries()) == ["fw-1", "fw-2"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM delivery_attempts").fetchone() == (0,)
