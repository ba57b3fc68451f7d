"""End to end: `avasam listen` as a real process on a free port, and uvicorn in a thread."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from avasam_cli.config import ConfigFile
from avasam_cli.receiver.app import ReceiverSettings, create_app
from avasam_cli.store.base import open_store
from tests.conftest import Cli
from tests.helpers import (
    JSON_HEADERS,
    TOKEN,
    ListenProcess,
    free_port,
    serve_in_thread,
    signed_body,
)
from tests.helpers import store_rows as read_store

ENV = {"AVASAM_VERIFICATION_TOKEN": TOKEN}


def store_rows(home: Path) -> list[dict[str, object]]:
    return read_store(home / "data" / "events.sqlite3")


def post(url: str, body: bytes, client: httpx.Client | None = None) -> httpx.Response:
    sender = client or httpx
    return sender.post(url, content=body, headers=JSON_HEADERS, timeout=30)


def test_listen_verifies_stores_and_prints(isolated_home: Path) -> None:
    """Banner with both endpoints; each request printed; SIGTERM stops cleanly with exit 0."""
    listener = ListenProcess(isolated_home, env=ENV)
    ok = post(f"{listener.url}/webhooks/stock", signed_body(count=25, request_id="e2e-1"))
    dup = post(f"{listener.url}/webhooks/stock", signed_body(request_id="e2e-1"))
    forged = signed_body("price", key="x" * 40, request_id="forged-1")
    bad = post(f"{listener.url}/webhooks/price", forged)
    code, out, err = listener.stop()
    assert (ok.status_code, dup.json()["status"], bad.status_code) == (200, "duplicate", 401)
    assert code == 0, err
    assert f"{listener.url}/webhooks/stock" in err and f"{listener.url}/webhooks/price" in err
    assert "profile default" in err and "events.sqlite3" in err
    assert "STOCK  verified  e2e-1  25 items" in out
    assert "... and 5 more" in out
    assert "STOCK  duplicate  e2e-1" in out
    assert "PRICE  rejected 401 bad_signature  forged-1 (unverified)" in out
    assert "Stopped: 3 received" in err
    rows = store_rows(isolated_home)
    assert [row["status"] for row in rows] == ["verified", "duplicate", "rejected"]
    assert rows[2]["request_id"] == "forged-1"  # what the body claimed, kept for the record
    assert TOKEN not in out + err


def test_listen_json_lines(isolated_home: Path) -> None:
    """--json: exactly one JSON object per request on stdout; the banner goes to stderr."""
    listener = ListenProcess(isolated_home, "--json", env=ENV)
    post(f"{listener.url}/webhooks/stock", signed_body(count=2, request_id="j-1"))
    post(f"{listener.url}/webhooks/stock", signed_body(request_id="j-1"))
    post(f"{listener.url}/webhooks/stock", b"{")
    many = signed_body(count=40, request_id="j-2")  # its items' bytes are printed as sent
    post(f"{listener.url}/webhooks/stock", many)
    code, out, err = listener.stop()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["status"] for line in lines] == ["verified", "duplicate", "rejected", "verified"]
    assert lines[3]["data"] == json.loads(many)["data"]
    first = lines[0]
    assert {"kind", "status", "requestId", "received_at", "data"} <= set(first)
    assert len(first["data"]) == 2 and first["kind"] == "stock"
    assert lines[2]["reason"] == "malformed_json"
    assert "Stock update endpoint" in err


def test_port_in_use_is_usage_error(isolated_home: Path) -> None:
    """A busy port is a one-line error with exit code 2, not a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "avasam_cli", "listen", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "AVASAM_HOME": str(isolated_home), **ENV},
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_listen_generates_a_token_when_none_is_configured(isolated_home: Path) -> None:
    """With no token, listen creates one, saves it in the profile and prints it once."""
    listener = ListenProcess(isolated_home)
    code, _out, err = listener.stop()
    token = ConfigFile(isolated_home / "config" / "config.toml").profile("default")[
        "verification_token"
    ]
    assert code == 0
    assert err.count(token) == 1 and "Paste it into Avasam" in err


