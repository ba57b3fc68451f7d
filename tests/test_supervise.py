"""`listen` supervises its children: real processes, real signals (#21)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from avasam_cli.supervise import CRASH_LOOP, Spawned, Supervisor
from tests.helpers import TOKEN, ListenProcess, RecordingShop, signed_body
from tests.test_rotation import wait_for
from tests.test_scale_out import _processes

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def _children_of(pid: int, table: dict[int, tuple[int, str]], marker: str) -> list[int]:
    return [child for child, (parent, args) in table.items() if parent == pid and marker in args]


def _family(pid: int) -> set[int]:
    """`pid` and every process below it, from /proc."""
    table = _processes()
    found, grew = {pid}, True
    while grew:
        below = {child for child, (parent, _) in table.items() if parent in found}
        grew = not below <= found
        found |= below
    return found - {pid}


def _post(url: str, request_id: str) -> int:
    headers = {"content-type": "application/json"}
    body = signed_body(request_id=request_id)
    answer = httpx.post(f"{url}/webhooks/stock", content=body, headers=headers, timeout=10)
    return answer.status_code


def test_a_killed_runner_is_said_restarted_and_delivers_what_waited(isolated_home: Path) -> None:
    """kill -9 of the delivery runner under `listen --forward-to`: one line says so and
    what it means, it is restarted, /healthz names it, and every update answered 200 while
    it was down reaches the shop."""
    shop = RecordingShop()
    listener = ListenProcess(isolated_home, "--forward-to", shop.url,
                             env={"AVASAM_VERIFICATION_TOKEN": TOKEN})  # fmt: skip
    try:
        assert _post(listener.url, "before") == 200
        wait_for(lambda: len(shop.received) == 1, 15, "the first forward")
        # Killed once the store says the first was delivered: killed between the shop's
        # answer and that record, the runner would rightly send it again (at least once).
        wait_for(lambda: _jobs_in(isolated_home, "delivered") == 1, 15, "the first recorded")
        runner = _children_of(listener.process.pid, _processes(), "_children runner")
        assert len(runner) == 1
        os.kill(runner[0], signal.SIGKILL)
        wait_for(lambda: b"delivery runner stopped" in listener.captured["err"], 10, "the report")
        answered = [_post(listener.url, f"while-{n}") for n in range(5)]
        assert answered == [200] * 5
        wait_for(lambda: b"delivery runner is back" in listener.captured["err"], 15, "restart")
        wait_for(lambda: len(shop.received) >= 6, 20, "what waited, delivered")
        health = httpx.get(f"{listener.url}/healthz", timeout=5).json()
        assert health["children"]["delivery runner"] == {"state": "running", "restarts": 1}
    finally:
        _, _, err = listener.stop()
        shop.close()
    assert "killed by SIGKILL" in err and "forwards and acknowledgements wait" in err
    assert "Child processes restarted while listening: 1." in err
    import json

    delivered = [json.loads(body)["requestId"] for _, body in shop.received]
    assert delivered == ["before", *(f"while-{n}" for n in range(5))]  # in order, once each


def _jobs_in(home: Path, state: str) -> int:
    """How many delivery jobs the store holds in `state` ("pending", "delivered")."""
    store = home / "data" / "events.sqlite3"
    with contextlib.closing(sqlite3.connect(store)) as conn:
        query = "SELECT COUNT(*) FROM deliveries WHERE state = ?"
        (count,) = conn.execute(query, (state,)).fetchone()
    return int(count)


def test_the_runner_and_the_inspector_yield_the_cpu_to_answering(isolated_home: Path) -> None:
    """The delivery runner and the inspector run below the request path's priority (nice
    and, on Linux, their sessions' share too); the store writer, which every answer
    waits for, does not."""
    from tests.helpers import free_port

    shop = RecordingShop()
    env = {"AVASAM_VERIFICATION_TOKEN": TOKEN}
    listener = ListenProcess(isolated_home, "--forward-to", shop.url, "--inspect-port",
                             str(free_port()), env=env)  # fmt: skip
    try:
        assert _post(listener.url, "nice-1") == 200
        wait_for(lambda: len(shop.received) == 1, 15, "the forward")
        niceness = {}
        for marker in ("_children runner", " inspect ", "receiver.writer"):
            pid = _one_child(listener, marker)
            autogroup = Path(f"/proc/{pid}/autogroup")
            group = autogroup.read_text().split()[-1] if autogroup.exists() else None
            niceness[marker] = (os.getpriority(os.PRIO_PROCESS, pid), group)
    finally:
        listener.stop()
        shop.close()
    background = (10, "10" if Path("/proc/self/autogroup").exists() else None)
    assert niceness["_children runner"] == background
    assert niceness[" inspect "] == background
    assert niceness["receiver.writer"][0] == os.getpriority(os.PRIO_PROCESS, 0)


def test_nothing_outlives_a_killed_listener(isolated_home: Path, tmp_path: Path) -> None:
    """kill -9 of `listen --workers 2 --tunnel cloudflared` (a stand-in tool that starts a
    grandchild) with the inspector and a forward target: no process of its tree is left
    within 5 s, and the port binds again."""
    from tests.helpers import free_port
    from tests.tunnel_stubs import stub_env

    shop = RecordingShop()
    env = {"AVASAM_VERIFICATION_TOKEN": TOKEN, **stub_env(tmp_path, "grandchild")}
    listener = ListenProcess(isolated_home, "--workers", "2", "--tunnel", "cloudflared",
                             "--inspect-port", str(free_port()), "--forward-to", shop.url,
                             env=env)  # fmt: skip
    try:
        wait_for(lambda: len(_family(listener.process.pid)) >= 7, 20, "every child started")
        family = _family(listener.process.pid)
        assert any("sleep" in _processes().get(pid, (0, ""))[1] for pid in family)
        listener.process.send_signal(signal.SIGKILL)
        listener.process.wait(10)
        wait_for(lambda: not (family & set(_processes())), 5, f"no survivor of {family}")
    finally:
        shop.close()
        listener.stop(signal.SIGKILL)  # reaped already, or now: its pipes are closed
    import socket

    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", listener.port))


def test_a_runner_whose_listener_was_killed_ends_within_the_shutdown_wait(
    isolated_home: Path,
) -> None:
    """kill -9 of the listener with a backlog in the outbox and a forward in flight: the
    delivery runner starts nothing more and, its forward still unanswered, ends once
    --shutdown-wait has passed; what it did not deliver stays pending for the next."""
    shop = RecordingShop()
    shop.open.clear()  # the first forward is held
    # The forward would wait 50 s for its answer: the runner must not.
    listener = ListenProcess(isolated_home, "--forward-to", shop.url, "--shutdown-wait", "2",
                             "--forward-timeout", "50",
                             env={"AVASAM_VERIFICATION_TOKEN": TOKEN})  # fmt: skip
    try:
        assert [_post(listener.url, f"backlog-{n}") for n in range(5)] == [200] * 5
        wait_for(lambda: len(shop.received) == 1, 15, "the first forward, held")
        runner = _one_child(listener, "_children runner")
        listener.process.send_signal(signal.SIGKILL)
        listener.process.wait(10)
        wait_for(lambda: runner not in _processes(), 15, "the runner's end")
        shop.open.set()
    finally:
        listener.stop(signal.SIGKILL)
        shop.close()
    assert len(shop.received) == 1
    assert _jobs_in(isolated_home, "pending") == 5


def test_a_child_that_keeps_crashing_is_left_down_and_named(tmp_path: Path) -> None:
    """A child that exits at once: each death said, restarts back off, and after the
    crash loop's count it is left down; /healthz's trouble names it."""
    now = [0.0]
    said: list[str] = []
    supervisor = Supervisor(said.append, clock=lambda: now[0])
    argv = [sys.executable, "-c", "raise SystemExit(3)"]
    child = supervisor.start("runner", lambda: Spawned(argv), "jobs wait", needed=True)
    supervisor.stop_watching()  # this test moves the clock itself
    try:
        for _ in range(CRASH_LOOP[0] * 2):
            assert child.process is not None
            deadline = time.monotonic() + 20
            while child.process.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            supervisor.check()
            if child.state == "down":
                break
            now[0] = child.restart_at or now[0]  # the back-off has passed
            supervisor.check()
        assert child.state == "down"
        assert supervisor.trouble() == "the runner is down: jobs wait"
        deaths = [line for line in said if "the runner stopped (exit code 3)" in line]
        assert len(deaths) == CRASH_LOOP[0] and "left down" in deaths[-1]
        waits = [line.rsplit("Restarting it in ", 1)[1] for line in said if "Restarting" in line]
        assert waits == ["1 s.", "2 s.", "5 s.", "10 s."]  # backing off
    finally:
        supervisor.stop()


class Load:
    """Webhooks posted one after another from a thread, each with a request id of its
    own, until stopped; what each got (its status, or None for no answer) is kept.

    The answers are read under a lock: copying a dict that another thread adds to can
    fail with "dictionary changed size during iteration" (it did, once, in CI)."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self._answers: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            request_id = f"load-{number}"
            status: int | None
            try:
                status = _post(self.url, request_id)
            except httpx.HTTPError:  # a killed receiver process's connection
                status = None
            with self._lock:
                self._answers[request_id] = status

    def answers(self) -> dict[str, int | None]:
        """What each request got so far (a copy)."""
        with self._lock:
            return dict(self._answers)

    def answered(self) -> set[str]:
        return {rid for rid, status in self.answers().items() if status == 200}

    def refused(self) -> int:
        """How many requests got anything but 200 (or no answer)."""
        return sum(1 for status in self.answers().values() if status != 200)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _one_child(listener: ListenProcess, marker: str) -> int:
    """The pid of the listener's one child whose command line holds `marker`."""
    found: list[int] = []

    def there() -> bool:
        found[:] = _children_of(listener.process.pid, _processes(), marker)
        return len(found) == 1

    wait_for(there, 15, f"one child running {marker!r}")
    return found[0]


