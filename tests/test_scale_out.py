"""Several receivers, one store: two listeners sharing a real PostgreSQL server,
`listen --workers 2` on each backend, and what users see of a PostgreSQL store."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from avasam_cli.paths import DatabaseUrl
from avasam_cli.store.base import open_store
from tests.helpers import JSON_HEADERS, TOKEN, ListenProcess, signed_body, store_rows
from tests.test_outbox import Shop, _wait

ENV = {"AVASAM_VERIFICATION_TOKEN": TOKEN}


def _post(url: str, request_id: str) -> tuple[int, str]:
    """One update on a connection of its own (so each may reach another process)."""
    answer = httpx.post(
        f"{url}/webhooks/stock", content=signed_body(request_id=request_id),
        headers=JSON_HEADERS, timeout=30,
    )  # fmt: skip
    status = answer.json().get("status", "") if answer.status_code == 200 else ""
    return answer.status_code, status


def _send_all(jobs: list[tuple[str, str]], threads: int = 16) -> list[tuple[int, str]]:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda job: _post(*job), jobs))


def _listener(home: Path, store: str, *args: str) -> ListenProcess:
    return ListenProcess(home, *args, env={**ENV, "AVASAM_STORE": store})


def test_two_listeners_on_one_postgresql_store_each_update_once(
    tmp_path: Path, postgres_store: str
) -> None:
    """The same 200 request ids, sent concurrently to two listeners on two ports: exactly
    200 answers say ok, the other 200 duplicate, and the store holds 200 verified rows."""
    first = _listener(tmp_path / "a", postgres_store)
    second = _listener(tmp_path / "b", postgres_store)
    try:
        ids = [f"twice-{n}" for n in range(200)]
        jobs = [(listener.url, rid) for rid in ids for listener in (first, second)]
        answers = _send_all(jobs)
    finally:
        first.stop()
        second.stop()
    assert {code for code, _ in answers} == {200}
    assert sum(status == "ok" for _, status in answers) == 200
    assert sum(status == "duplicate" for _, status in answers) == 200
    rows = store_rows(DatabaseUrl(postgres_store), "status = 'verified'")
    assert sorted(row["request_id"] for row in rows) == sorted(ids)


def test_two_listeners_forwarding_deliver_each_update_once(
    tmp_path: Path, postgres_store: str
) -> None:
    """Both listeners forward to one shop, and both run the outbox: every update reaches
    the shop exactly once, whichever listener took it and whichever runner claimed it."""
    shop = Shop()
    shop.start()
    try:
        first = _listener(tmp_path / "a", postgres_store, "--forward-to", shop.url)
        second = _listener(tmp_path / "b", postgres_store, "--forward-to", shop.url)
        try:
            ids = [f"fwd-{n}" for n in range(150)]
            jobs = [(listener.url, rid) for rid in ids for listener in (first, second)]
            assert {code for code, _ in _send_all(jobs)} == {200}
            _wait(lambda: len(shop.received) >= len(ids), seconds=60)
        finally:  # once both runners have stopped, nothing more can arrive
            first.stop()
            second.stop()
    finally:
        shop.stop()
    assert sorted(shop.received) == sorted(ids)
    with open_store(DatabaseUrl(postgres_store)) as store:
        assert store.delivery_counts() == {"delivered": 150}
        assert {job.attempts for job in store.deliveries(limit=1000)} == {1}  # once each


def test_kill_9_under_load_loses_no_answered_update(tmp_path: Path, postgres_store: str) -> None:
    """One of two listeners is killed (-9) while updates pour in: every update answered
    200 by either is in the store."""
    doomed = _listener(tmp_path / "a", postgres_store)
    other = _listener(tmp_path / "b", postgres_store)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def pour(url: str, prefix: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                code, status = _post(url, f"{prefix}-{n}")
            except httpx.HTTPError:
                continue  # the killed listener: no answer, no promise
            if code == 200 and status == "ok":
                with lock:
                    answered.append(f"{prefix}-{n}")

    senders = [
        threading.Thread(target=pour, args=(listener.url, f"{listener.port}-{t}"))
        for listener in (doomed, other)
        for t in range(3)
    ]
    try:
        for sender in senders:
            sender.start()
        _wait(lambda: len(answered) >= 300, 90)  # a deadline: a busy machine is slow
        doomed.process.send_signal(signal.SIGKILL)
        after_kill = len(answered)
        _wait(lambda: len(answered) >= after_kill + 50, 90)  # the other goes on answering
        stop.set()
        for sender in senders:
            sender.join()
    finally:
        stop.set()
        doomed.stop(signal.SIGKILL)
        other.stop()
    stored = {row["request_id"] for row in store_rows(DatabaseUrl(postgres_store))}
    assert len(answered) >= 300
    assert set(answered) <= stored


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_2_share_the_store_and_one_prints(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """`listen --workers 2`: two receiver processes on the one port, each with its store
    writer; every update is stored and printed once, by one process; SIGTERM stops both
    after they answered what they held."""
    store = (
        str(tmp_path / "w.sqlite3")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_store")
    )
    listener = _listener(tmp_path / "home", store, "--workers", "2", "--json")
    try:
        receivers = _receivers(listener.process.pid)
        ids = [f"w-{n}" for n in range(300)]
        answers = _send_all([(listener.url, rid) for rid in ids])
    finally:
        code, out, err = listener.stop()
    assert len(receivers) == 2  # the listener, and one more on its socket
    assert [status for _, status in answers] == ["ok"] * 300
    assert code == 0, err
    printed = [json.loads(line)["requestId"] for line in out.splitlines()]
    assert sorted(printed) == sorted(ids)
    assert "Stopped: 300 received (300 verified)." in err
    location = DatabaseUrl(store) if backend == "postgresql" else Path(store)
    assert len(store_rows(location)) == 300


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), args)
    return found


def _receivers(pid: int) -> list[int]:
    """The processes running a receiver under the listener `pid`: each has a store writer."""
    deadline = time.monotonic() + 10
    while True:
        table = _processes()
        family = {pid} | {child for child, (parent, _) in table.items() if parent == pid}
        receivers = sorted(
            {parent for parent, args in table.values() if "avasam_cli.receiver.writer" in args}
            & family
        )
        if len(receivers) >= 2 or time.monotonic() > deadline:
            return receivers
        time.sleep(0.1)


def test_the_password_is_never_shown(cli: Any, postgres_server: Any, tmp_path: Path) -> None:
    """A refused connection is exit 2 naming the server, the password masked; `config
    show` and `config path` mask it too."""
    url = postgres_server.url.replace("postgres@", "postgres:hunter2@").replace(
        "127.0.0.1:", "127.0.0.1:1"
    )  # a port nothing listens on
    result = cli("--store", url, "events", "list")
    assert result.exit_code == 2
    assert "hunter2" not in result.stderr + result.stdout
    assert "postgres:****@127.0.0.1" in result.stderr
    assert "check that the server runs" in result.stderr
    shown = cli("--store", url, "config", "path")
    assert "hunter2" not in shown.stdout and "****" in shown.stdout
    saved = cli("configure", "--store", url + "?password=hunter2")
    assert saved.exit_code == 0 and "hunter2" not in saved.stdout + saved.stderr
    assert "hunter2" not in cli("config", "show").stdout


def test_a_missing_extra_names_the_command_that_installs_it(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import avasam_cli.store.postgres as backend

    monkeypatch.setattr(backend, "psycopg", None)
    result = cli("--store", "postgresql://avasam@db.example/avasam", "events", "list")
    assert result.exit_code == 2
    assert "pip install 'avasam-cli[postgres]'" in result.stderr


def test_the_commands_work_on_a_postgresql_store(
    cli: Any, postgres_store: str, tmp_path: Path
) -> None:
    """events, deliveries, ack --pending's queue and doctor, on a PostgreSQL store."""
    listener = _listener(tmp_path / "home", postgres_store)
    try:
        assert [
            status for _, status in _send_all([(listener.url, "c-1"), (listener.url, "c-2")])
        ] == ["ok", "ok"]
    finally:
        listener.stop()
    listed = cli("--store", postgres_store, "events", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert sorted(line.count('"c-') for line in listed.stdout.splitlines()) == [1, 1]
    shown = cli("--store", postgres_store, "events", "show", "c-1")
    assert shown.exit_code == 0 and "c-1" in shown.stdout
    assert cli("--store", postgres_store, "deliveries", "list").exit_code == 0
    doctor = cli("--store", postgres_store, "doctor")
    assert "hunter2" not in doctor.stdout
    assert "event store" in (doctor.stdout + doctor.stderr).lower()


def test_events_follow_sees_rows_from_another_host(postgres_store: str, tmp_path: Path) -> None:
    """`events list --follow` on one machine shows what a listener elsewhere commits,
    woken by NOTIFY."""
    import os

    follower = subprocess.Popen(
        [sys.executable, "-m", "avasam_cli", "--store", postgres_store, "events", "list",
         "--follow", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "AVASAM_HOME": str(tmp_path / "f")},
    )  # fmt: skip
    lines: list[bytes] = []
    assert follower.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    listener = _listener(tmp_path / "home", postgres_store)
    try:
        _send_all([(listener.url, f"f-{n}") for n in range(20)], threads=4)
        _wait(lambda: sum(b'"f-' in line for line in lines) >= 20, seconds=20)
    finally:
        listener.stop()
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=20)
        reader.join(10)
    seen = [line for line in lines if b'"f-' in line]
    assert len(seen) == 20