def test_every_answered_update_survives_sigterm(isolated_home: Path) -> None:
    """Stopping mid-load: every request answered 200 is in the store."""
    listener = ListenProcess(isolated_home, env=ENV)
    url = f"{listener.url}/webhooks/stock"
    answered: list[str] = []
    stopped = threading.Event()

    def send(index: int) -> None:
        if stopped.is_set():  # queued behind the stop: nothing would listen
            return
        request_id = f"load-{index}"
        try:
            response = post(url, signed_body(request_id=request_id))
        except httpx.HTTPError:
            return
        if response.status_code == 200:
            answered.append(request_id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(send, i) for i in range(300)]
        deadline = time.monotonic() + 60
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        stopped.set()
        code, _, err = listener.stop(signal.SIGINT)
        for future in futures:
            future.result()
    assert code == 0, err
    verified = {
        row["request_id"] for row in store_rows(isolated_home) if row["status"] == "verified"
    }
    assert len(answered) >= 40
    assert set(answered) <= verified


@pytest.mark.parametrize("mode", [(), ("--json",)])
def test_blocked_output_never_stalls_storing(isolated_home: Path, mode: tuple[str, ...]) -> None:
    """Nobody reads the listener's stdout: updates are still stored and answered."""
    listener = ListenProcess(isolated_home, *mode, env=ENV, drain=False)
    bodies = [signed_body(count=40, request_id=f"blocked-{i}") for i in range(150)]
    with httpx.Client() as client:
        answers = [post(f"{listener.url}/webhooks/stock", body, client) for body in bodies]
    listener.stop()
    assert all(answer.status_code == 200 for answer in answers)
    verified = [row for row in store_rows(isolated_home) if row["status"] == "verified"]
    assert len(verified) == 150