def _health(url: str) -> tuple[int, dict[str, Any]]:
    with contextlib.suppress(httpx.HTTPError):
        answer = httpx.get(f"{url}/healthz", timeout=5)
        return answer.status_code, answer.json()
    return 0, {}


def _nothing_lost(
    load: Load, shop: RecordingShop, listener: ListenProcess, store: Any
) -> tuple[list[str], str]:
    """Once every update answered 200 reached the shop, stop the listener: each is
    stored and was printed (`--json`) once.  The request ids printed, and stderr."""
    import json

    from tests.helpers import store_rows

    answered = load.answered()
    delivered: set[str] = set()

    def all_delivered() -> bool:
        delivered.update(json.loads(body)["requestId"] for _, body in shop.received)
        return answered <= delivered

    # A slow machine delivers a long load slowly: what fails is deliveries that stop.
    stalled_after, seen, since = 30.0, -1, time.monotonic()
    try:
        while not all_delivered():
            if len(shop.received) != seen:
                seen, since = len(shop.received), time.monotonic()
            elif time.monotonic() - since > stalled_after:
                missing = sorted(answered - delivered)
                _, _, said = listener.stop()
                raise AssertionError(
                    f"deliveries stopped for {stalled_after:g} s with {len(missing)} answered "
                    f"updates not at the shop ({missing[:5]}); the listener said:\n"
                    f"{said[-4000:]}"
                )
            time.sleep(0.1)
    finally:
        shop.close()
    code, out, err = listener.stop()
    assert code == 0, err
    assert answered <= {row["request_id"] for row in store_rows(store)}
    printed = [json.loads(line)["requestId"] for line in out.splitlines()]
    assert len(printed) == len(set(printed)), "a row was printed twice"
    assert answered <= set(printed), sorted(answered - set(printed))[:5]
    return printed, err