def test_a_database_away_is_503_and_unhealthy_then_recovers(
    tmp_path: Path, postgres_server: Any
) -> None:
    """The server stops under a running listener: requests get 503 (Avasam retries) and
    /healthz says why; once it is back, the next request is stored, on a new connection."""
    store = postgres_server.fresh_schema()
    listener = _listener(tmp_path / "home", store)
    try:
        assert _post(listener.url, "up-1") == (200, "ok")
        postgres_server.stop()
        try:
            assert _post(listener.url, "down-1")[0] == 503
            health = httpx.get(f"{listener.url}/healthz", timeout=10)
            assert health.status_code == 503
            assert "the store refused the last commit" in health.json()["reason"]
        finally:
            postgres_server.start()
        assert _post(listener.url, "up-2") == (200, "ok")
        assert httpx.get(f"{listener.url}/healthz", timeout=10).status_code == 200
    finally:
        _, _, err = listener.stop()
    assert "it is open again" in err
    stored = {row["request_id"] for row in store_rows(DatabaseUrl(store))}
    assert stored == {"up-1", "up-2"}


def test_child_processes_get_the_whole_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner and the inspector are started with the store in their environment:
    the real URL, password included (masked only where it is shown)."""
    from avasam_cli.cli._children import with_store
    from avasam_cli.paths import choose_store

    url = "postgresql://avasam:hunter2@db.example/avasam"
    choose_store(DatabaseUrl(url))
    assert with_store()["AVASAM_STORE"] == url
    assert str(DatabaseUrl(url)) == "postgresql://avasam:****@db.example/avasam"


def test_workers_refuse_a_busy_port(tmp_path: Path) -> None:
    """The workers' sockets share their port with each other only: a port held by
    another listener is still an error (exit 2), not a silent share."""
    import os

    first = _listener(tmp_path / "a", str(tmp_path / "a.sqlite3"))
    try:
        second = subprocess.run(
            [sys.executable, "-m", "avasam_cli", "listen", "--port", str(first.port),
             "--workers", "2", "--no-inspect"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, **ENV, "AVASAM_HOME": str(tmp_path / "b")},
        )  # fmt: skip
    finally:
        first.stop()
    assert second.returncode == 2
    assert "already in use" in second.stderr


def test_workers_elsewhere_than_linux_are_refused(
    cli: Any, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel does not spread a shared port's connections (macOS, Windows),
    `--workers 2` is exit 2 saying what to do instead; one process still starts there."""
    import avasam_cli.net

    monkeypatch.setattr(avasam_cli.net, "SHARED_PORTS_BALANCED", False)
    result = cli("listen", "--workers", "2", "--port", "0", "--no-inspect")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "--workers 2 needs Linux" in message
    assert "one `avasam listen` per host (without --workers) behind a load balancer" in message


def test_a_waiting_reader_is_woken_by_notify(postgres_store: str) -> None:
    """`wait_for_rows` on PostgreSQL returns when another connection commits, not when
    its timeout ends: the wait is 60 s, the commit comes at once, the deadline is 20 s."""
    from tests.test_store import event

    with open_store(DatabaseUrl(postgres_store), read_only=True) as reader:
        reader.wait_for_rows(0.01)  # its LISTEN connection is open before the commit
        woken = threading.Event()

        def wait() -> None:
            reader.wait_for_rows(60)
            woken.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        with open_store(DatabaseUrl(postgres_store)) as writer:
            writer.insert([event("notified")])
        assert woken.wait(20), "the reader slept through the commit's NOTIFY"
