"""`avasam events` over a real store filled by a real listener, and `avasam doctor`."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import Cli
from tests.helpers import JSON_HEADERS, TOKEN, ListenProcess, signed_body
from tests.standin import running_avasam


@pytest.fixture
def filled(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ListenProcess]:
    """A listener that has received a verified stock update, a duplicate and a refusal."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    listener = ListenProcess(isolated_home, env={"AVASAM_VERIFICATION_TOKEN": TOKEN})
    body = signed_body(count=2, request_id="ev-1")
    for raw in (body, body, b"{"):
        httpx.post(
            f"{listener.url}/webhooks/stock",
            content=raw,
            headers={**JSON_HEADERS, "X-Trace": "t-1"},
        )
    httpx.post(
        f"{listener.url}/webhooks/price",
        content=signed_body("price", request_id="ev-2"),
        headers=JSON_HEADERS,
    )
    listener.body = body  # type: ignore[attr-defined]
    yield listener
    listener.stop()


def test_events_list(cli: Cli, filled: ListenProcess) -> None:
    """Newest first, with filters; --json is one object per line."""
    result = cli("events", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["id", "received", "(UTC)", "kind", "status"]
    assert "ev-2" in lines[1] and "pending" in lines[4]
    rejected = cli("events", "list", "--status", "rejected", "--json")
    records = [json.loads(line) for line in rejected.stdout.splitlines()]
    assert [r["reason"] for r in records] == ["malformed_json"]
    only_price = cli("events", "list", "--kind", "price", "--json").stdout.splitlines()
    assert len(only_price) == 1
    assert cli("events", "list", "--status", "weird").exit_code == 2


def test_events_show(cli: Cli, filled: ListenProcess) -> None:
    """By request id or row id; --raw prints the stored body byte for byte."""
    shown = cli("events", "show", "ev-1")
    assert shown.exit_code == 0, shown.output
    assert "stock verified" in shown.stdout and "x-trace: t-1" in shown.stdout
    assert "received again: 1 time, answered as duplicates" in shown.stdout  # the retry
    assert "from 127.0.0.1:" in shown.stdout.split("received again")[1]
    raw = cli("events", "show", "ev-1", "--raw")
    assert raw.stdout_bytes == filled.body  # type: ignore[attr-defined]
    assert "malformed_json" in cli("events", "show", "3").stdout
    missing = cli("events", "show", "no-such-thing")
    assert missing.exit_code == 2 and "avasam events list" in missing.stderr


def test_events_replay(cli: Cli, filled: ListenProcess) -> None:
    """Replaying to the listener is answered as a duplicate; to another server, same bytes."""
    result = cli("events", "replay", "ev-1", "--to", f"{filled.url}/webhooks/stock")
    assert result.exit_code == 0, result.output
    assert '"status":"duplicate"' in result.stdout
    received: list[tuple[bytes, str | None]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(
                (self.rfile.read(int(self.headers["content-length"])), self.headers.get("x-trace"))
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/mine"
        assert cli("events", "replay", "ev-1", "--to", url).exit_code == 0
    finally:
        server.shutdown()
        server.server_close()
    assert received == [(filled.body, "t-1")]  # type: ignore[attr-defined]


def configure_all(cli: Cli, base_url: str, secret: str = "sk-test-0001") -> None:
    assert (
        cli(
            "configure",
            "--consumer-key",
            "ck-test-0001",
            "--secret-key",
            secret,
            "--verification-token",
            TOKEN,
            "--base-url",
            base_url,
        ).exit_code
        == 0
    )


def test_doctor_all_pass(cli: Cli) -> None:
    """Complete configuration, reachable credentials, the token's form, writable store, free
    port: exit 0 (six checks)."""
    with running_avasam() as avasam:
        configure_all(cli, avasam.url)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        cli("configure", "--listen-port", str(free))
        result = cli("doctor")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("PASS") == 6
    assert "credentials accepted: accepted by" in result.stdout
    assert "API accepts the access token: Authorization: <token> accepted" in result.stdout


def test_doctor_reports_each_problem(cli: Cli) -> None:
    """Missing keys, a short token, refused credentials and a busy port each FAIL, exit 1."""
    cli("configure", "--verification-token", "short")
    offline = cli("doctor", "--offline")
    assert offline.exit_code == 1
    assert "FAIL  configuration complete" in offline.stdout
    assert "FAIL  verification token at least 32 bytes" in offline.stdout
    assert "skip  credentials accepted" in offline.stdout
    with running_avasam() as avasam, socket.socket() as busy:
        configure_all(cli, avasam.url, secret="sk-wrong")
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cli("configure", "--listen-port", str(busy.getsockname()[1]))
        online = cli("doctor")
    assert online.exit_code == 1
    assert "FAIL  credentials accepted" in online.stdout and "API keys" in online.stdout
    assert "FAIL  listener port free" in online.stdout
    assert "PASS  event store writable" in online.stdout
    assert "sk-wrong" not in online.output


@pytest.mark.parametrize("depth", [300, 1000, 5000])
def test_deep_bodies_in_verify_and_events_show(cli: Cli, tmp_path: Path, depth: int) -> None:
    """verify refuses a deeply nested body as malformed_json; events show prints it raw."""
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store
    from avasam_cli.store.events import Event

    raw = ('{"a":' * depth + '"\\n"' + "}" * depth).encode()
    body = tmp_path / "deep.json"
    body.write_bytes(raw)
    verdict = cli("verify", str(body), "--verification-token", TOKEN)
    assert verdict.exit_code == 1
    assert "malformed_json" in verdict.stdout or "invalid_payload" in verdict.stdout
    with open_store(locations().store_file) as store:
        store.insert([Event("2026-11-28T10:00:00.000+00:00", "stock", "rejected", 400, "[]", raw)])
    shown = cli("events", "show", "1")
    assert shown.exit_code == 0, shown.output
    assert '"a"' in shown.stdout and shown.stdout.rstrip().endswith("}")


def test_events_list_filter_that_matches_nothing(cli: Cli) -> None:
    """A filter matching nothing says so, with the number of events stored."""
    from avasam_cli.paths import locations
    from tests.helpers import store_event

    for index in range(3):
        store_event(locations().store_file, f"v-{index}")
    result = cli("events", "list", "--status", "rejected", "--kind", "price")
    assert result.exit_code == 0
    assert "No rejected price events among 3 stored." in result.stderr


def test_text_from_requests_cannot_drive_the_terminal(cli: Cli) -> None:
    """Control characters in stored headers and bodies are shown inert (\\x1b), except with
    events show --raw, which stays byte-exact."""
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store
    from avasam_cli.store.events import Event

    body = b'{"note": "\x1b]0;pwned\x07", "x": "\x1b[2J"}'
    headers = json.dumps([["user-agent", "evil\x1b[31m"]])
    with open_store(locations().store_file) as store:
        store.insert(
            [Event("2026-11-28T10:00:00.000+00:00", "stock", "rejected", 400, headers, body)]
        )
    shown = cli("events", "show", "1")
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "evil\\x1b[31m" in shown.stdout
    raw = cli("events", "show", "1", "--raw")
    assert raw.stdout_bytes == body


def test_human_printer_makes_request_text_inert() -> None:
    """The listener's human output shows escapes from a request as text."""
    import io

    from rich.console import Console

    from avasam_cli.output import HumanEventPrinter
    from avasam_cli.store.events import Event

    out = io.StringIO()
    console = Console(file=out, width=200, no_color=True, highlight=False)
    printer = HumanEventPrinter(console, console)
    refused = Event(
        "2026-11-28T10:00:00.000+00:00",
        "stock",
        "rejected",
        415,
        "[]",
        b"",
        reason="unsupported_media_type",
        detail="Content-Type must be json (got \x1b[2J)",
    )
    verified = Event(
        "2026-11-28T10:00:01.000+00:00",
        "stock",
        "verified",
        200,
        "[]",
        b"",
        id=2,
        request_id="r-1",
        item_count=1,
        data_json=json.dumps(
            [{"sku": "A", "quantity": 1, "updatedOn": "2026-11-28T10:00:00Z", "\x1b[5m": "v"}]
        ).encode(),
    )
    printer([refused, verified])
    assert "\x1b" not in out.getvalue()
    assert "\\x1b[2J" in out.getvalue() and "\\x1b[5m" in out.getvalue()


@contextlib.contextmanager
def _without_write_access(store_home: Path) -> Iterator[None]:
    """The store's folder and file made unwritable for this process: by their mode bits,
    or, for root (who writes through any mode), by the file system's immutable flag.
    The interpreter stays this one, so it works from a clone in a private (0700) folder,
    which another user could not enter."""
    import os
    import shutil
    import subprocess

    data, store = store_home / "data", store_home / "data" / "events.sqlite3"
    if os.geteuid() != 0:
        for path in (store, data, store_home):
            path.chmod(0o444 if path.is_file() else 0o555)
        try:
            yield
        finally:
            for path in (store_home, data, store):
                path.chmod(0o644 if path.is_file() else 0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(store), str(data)]).returncode:
        pytest.skip("running as root, and chattr +i (e2fsprogs) is not available here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(store), str(data)], check=True)


def test_events_read_a_store_they_cannot_write(tmp_path: Path) -> None:
    """`events list` and `events show` open the store read-only: no schema, no chmod."""
    import os
    import subprocess
    import sys

    from avasam_cli.store.base import open_store
    from tests.helpers import store_event

    home = tmp_path / "home"
    store_event(home / "data" / "events.sqlite3", "ro-1")
    open_store(home / "data" / "events.sqlite3").close()
    before = {p.name: p.stat().st_mtime_ns for p in (home / "data").iterdir()}
    env = {"PATH": os.environ["PATH"], "AVASAM_HOME": str(home), "COLUMNS": "200"}
    with _without_write_access(home):
        for args in (["events", "list"], ["events", "show", "ro-1"]):
            command = [sys.executable, "-m", "avasam_cli", *args]
            run = subprocess.run(command, env=env, capture_output=True, text=True)
            assert run.returncode == 0, run.stderr
            assert "ro-1" in run.stdout
        after = {p.name: p.stat().st_mtime_ns for p in (home / "data").iterdir()}
    assert after == before


def test_events_list_does_not_create_a_missing_store(cli: Cli, isolated_home: Path) -> None:
    """Reading an empty history leaves no store behind."""
    result = cli("events", "list")
    assert result.exit_code == 0 and "No events stored yet" in result.stderr
    assert not (isolated_home / "data" / "events.sqlite3").exists()


def test_human_printer_writes_each_event_block_in_one_write() -> None:
    """An event's block (header, detail, items table) leaves in one write, so a follow-up
    line from the listener's other process ("Acknowledged ...") lands between blocks."""
    import io

    from rich.console import Console

    from avasam_cli.output import HumanEventPrinter
    from avasam_cli.store.events import Event

    class Writes(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def write(self, text: str) -> int:
            self.calls.append(text)
            return super().write(text)

    out = Writes()
    console = Console(file=out, width=80, no_color=True, highlight=False)
    items = [
        {"sku": f"SKU-{n}", "quantity": n, "updatedOn": "2026-11-28T10:00:00Z"} for n in range(5)
    ]
    events = [
        Event("2026-11-28T10:00:01.000+00:00", "stock", "verified", 200, "[]", b"", id=n,
              request_id=f"r-{n}", item_count=5, data_json=json.dumps(items).encode())
        for n in (1, 2)
    ]  # fmt: skip
    HumanEventPrinter(console, console)(events)
    written = [call for call in out.calls if call]
    assert len(written) == 2, written
    for call, event in zip(written, events, strict=True):
        assert event.request_id is not None and event.request_id in call
        assert call.count("SKU-") == 5 and call.endswith("\n")


def test_events_list_fits_80_columns(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns the request ids are cut (with …) to fit and the note says so; piped
    output, and --json, keep them whole."""
    import uuid

    from avasam_cli.paths import locations
    from tests.helpers import store_event

    ids = [str(uuid.UUID(int=n + 10**30)) for n in range(3)]
    for request_id in ids:
        store_event(locations().store_file, request_id)
    monkeypatch.setenv("COLUMNS", "80")
    narrow = cli("events", "list")
    assert narrow.exit_code == 0
    lines = narrow.stdout.splitlines()
    assert len(lines) == 4 and all(len(line) <= 80 for line in lines), lines
    assert "…" in lines[1] and ids[2] not in narrow.stdout
    assert "--json shows them whole" in narrow.stderr
    monkeypatch.setenv("COLUMNS", "200")
    wide = cli("events", "list")
    assert all(request_id in wide.stdout for request_id in ids) and not wide.stderr


def test_events_replay_explains_and_resigns(cli: Cli, filled: ListenProcess) -> None:
    """A plain replay to the listener says in one line why it was answered duplicate;
    --resign sends the same items under a new request id, verified as a new update."""
    from tests.helpers import store_rows

    plain = cli("events", "replay", "ev-1", "--port", str(filled.port))
    assert plain.exit_code == 0, plain.output
    assert "Answered duplicate" in plain.stderr and "--resign" in plain.stderr
    resigned = cli("events", "replay", "ev-1", "--port", str(filled.port), "--resign")
    assert resigned.exit_code == 0, resigned.output
    assert '"status":"ok"' in resigned.stdout
    assert "Re-signed the items of event 1 as a new update" in " ".join(resigned.stderr.split())
    new_id = json.loads(resigned.stdout.splitlines()[1])["requestId"]
    assert new_id != "ev-1"
    store = filled.home / "data" / "events.sqlite3"
    deadline = time.monotonic() + 30  # the listener commits in batches
    while not (rows := store_rows(store, f"request_id = '{new_id}'")):
        assert time.monotonic() < deadline, f"{new_id} was not stored"
        time.sleep(0.1)
    original = store_rows(store, "request_id = 'ev-1' AND status = 'verified'")[0]
    assert rows[0]["status"] == "verified"
    assert json.loads(rows[0]["body"])["data"] == json.loads(original["body"])["data"]
    refused = cli("events", "replay", "3", "--port", str(filled.port), "--resign")
    assert refused.exit_code == 2 and "no list of items to re-sign" in refused.stderr


def test_events_list_follow_tails_a_store_shared_by_two_listeners(
    cli: Cli, isolated_home: Path
) -> None:
    """`events list --follow --kind stock --json` prints the stored stock event, then the
    new ones from both listeners sharing the store as they are committed, and nothing of
    the other kind; Ctrl-C (SIGINT) stops it with 130."""
    import os
    import select
    import signal
    import subprocess
    import sys

    env = {"AVASAM_VERIFICATION_TOKEN": TOKEN}
    first = ListenProcess(isolated_home, env=env)
    second = ListenProcess(isolated_home, env=env)
    follower = None
    try:
        httpx.post(f"{first.url}/webhooks/stock", content=signed_body(request_id="old-1"),
                   headers=JSON_HEADERS)  # fmt: skip
        follower = subprocess.Popen(
            [sys.executable, "-m", "avasam_cli", "events", "list", "--follow", "--kind",
             "stock", "--json", "--limit", "5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "AVASAM_HOME": str(isolated_home)},
        )  # fmt: skip
        assert follower.stdout is not None
        seen: list[str] = []

        def read_until(count: int) -> None:
            buffered = b""
            deadline = time.monotonic() + 20
            while len(seen) < count and time.monotonic() < deadline:
                if select.select([follower.stdout], [], [], 0.5)[0]:
                    buffered += os.read(follower.stdout.fileno(), 65536)
                    *lines, buffered_rest = buffered.split(b"\n")
                    seen.extend(json.loads(line)["requestId"] for line in lines)
                    buffered = buffered_rest

        read_until(1)
        assert seen == ["old-1"]
        for listener, request_id in ((second, "new-1"), (first, "new-2"), (second, "new-3")):
            httpx.post(f"{listener.url}/webhooks/stock", content=signed_body(request_id=request_id),
                       headers=JSON_HEADERS)  # fmt: skip
            httpx.post(f"{listener.url}/webhooks/price",
                       content=signed_body("price", request_id=f"p-{request_id}"),
                       headers=JSON_HEADERS)  # fmt: skip
        read_until(4)
        assert seen == ["old-1", "new-1", "new-2", "new-3"]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 130
    finally:
        if follower is not None:
            follower.kill()
            follower.communicate()
        first.stop()
        second.stop()