def _unhealthy(url: str, seen: list[dict[str, Any]]) -> bool:
    """/healthz answers 503; `seen` keeps that answer."""
    status, body = _health(url)
    seen[:] = [body]
    return status == 503


def test_a_forward_cut_off_mid_body_is_no_request_at_the_shop() -> None:
    """A runner killed while it sends leaves the shop half a request: the stand-in shop
    records and answers only whole ones, as a real one would (the load test's check that
    every update reached the shop reads each body)."""
    shop = RecordingShop()
    try:
        with socket.create_connection(("127.0.0.1", shop.port), timeout=10) as cut:
            cut.sendall(
                b"POST /avasam HTTP/1.1\r\nHost: shop\r\nContent-Length: 50\r\n\r\n" + b"{" * 10
            )
            cut.shutdown(socket.SHUT_WR)  # the sender is gone
            assert cut.recv(1024) == b""  # closed once handled, with no answer
        assert shop.received == []
        whole = httpx.post(shop.url, content=b'{"requestId": "whole-1"}', timeout=10)
        assert whole.status_code == 200
        assert [body for _, body in shop.received] == [b'{"requestId": "whole-1"}']
    finally:
        shop.close()


def test_each_child_killed_under_load_is_said_restarted_and_nothing_is_lost(
    isolated_home: Path, tmp_path: Path
) -> None:
    """Under a steady load on `listen --json --workers 2 --tunnel --forward-to` with the
    inspector, kill -9 of each child in turn: each death is one line saying what it
    means, each child is back; /healthz answers 503 naming the writer while it is
    down, and 200 again; every update answered 200 is stored, printed once and reaches
    the shop."""

    from tests.helpers import free_port
    from tests.tunnel_stubs import stub_env

    shop = RecordingShop()
    env = {"AVASAM_VERIFICATION_TOKEN": TOKEN, **stub_env(tmp_path)}
    listener = ListenProcess(isolated_home, "--json", "--workers", "2", "--tunnel",
                             "cloudflared", "--inspect-port", str(free_port()),
                             "--forward-to", shop.url, env=env)  # fmt: skip

    def said(text: str) -> bool:  # however the console wrapped it
        return text in " ".join(listener.captured["err"].decode(errors="replace").split())

    load = Load(listener.url)
    seen: list[dict[str, Any]] = []
    try:
        wait_for(lambda: len(load.answered()) >= 20, 20, "the load answered")
        # Whichever receiver process answers /healthz names every child (the second
        # reads what the first publishes, within a moment of its start).
        names = {"store writer", "delivery runner", "printer", "inspector",
                 "receiver process 2", "cloudflared tunnel"}  # fmt: skip

        def all_named() -> bool:
            answers = [_health(listener.url)[1] for _ in range(10)]
            return all(names <= set(answer.get("children", {})) for answer in answers)

        wait_for(all_named, 10, "every child named by each process")
        for name, marker in [
            ("store writer", "avasam_cli.receiver.writer"),
            ("delivery runner", "_children runner"),
            ("printer", "_children printer"),
            ("inspector", " inspect "),
            ("receiver process 2", "_children worker"),
            ("cloudflared tunnel", "avasam_cli.supervise"),
        ]:
            os.kill(_one_child(listener, marker), signal.SIGKILL)
            death = f"the {name} stopped (killed by SIGKILL)"
            wait_for(lambda: said(death), 10, f"the {name}'s death said")  # noqa: B023
            if name == "store writer":  # either process may answer: the first names it
                wait_for(lambda: _unhealthy(listener.url, seen), 10, "/healthz 503")
                assert "the store writer stopped" in seen[0]["reason"], seen
            back = f"The {name} is back (restart 1)."
            wait_for(lambda: said(back), 20, f"the {name} back")  # noqa: B023
            if name == "cloudflared tunnel":  # its guard was killed: the tool went with it
                first = int((Path(env["STUB_STATE"]) / "start-1").read_text())
                wait_for(lambda: first not in _processes(), 5, "the first tool gone")  # noqa: B023
            before = len(load.answered())
            wait_for(lambda: len(load.answered()) > before + 5, 20, "answering")  # noqa: B023
        wait_for(lambda: _health(listener.url)[0] == 200, 20, "/healthz 200 again")
    finally:
        load.stop()
    printed, _ = _nothing_lost(load, shop, listener, isolated_home / "data" / "events.sqlite3")
    assert said(f"Stopped: {len(printed)} received")  # the printer's restart counted on
    for meaning in [
        "requests are answered 503 (Avasam retries them)",
        "forwards and acknowledgements wait in the outbox",
        "requests are stored and answered, but not printed",
        "the inspector page does not answer",
        "its connections go to the other receiver processes",
        "Avasam cannot reach the listener at its public URL",
    ]:
        assert said(f"{meaning} until it is back."), meaning
    assert said("Child processes restarted while listening: 6.")