@pytest.mark.parametrize("mode", [(), ("--json",)])
def test_closed_output_never_stops_answering(isolated_home: Path, mode: tuple[str, ...]) -> None:
    """The reader of stdout goes away (`listen | head`): every update is still answered 200
    and stored, /healthz stays ok, and the summary counts what was not printed."""
    listener = ListenProcess(isolated_home, *mode, env=ENV, drain=False)
    assert listener.process.stdout is not None
    with httpx.Client() as client:
        first = post(f"{listener.url}/webhooks/stock", signed_body(request_id="c-0"), client)
        listener.process.stdout.close()  # the reader is gone: the next write breaks the pipe
        answers = [
            post(f"{listener.url}/webhooks/stock", signed_body(request_id=f"c-{i}"), client)
            for i in range(1, 40)
        ]
        health = client.get(f"{listener.url}/healthz")
    code, _, err = listener.stop()
    assert code == 0, err
    assert [a.status_code for a in [first, *answers]] == [200] * 40
    assert health.status_code == 200
    verified = [row for row in store_rows(isolated_home) if row["status"] == "verified"]
    assert len(verified) == 40
    assert "Stopped: 40 received" in err and "not printed because the output was closed" in err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_no_stdout_at_all(isolated_home: Path) -> None:
    """`avasam listen >&-`: it runs without printing, says so, and still stores."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "avasam_cli", "listen", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "AVASAM_HOME": str(isolated_home), "NO_COLOR": "1", **ENV},
        pass_fds=(),
        preexec_fn=lambda: os.close(1),  # noqa: PLW1509 - a test: close stdout in the child
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        assert post(f"{url}/webhooks/stock", signed_body(request_id="quiet")).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "no standard output" in err.decode() and "Traceback" not in err.decode()
    assert [r["request_id"] for r in store_rows(isolated_home)] == ["quiet"]


def test_concurrent_duplicates_are_stored_once(tmp_path: Path) -> None:
    """The same update delivered 20 times at once is verified once, 19 times duplicate."""
    store = tmp_path / "events.sqlite3"
    body = signed_body(request_id="same")
    with (
        serve_in_thread(create_app(ReceiverSettings(TOKEN), store)) as url,
        httpx.Client() as client,
        ThreadPoolExecutor(max_workers=20) as pool,
    ):
        answers = list(pool.map(lambda _: post(f"{url}/webhooks/stock", body, client), range(20)))
    assert sorted(a.json()["status"] for a in answers) == ["duplicate"] * 19 + ["ok"]
    with open_store(store) as events:
        assert events.count_by_status() == {"verified": 1, "duplicate": 19}


def test_duplicates_across_processes_sharing_a_store(isolated_home: Path) -> None:
    """Two listeners sharing one store still verify a request id only once."""
    first = ListenProcess(isolated_home, env=ENV)
    second = ListenProcess(isolated_home, env=ENV)
    bodies = [signed_body(request_id=f"shared-{i}") for i in range(30)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        targets = [(listener, body) for body in bodies for listener in (first, second)]
        answers = list(pool.map(lambda t: post(f"{t[0].url}/webhooks/stock", t[1]), targets))
    first.stop()
    second.stop()
    assert all(answer.status_code == 200 for answer in answers)
    assert sorted(a.json()["status"] for a in answers).count("ok") == 30
    rows = store_rows(isolated_home)
    assert sum(row["status"] == "verified" for row in rows) == 30
    assert sum(row["status"] == "duplicate" for row in rows) == 30


def test_streamed_body_over_limit_against_real_server(tmp_path: Path) -> None:
    """Without Content-Length, the real server still answers 413 at the limit."""
    settings = ReceiverSettings(TOKEN, max_body_size=10_000)

    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b"x" * 1000

    with serve_in_thread(create_app(settings, tmp_path / "s.sqlite3")) as url:
        response = httpx.post(f"{url}/webhooks/stock", content=chunks(), headers=JSON_HEADERS)
        small = httpx.post(
            f"{url}/webhooks/stock", content=iter([signed_body()]), headers=JSON_HEADERS
        )
    assert response.status_code == 413
    assert small.status_code == 200


def test_store_never_holds_the_verification_token(isolated_home: Path) -> None:
    """No secret reaches the store file."""
    listener = ListenProcess(isolated_home, env=ENV)
    post(f"{listener.url}/webhooks/stock", signed_body())
    post(f"{listener.url}/webhooks/stock", signed_body(key="y" * 40))
    listener.stop()
    for path in (isolated_home / "data").iterdir():
        assert TOKEN.encode() not in path.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stock-path", "webhooks"], "invalid endpoint path"),
        (["--stock-path", "/same", "--price-path", "/same"], "must differ"),
    ],
)
def test_bad_listen_options(cli: Cli, args: list[str], message: str) -> None:
    """Malformed paths are usage errors (exit 2)."""
    result = cli("listen", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_deleted_store_file_is_recreated_and_nothing_answered_is_lost(
    isolated_home: Path,
) -> None:
    """The store file is deleted while the listener runs: it says so loudly, opens a new
    file, and every update answered 200 afterwards is in it."""
    listener = ListenProcess(isolated_home, env=ENV)
    store = isolated_home / "data" / "events.sqlite3"
    assert (
        post(f"{listener.url}/webhooks/stock", signed_body(request_id="old-1")).status_code == 200
    )
    for path in store.parent.glob("events.sqlite3*"):
        path.unlink()
    answers = [
        post(f"{listener.url}/webhooks/stock", signed_body(request_id=f"new-{i}")) for i in range(5)
    ]
    code, _, err = listener.stop()
    assert code == 0, err
    assert [a.status_code for a in answers] == [200] * 5
    assert "was deleted while the listener ran" in err
    assert [row["request_id"] for row in read_store(store)] == [f"new-{i}" for i in range(5)]


def test_a_wrong_path_is_answered_stored_and_shown(isolated_home: Path) -> None:
    """A POST to /webhook/stock (a typo): 404 naming the valid paths, stored, printed."""
    listener = ListenProcess(isolated_home, env=ENV)
    wrong = post(f"{listener.url}/webhook/stock", signed_body(request_id="typo-1"))
    probe = httpx.get(f"{listener.url}/")
    health = httpx.get(f"{listener.url}/healthz")
    code, out, _ = listener.stop()
    assert code == 0
    assert wrong.status_code == 404 and probe.status_code == 404
    assert "POST /webhooks/stock" in wrong.json()["detail"]
    assert "POST /webhooks/price" in wrong.json()["detail"]
    assert health.status_code == 200
    rows = store_rows(isolated_home)
    assert [(r["kind"], r["status"], r["reason"]) for r in rows] == [
        ("other", "rejected", "not_found")
    ] * 2
    assert "POST /webhook/stock" in str(rows[0]["detail"]) and b"typo-1" in rows[0]["body"]
    assert "OTHER  rejected 404 not_found" in out


def test_endpoint_paths_saved_in_the_profile_are_followed(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`configure --stock-path`: listen serves it, send-test and events replay send to it,
    and the kind follows it in --url."""
    from tests.conftest import Cli

    cli = Cli()
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    set_up = cli("configure", "--stock-path", "/shop/stock/", "--price-path", "/shop/price")
    assert set_up.exit_code == 0, set_up.output
    listener = ListenProcess(isolated_home, env=ENV)
    try:
        port = str(listener.port)
        sent = cli("send-test", "--port", port, "--request-id", "path-1")
        assert sent.exit_code == 0, sent.output
        priced = cli("send-test", "--url", f"{listener.url}/shop/price", "--request-id", "path-2")
        assert priced.exit_code == 0, priced.output
        replayed = cli("events", "replay", "path-1", "--port", port)
        assert replayed.exit_code == 0 and "duplicate" in replayed.stdout
    finally:
        code, _, err = listener.stop()
    assert code == 0
    assert f"{listener.url}/shop/stock" in err
    kinds = [(r["kind"], r["status"]) for r in store_rows(isolated_home)]
    assert kinds == [("stock", "verified"), ("price", "verified"), ("stock", "duplicate")]
    bad = cli("configure", "--stock-path", "no-slash")
    assert bad.exit_code == 2 and "must start with /" in bad.stderr


