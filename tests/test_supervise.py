"""`listen` supervises its children: real processes, real signals (#21)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

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
    """kill -9 of `deliveries run --watch` under `listen --forward-to`: one line says so and
    what it means, it is restarted, /healthz names it, and every update answered 200 while
    it was down reaches the shop."""
    shop = RecordingShop()
    listener = ListenProcess(isolated_home, "--forward-to", shop.url,
                             env={"AVASAM_VERIFICATION_TOKEN": TOKEN})  # fmt: skip
    try:
        assert _post(listener.url, "before") == 200
        wait_for(lambda: len(shop.received) == 1, 15, "the first forward")
        runner = _children_of(listener.process.pid, _processes(), "deliveries run")
        assert len(runner) == 1
        os.kill(runner[0], signal.SIGKILL)
        wait_for(lambda: b"delivery runner stopped" in listener.captured["err"], 10, "the report")
        answered = [_post(listener.url, f"while-{n}") for n in range(5)]
        assert answered == [200] * 5
        wait_for(lambda: b"delivery runner is back" in listener.captured["err"], 15, "restart")
        wait_for(lambda: len(shop.received) == 6, 20, "what waited, delivered")
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