def test_postgresql_restarted_under_workers_and_forwarding(
    tmp_path: Path, postgres_server: Any
) -> None:
    """A real PostgreSQL stopped and started again under `listen --json --workers 2
    --forward-to` and load: /healthz answers 503 saying why meanwhile, and 200 after;
    deliveries resume and the printer goes on: every update answered 200 is stored,
    printed once and reaches the shop, and nothing died with a traceback."""

    from avasam_cli.paths import DatabaseUrl

    shop = RecordingShop()
    store = postgres_server.fresh_schema()
    env = {"AVASAM_VERIFICATION_TOKEN": TOKEN, "AVASAM_STORE": store}
    listener = ListenProcess(
        tmp_path / "home", "--json", "--workers", "2", "--forward-to", shop.url, env=env
    )
    load = Load(listener.url)
    try:
        wait_for(lambda: len(load.answered()) >= 20, 20, "the load answered")
        postgres_server.stop()
        try:
            wait_for(lambda: _health(listener.url)[0] == 503, 15, "/healthz 503")
            assert "store" in str(_health(listener.url)[1].get("reason", "store"))
            refused = load.refused()
            wait_for(lambda: load.refused() >= refused + 10, 30, "requests refused while away")
        finally:
            postgres_server.start()
        before = len(load.answered())
        wait_for(lambda: len(load.answered()) > before + 20, 30, "answering again")
        load.stop()  # what it sent is what must arrive
        wait_for(lambda: _health(listener.url)[0] == 200, 30, "/healthz 200 again")
    finally:
        load.stop()
    _, err = _nothing_lost(load, shop, listener, DatabaseUrl(store))
    assert "Traceback" not in err
