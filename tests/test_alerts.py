"""Alerts when a person is needed: sent to a real local HTTP server and to a command,
one per kind of event per 10 minutes, never fatal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from avasam_cli.alerts import QUIET, AlertConfig, Alerts
from tests.helpers import TOKEN, ListenProcess, RecordingShop, signed_body
from tests.test_rotation import wait_for


def _command(log: Path) -> str:
    """A command that appends the alert it is given on stdin to `log`, one per line."""
    script = f"import sys; open({str(log)!r}, 'a').write(sys.stdin.read() + '\\n')"
    return f"{sys.executable} -c {json.dumps(script)}"


def test_one_alert_per_kind_per_quiet_period(tmp_path: Path) -> None:
    """Three of a kind within the quiet period: one alert; after it, the next says how
    many were held back.  Another kind is not held back by the first."""
    inbox, log = RecordingShop(), tmp_path / "alerts.log"
    now, said = [0.0], []
    alerts = Alerts(AlertConfig(inbox.url, _command(log)), said.append, clock=lambda: now[0])
    try:
        assert alerts.send("delivery_dead", "gave up on delivery 1", delivery=1)
        assert not alerts.send("delivery_dead", "gave up on delivery 2", delivery=2)
        assert not alerts.send("delivery_dead", "gave up on delivery 3", delivery=3)
        assert alerts.send("child_down", "the printer is left down", child="printer")
        now[0] += QUIET + 1
        assert alerts.send("delivery_dead", "gave up on delivery 4", delivery=4)
        alerts.wait()
    finally:
        inbox.close()
    # Each alert goes on a thread of its own: in whatever order they arrive.
    posted = sorted((json.loads(body) for _, body in inbox.received), key=lambda a: a["text"])
    ran = sorted((json.loads(line) for line in log.read_text().splitlines()),
                 key=lambda a: a["text"])  # fmt: skip
    assert [(a["event"], a.get("delivery"), a["held_back"]) for a in posted] == [
        ("delivery_dead", 1, 0), ("delivery_dead", 4, 2), ("child_down", None, 0)
    ]  # fmt: skip
    assert ran == posted  # the command got the same JSON
    held = "gave up on delivery 4 (2 more like it held back in the last 10 min)"
    assert held in posted[1]["text"] and said == []


def test_an_alert_that_cannot_go_is_said_not_fatal(tmp_path: Path) -> None:
    said: list[str] = []
    alerts = Alerts(AlertConfig("http://127.0.0.1:9/nobody", "/no/such/command"), said.append)
    assert alerts.send("delivery_dead", "gave up")
    alerts.wait()
    assert any("the alert to http://127.0.0.1:9/nobody failed" in line for line in said)
    assert any("the alert command failed" in line for line in said)


def test_a_dead_delivery_under_listen_alerts_once(isolated_home: Path, tmp_path: Path) -> None:
    """`listen --forward-to SHOP --alert-url URL --alert-command CMD`, the shop refusing
    three updates for good (400): three dead jobs, one alert at the URL, one run of the
    command, naming the job."""
    import httpx

    shop, inbox, log = RecordingShop(), RecordingShop(), tmp_path / "alerts.log"
    shop.codes = [400, 400, 400]
    listener = ListenProcess(isolated_home, "--forward-to", shop.url, "--alert-url", inbox.url,
                             "--alert-command", _command(log),
                             env={"AVASAM_VERIFICATION_TOKEN": TOKEN})  # fmt: skip
    try:
        for n in range(3):
            body = signed_body(request_id=f"dead-{n}")
            headers = {"content-type": "application/json"}
            answer = httpx.post(f"{listener.url}/webhooks/stock", content=body, headers=headers)
            assert answer.status_code == 200
        wait_for(lambda: b"dead-2" in listener.captured["err"] and inbox.received, 20,
                 "three dead jobs and the alert")  # fmt: skip
    finally:
        _, _, err = listener.stop()
        shop.close()
        inbox.close()
    (alert,) = [json.loads(body) for _, body in inbox.received]
    assert alert["event"] == "delivery_dead" and alert["request_id"] == "dead-0"
    assert alert["target"] == shop.url and alert["outcome"].startswith("400")
    assert [json.loads(line) for line in log.read_text().splitlines()] == [alert]
    assert err.count("gave up on delivery") == 3


class _Recorded:
    """Stands in for `Alerts`: what was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []

    def send(self, event: str, text: str, **fields: object) -> bool:
        self.sent.append((event, {"text": text, **fields}))
        return True


def test_refused_api_keys_alert(tmp_path: Path) -> None:
    """An acknowledgement refused because Avasam refused the keys: `token_refused`, and
    the job (a 401 will not change) goes dead: `delivery_dead`."""
    from avasam_cli.errors import CredentialsRefused
    from avasam_cli.store.base import open_store
    from avasam_cli.store.jobs import Plan
    from tests.test_outbox import Clock, drain, runner, store_updates

    def refused(_: str) -> str:
        raise CredentialsRefused("the consumer key or secret key was refused", 401)

    alerts, clock = _Recorded(), Clock()
    with open_store(tmp_path / "s.sqlite3") as store:
        store_updates(store, 1, Plan(acknowledge=True))
        drain(runner(store, clock, [], acknowledge=refused, alerts=alerts), clock, rounds=1)
    assert [event for event, _ in alerts.sent] == ["token_refused", "delivery_dead"]
    assert alerts.sent[0][1]["request_id"] == "r-0"


def test_a_child_left_down_alerts(tmp_path: Path) -> None:
    """The supervisor's crash loop ends with the child left down: `child_down`, once."""
    from avasam_cli.supervise import CRASH_LOOP, Spawned, Supervisor
    from tests.test_rotation import wait_for

    now, downs = [0.0], []
    supervisor = Supervisor(lambda _: None, clock=lambda: now[0],
                            on_down=lambda name, said: downs.append((name, said)))  # fmt: skip
    argv = [sys.executable, "-c", "raise SystemExit(3)"]
    child = supervisor.start("runner", lambda: Spawned(argv), "jobs wait", needed=True)
    supervisor.stop_watching()
    try:
        for _ in range(CRASH_LOOP[0] * 2):
            assert child.process is not None
            wait_for(lambda: child.process.poll() is not None, 20, "the child's exit")  # type: ignore[union-attr]
            supervisor.check()
            if child.state == "down":
                break
            now[0] = child.restart_at or now[0]
            supervisor.check()
    finally:
        supervisor.stop()
    assert [name for name, _ in downs] == ["runner"]
    assert "left down, jobs wait" in downs[0][1]


def test_a_store_refusing_for_30_s_alerts_once() -> None:
    """Requests refused (a database away) for ALERT_AFTER seconds: `store_refusing`,
    once, until the store is well again."""
    from avasam_cli.receiver import writer

    now = [1000.0]
    alerts = _Recorded()
    store = writer.StoreWriter(Path("unused.sqlite3"), alerts=alerts)  # type: ignore[arg-type]
    store._clock = lambda: now[0]
    store._failure = "the store refused the last commit: connection refused"
    for _ in range(4):  # 0 s, then past the limit three times
        store._alert_if_refusing()
        now[0] += writer.ALERT_AFTER / 2 + 1
    assert [event for event, _ in alerts.sent] == ["store_refusing"]
    store._failure = None
    store._alert_if_refusing()  # well again: the next episode alerts again
    store._failure = "down again"
    for _ in range(3):
        store._alert_if_refusing()
        now[0] += writer.ALERT_AFTER
    assert [event for event, _ in alerts.sent] == ["store_refusing", "store_refusing"]
