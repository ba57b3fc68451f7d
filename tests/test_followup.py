"""`listen --auto-ack` and `--forward-to`, end to end: a real listener, a real stand-in
for Avasam, a real server standing in for the seller's app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.conftest import Cli
from tests.helpers import JSON_HEADERS, TOKEN, ListenProcess, free_port, signed_body, store_rows
from tests.standin import Avasam, running_avasam

ACK = "/api-seller/Product/AcknowledgeStockUpdate"


@pytest.fixture
def avasam() -> Iterator[Avasam]:
    with running_avasam() as state:
        yield state


def listen_env(avasam: Avasam) -> dict[str, str]:
    return {
        "AVASAM_VERIFICATION_TOKEN": TOKEN,
        "AVASAM_BASE_URL": avasam.url,
        "AVASAM_CONSUMER_KEY": avasam.consumer_key,
        "AVASAM_SECRET_KEY": avasam.secret_key,
    }


def wait_for(condition: object, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def rows(home: Path) -> dict[str, dict[str, object]]:
    rows = store_rows(home / "data" / "events.sqlite3", "status = 'verified'")
    return {row["request_id"]: row for row in rows}


def post(listener: ListenProcess, kind: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{listener.url}/webhooks/{kind}",
        content=body,
        # The caller's credentials travel with the request; they must not reach the shop.
        headers={
            **JSON_HEADERS,
            "X-Trace": "t-9",
            "Authorization": "Bearer caller-token",
            "Cookie": "session=caller",
            "X-Api-Key": "caller-key",
        },
        timeout=30,
    )


def test_auto_ack_acknowledges_new_stock_updates(isolated_home: Path, avasam: Avasam) -> None:
    """Each new verified stock update is acknowledged once, in the background, and stored."""
    listener = ListenProcess(isolated_home, "--auto-ack", env=listen_env(avasam))
    body = signed_body(request_id="auto-1")
    assert post(listener, "stock", body).json()["status"] == "ok"
    assert post(listener, "stock", body).json()["status"] == "duplicate"
    post(listener, "price", signed_body("price", request_id="price-1"))
    wait_for(lambda: rows(isolated_home)["auto-1"]["ack_status"] == "acknowledged")
    _, _, err = listener.stop()
    assert [r.body for r in avasam.received if r.path == ACK] == [{"requestId": "auto-1"}]
    assert "Acknowledged auto-1" in err
    assert rows(isolated_home)["price-1"]["ack_status"] is None


def test_auto_ack_without_keys_is_configuration_error(
    isolated_home: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--auto-ack needs API keys: without them listen refuses to start (exit 2)."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    result = cli("listen", "--auto-ack", "--port", str(free_port()))
    assert result.exit_code == 2
    assert "consumer key" in result.stderr


def test_pending_acks_at_shutdown_stay_in_the_outbox_and_are_delivered_later(
    isolated_home: Path, avasam: Avasam, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledgements not done at shutdown stay pending in the outbox, and the stop says
    so; `deliveries run` sends them later, without a listener."""
    avasam.ack_script = ["drop"] * 3  # the first acknowledgement fails (the client's 3 tries)
    listener = ListenProcess(isolated_home, "--auto-ack", env=listen_env(avasam))
    for index in range(4):
        post(listener, "stock", signed_body(request_id=f"late-{index}"))
    wait_for(
        lambda: sum(r["ack_status"] == "acknowledged" for r in rows(isolated_home).values()) == 3
    )
    _, _, err = listener.stop()
    assert "Outbox: 1 pending (`avasam deliveries run` delivers them)" in err
    for name, value in listen_env(avasam).items():
        monkeypatch.setenv(name, value)
    result = cli("deliveries", "run")
    assert result.exit_code == 0, result.output
    assert "Delivered 1;" in result.stderr
    assert all(row["ack_status"] == "acknowledged" for row in rows(isolated_home).values())


class Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[bytes, dict[str, str]]]] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((body, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(202)
        self.send_header("content-length", "8")
        self.end_headers()
        self.wfile.write(b"accepted")

    def log_message(self, *_: object) -> None:
        pass


def test_forward_delivers_byte_identical_bodies(isolated_home: Path) -> None:
    """Verified, new updates reach the seller's app unchanged, with the marker headers."""
    Recorder.received = []
    app = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=app.serve_forever, args=(0.05,), daemon=True).start()
    target = f"http://127.0.0.1:{app.server_address[1]}/avasam"
    try:
        listener = ListenProcess(
            isolated_home, "--forward-to", target, env={"AVASAM_VERIFICATION_TOKEN": TOKEN}
        )
        stock, price = (
            signed_body(count=3, request_id="fw-1"),
            signed_body("price", request_id="fw-2"),
        )
        post(listener, "stock", stock)
        post(listener, "stock", stock)  # a duplicate: not forwarded again
        post(listener, "price", price)
        post(listener, "stock", b"{")  # refused: never forwarded
        wait_for(lambda: len(Recorder.received) == 2)
        wait_for(lambda: rows(isolated_home)["fw-2"]["forward_status"] == "202")
        _, _, err = listener.stop()
    finally:
        app.shutdown()
        app.server_close()
    bodies = {body: headers for body, headers in Recorder.received}
    assert set(bodies) == {stock, price}
    assert bodies[stock]["x-avasam-event"] == "stock"
    assert bodies[price]["x-avasam-event"] == "price"
    assert bodies[stock]["x-avasam-verified"] == "true"
    assert bodies[stock]["x-trace"] == "t-9"
    assert not {"authorization", "cookie", "x-api-key"} & set(bodies[stock])
    assert "answered a GET with 200" in err and "Forwarded stock fw-1" in err


def test_forward_target_down_is_one_warning(isolated_home: Path) -> None:
    """A target that is down: warned about once, listening and answering go on, all stored."""
    target = f"http://127.0.0.1:{free_port()}/avasam"
    listener = ListenProcess(
        isolated_home, "--forward-stock-to", target, env={"AVASAM_VERIFICATION_TOKEN": TOKEN}
    )
    answers = [post(listener, "stock", signed_body(request_id=f"down-{i}")) for i in range(5)]
    wait_for(lambda: rows(isolated_home)["down-0"]["forward_status"] == "retrying")
    code, _, err = listener.stop()
    assert code == 0
    assert all(answer.status_code == 200 for answer in answers)
    assert err.count("is not reachable") == 1 and err.count("kept in the outbox") == 1
    assert "Outbox: 5 pending" in err
    assert "Traceback" not in err


def test_a_target_that_never_answers_is_given_up_in_time(isolated_home: Path) -> None:
    """A forward target that accepts and then says nothing: the attempt is recorded as
    failed after --forward-timeout, and stopping the listener does not wait for it."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    target = f"http://127.0.0.1:{silent.getsockname()[1]}/avasam"
    try:
        listener = ListenProcess(
            isolated_home,
            "--forward-to",
            target,
            "--forward-timeout",
            "1",
            env={"AVASAM_VERIFICATION_TOKEN": TOKEN},
        )
        assert post(listener, "stock", signed_body(request_id="silent-1")).status_code == 200
        wait_for(lambda: rows(isolated_home)["silent-1"]["forward_status"] == "retrying", 15)
        start = time.monotonic()
        listener.stop()
        stopped_in = time.monotonic() - start
    finally:
        stop.set()
        silent.close()
        for conn in held:
            conn.close()
    assert rows(isolated_home)["silent-1"]["forward_detail"] == "failed no answer within 1 s"
    assert stopped_in < 8


def test_ready_comes_after_the_forward_check(isolated_home: Path) -> None:
    """ "Ready." is printed once start-up is over: after the forward target's warning."""
    target = f"http://127.0.0.1:{free_port()}/avasam"  # nothing listens there
    listener = ListenProcess(
        isolated_home, "--forward-to", target, env={"AVASAM_VERIFICATION_TOKEN": TOKEN}
    )
    _, _, err = listener.stop()
    assert err.index("is not reachable") < err.index("Ready.")


def test_forwarding_to_the_listener_itself_is_recognised(isolated_home: Path) -> None:
    """A forward target that is the listener itself: one clear warning, no false
    "not reachable", and no wait at start-up."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    start = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "avasam_cli",
            "listen",
            "--port",
            str(port),
            "--forward-to",
            f"http://localhost:{port}/webhooks/stock",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={
            **os.environ,
            "AVASAM_HOME": str(isolated_home),
            "NO_COLOR": "1",
            "AVASAM_VERIFICATION_TOKEN": TOKEN,
        },
    )

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 20)
    ready_in = time.monotonic() - start
    process.send_signal(signal.SIGTERM)
    _, err_bytes = process.communicate(timeout=30)
    err = err_bytes.decode()
    assert "is this listener itself" in err and "not reachable" not in err
    assert "Ready." in err and ready_in < 8


def test_an_acknowledgement_in_flight_does_not_hold_the_stop(
    isolated_home: Path, avasam: Avasam
) -> None:
    """A stop waits --shutdown-wait for an acknowledgement that hangs, not the API's own
    30 s deadline; the job stays pending in the outbox, and the stop says so."""
    avasam.ack_script = ["stall"]
    listener = ListenProcess(
        isolated_home, "--auto-ack", "--shutdown-wait", "1", env=listen_env(avasam)
    )
    post(listener, "stock", signed_body(request_id="hung-1"))
    deadline = time.monotonic() + 10
    while not any(r.path == ACK for r in avasam.received) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    code, _, err = listener.stop()
    assert time.monotonic() - started < 15  # the API deadline alone is 30 s
    assert code == 0
    assert "deliveries still in flight after 1 s were stopped" in err
    assert "Outbox: 1 pending" in err
    assert rows(isolated_home)["hung-1"]["ack_status"] is None


def test_send_test_updates_are_never_acknowledged(
    isolated_home: Path, avasam: Avasam, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `send-test` sends carries its marker: stored and shown as a test event, and no
    acknowledgement job is made for it (Avasam did not send it); a real update is."""
    listener = ListenProcess(isolated_home, "--auto-ack", env=listen_env(avasam))
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    sent = cli("send-test", "--port", str(listener.port), "--request-id", "from-send-test")
    assert sent.exit_code == 0, sent.output
    post(listener, "stock", signed_body(request_id="from-avasam"))
    wait_for(lambda: rows(isolated_home)["from-avasam"]["ack_status"] == "acknowledged")
    listener.stop()
    assert [r.body for r in avasam.received if r.path == ACK] == [{"requestId": "from-avasam"}]
    shown = cli("events", "show", "from-send-test")
    assert "test event:   sent by `avasam send-test`" in shown.stdout
    assert "delivery" not in shown.stdout
    real = cli("events", "show", "from-avasam").stdout
    assert "acknowledge: delivered, 1 attempt" in real and "test event" not in real
