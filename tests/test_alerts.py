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
