"""`--log-format json`: every line `listen` and `deliveries run` write to stderr is one
JSON object with ts, level, event and the event's fields (#26)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import JSON_HEADERS, TOKEN, ListenProcess, free_port, signed_body
from tests.test_rotation import wait_for


def _records(stderr: str) -> list[dict[str, Any]]:
    """Every line as a record; a line that is not one fails the test, naming it."""
    records = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line on stderr: {line!r}") from None
        assert isinstance(record, dict) and {"ts", "level", "event"} <= record.keys(), line
        assert record["level"] in ("info", "warning", "error"), line
        records.append(record)
    return records


def test_listen_and_deliveries_run_write_only_json_records(isolated_home: Path) -> None:
    """The profile's log_format = "json": the banner, each request, a forward that fails,
    the stop: all records, with their fields; nothing on stdout.  `deliveries run
    --log-format json` then says its attempts the same way."""
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[profiles.default]\nlog_format = "json"\n')
    shop = f"http://127.0.0.1:{free_port()}/avasam"  # nobody there: the forward fails
    listener = ListenProcess(isolated_home, "--forward-to", shop,
                             env={"AVASAM_VERIFICATION_TOKEN": TOKEN})  # fmt: skip
    try:
        url = f"{listener.url}/webhooks/stock"
        body = signed_body(request_id="json-1")
        assert httpx.post(url, content=body, headers=JSON_HEADERS).status_code == 200
        assert httpx.post(url, content=b"{}", headers=JSON_HEADERS).status_code == 400
        wait_for(lambda: b'"event": "delivery"' in listener.captured["err"], 15, "the attempt")
    finally:
        code, out, err = listener.stop()
    assert code == 0 and out == ""
    records = _records(err)
    # Said before anything else, and wrapped all the same (the file was made 0644 here).
    assert records[0]["level"] == "warning" and "readable by other" in records[0]["message"]
    events = [record["event"] for record in records]
    assert events[1] == "listening" and "ready" in events
    (banner,) = (r for r in records if r["event"] == "listening")
    assert banner["endpoints"]["stock"] == url
    webhooks = [r for r in records if r["event"] == "webhook"]
    assert [(r["request_id"], r["kind"], r["verdict"], r["reason"], r["level"]) for r in webhooks
            ] == [("json-1", "stock", "verified", None, "info"),
                  (None, "stock", "rejected", "invalid_payload", "warning")]  # fmt: skip
    attempt = next(r for r in records if r["event"] == "delivery")
    assert (attempt["request_id"], attempt["target"], attempt["attempt"], attempt["state"]) == (
        "json-1", shop, 1, "failed")  # fmt: skip
    assert any(r["message"].startswith("Stopped: 2 received") for r in records)

    env = {**os.environ, "AVASAM_HOME": str(isolated_home), "AVASAM_VERIFICATION_TOKEN": TOKEN}
    ran = subprocess.run(
        [sys.executable, "-m", "avasam_cli", "deliveries", "run", "--log-format", "json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0 and ran.stdout == ""
    records = _records(ran.stderr)
    tried = [r for r in records if r["event"] == "delivery"]
    assert [(r["request_id"], r["attempt"], r["state"], r["level"]) for r in tried] == [
        ("json-1", 2, "failed", "warning")
    ]
    assert records[-1]["message"].startswith("Delivered 0; 1 failed and will be retried")


def test_every_other_line_is_wrapped_children_and_tracebacks_included() -> None:
    """What no caller made a record (a plain print, a child process's output, a
    traceback) still reaches stderr as records, in order."""
    script = (
        "import subprocess, sys\n"
        "from avasam_cli import logs\n"
        "logs.start('json')\n"
        "print('Warning: plain words', file=sys.stderr)\n"
        "print(logs.said('made here', 'custom', answer=42), file=sys.stderr)\n"
        "child = 'import sys; sys.stderr.write(\"from a child\\\\n\")'\n"
        "subprocess.run([sys.executable, '-c', child])\n"
        "raise ValueError('boom')\n"
    )  # fmt: skip
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert ran.returncode == 1
    records = _records(ran.stderr)
    assert records[0]["level"] == "warning" and records[0]["message"] == "plain words"
    assert (records[1]["event"], records[1]["answer"]) == ("custom", 42)
    assert records[2]["message"] == "from a child"
    assert records[3]["message"].startswith("Traceback")
    assert records[-1]["message"] == "ValueError: boom"