@pytest.mark.parametrize(
    ("args", "stored"),
    [
        ((), "127.0.0.1"),  # nobody's X-Forwarded-For is trusted unless asked
        (("--forwarded-allow-ips", "127.0.0.1"), "203.0.113.9"),
        (("--forwarded-allow-ips", "192.0.2.1"), "127.0.0.1"),  # a proxy elsewhere
    ],
)
def test_forwarded_headers_are_trusted_only_from_the_addresses_given(
    isolated_home: Path, args: tuple[str, ...], stored: str
) -> None:
    """The client stored is the connection's, or with --forwarded-allow-ips the one a
    trusted reverse proxy names."""
    listener = ListenProcess(isolated_home, *args, env=ENV)
    answer = httpx.post(
        f"{listener.url}/webhooks/stock",
        content=signed_body(request_id="via-proxy"),
        headers={**JSON_HEADERS, "x-forwarded-for": "203.0.113.9"},
        timeout=30,
    )
    code, _, err = listener.stop()
    assert (answer.status_code, code) == (200, 0), err
    (row,) = store_rows(isolated_home)
    assert str(row["client"]).rpartition(":")[0] == stored


def test_a_listener_a_test_leaves_running_is_stopped_after_it(isolated_home: Path) -> None:
    """The suite's own guard: a test that fails before stopping its listener leaves no
    process tree behind (conftest calls stop_leftovers when each test ends)."""
    from tests.helpers import ListenProcess, stop_leftovers

    earlier = len(ListenProcess.started)
    listener = ListenProcess(isolated_home, "--json")
    assert listener.process.poll() is None
    stop_leftovers(earlier)
    assert listener.process.poll() is not None
    assert "Stopped:" in listener.captured["err"].decode()
    assert len(ListenProcess.started) == earlier
