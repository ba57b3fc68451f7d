"""What the README promises, kept at the edges: the defects found trying it as a seller and
as an attacker (each test fails on the code before its fix)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from avasam_cli.store.base import open_store
from tests.conftest import Cli


def _event(request_id: str) -> Any:
    from avasam_cli.store.events import Event

    return Event("2026-11-27T10:00:00+00:00", "stock", "verified", 200, "[]", b"{}",
                 request_id=request_id, item_count=1)  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- 1. --store never changes a folder it did not make ------------------------------------
def test_store_in_a_shared_folder_leaves_the_folder_alone(cli: Cli) -> None:
    """`--store` in an existing 1777 folder: the folder keeps its mode; the store file and
    its -wal and -shm are 0600 from the start."""
    shared = Path(tempfile.mkdtemp(prefix="avasam-shared-"))
    try:
        shared.chmod(0o1777)
        store = shared / "events.sqlite3"
        result = cli("--store", str(store), "events", "prune", "--older-than", "1d", "--yes")
        assert result.exit_code == 0, result.output
        with open_store(store) as opened:  # the -wal and -shm exist while it is open
            opened.insert([_event("shared-1")])
            written = {p.name: mode(p) for p in shared.iterdir()}
        assert mode(shared) == 0o1777
        assert written == dict.fromkeys(
            ("events.sqlite3", "events.sqlite3-wal", "events.sqlite3-shm"), 0o600
        )
    finally:
        for path in shared.iterdir():
            path.unlink()
        shared.rmdir()


def test_a_store_in_a_missing_folder_is_refused(cli: Cli, tmp_path: Path) -> None:
    """An explicit --store (or AVASAM_STORE) whose folder does not exist: exit 2 naming the
    folder, which is not created."""
    missing = tmp_path / "nonexistent" / "dir"
    result = cli("--store", str(missing / "x.sqlite3"), "events", "list")
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert f"does not exist: {missing}" in said and "(from --store)" in said
    assert not missing.exists() and "Traceback" not in result.output
    os.environ["AVASAM_STORE"] = str(missing / "x.sqlite3")
    try:
        again = cli("events", "list")
    finally:
        del os.environ["AVASAM_STORE"]
    assert again.exit_code == 2 and "AVASAM_STORE" in again.stderr


def test_the_default_data_folder_is_still_created_private(isolated_home: Path) -> None:
    from avasam_cli.paths import locations

    with open_store(locations().store_file):
        pass
    assert mode(isolated_home / "data") == 0o700
    assert mode(isolated_home / "data" / "events.sqlite3") == 0o600


# --- 3. A failed acknowledgement never overwrites an earlier success ------------------------
def test_a_later_failed_ack_keeps_the_success(store_location: Any) -> None:
    """On both stores: `ack ID` failing after a success leaves the update acknowledged; the
    failure is kept in its job's history only."""
    from avasam_cli.store.jobs import Plan

    with open_store(store_location) as store:
        store.insert([_event("ok-1")], Plan(acknowledge=True))
        store.record_acknowledgement("ok-1", "acknowledged", "200 {}", "2026-11-27T10:01:00Z")
        store.record_acknowledgement("ok-1", "failed", "503 down", "2026-11-27T10:02:00Z")
        event = store.find("ok-1")
        (job,) = store.deliveries(event_id=event.id if event else None)
        history = store.delivery_attempts(job.id)
    assert event is not None
    assert (event.ack_status, event.ack_detail) == ("acknowledged", "200 {}")
    assert job.state == "delivered"
    assert [status for _, status, _, _ in history] == ["200", "failed"]
    assert "503 down" in history[-1][3]


def test_ack_after_auto_ack_with_the_api_down(cli: Cli, avasam: Any) -> None:
    """The seller's run: acknowledged through the outbox, then `avasam ack ID` while the API
    is down: exit 1, and `events show` / `events list` still say acknowledged."""
    from avasam_cli.paths import locations
    from avasam_cli.store.jobs import Plan

    with open_store(locations().store_file) as store:
        store.insert([_event("auto-1")], Plan(acknowledge=True))
    assert cli("deliveries", "run").exit_code == 0
    avasam.ack_script = [503, 503, 503]
    failed = cli("ack", "auto-1")
    assert failed.exit_code == 1
    shown = cli("events", "show", "auto-1").stdout
    assert "acknowledged: acknowledged" in shown
    assert "failed" in cli("events", "show", "auto-1").stdout  # in the history
    listed = cli("events", "list").stdout
    assert "acknowledged" in listed and "failed" not in listed


# --- 4. Test events are what the README says ------------------------------------------------
def test_a_test_event_is_marked_in_every_view(cli: Cli, isolated_home: Path, avasam: Any) -> None:
    """send-test's update: `(test)` on the listener's line, `"test": true` in listen --json
    and events list --json, `never (test)` in the table, --test/--no-test filter, and
    `ack --pending` says it left it out and why."""
    import json

    import httpx

    from tests.helpers import JSON_HEADERS, TOKEN, ListenProcess, signed_body

    env = {"AVASAM_VERIFICATION_TOKEN": TOKEN}
    for args in ((), ("--json",)):
        listener = ListenProcess(isolated_home, *args, env=env)
        sent = cli("send-test", "--port", str(listener.port), "--verification-token", TOKEN)
        assert sent.exit_code == 0, sent.output
        httpx.post(
            f"{listener.url}/webhooks/stock", content=signed_body(), headers=JSON_HEADERS,
            timeout=30,
        )  # fmt: skip
        _, out, _ = listener.stop()
        if args:
            assert [json.loads(line)["test"] for line in out.splitlines()] == [True, False]
        else:
            lines = [line for line in out.splitlines() if "verified" in line]
            assert "(test)" in lines[0] and "(test)" not in lines[1]
    listed = [json.loads(line) for line in cli("events", "list", "--json").stdout.splitlines()]
    assert [row["test"] for row in listed] == [False, True, False, True]
    table = cli("events", "list").stdout
    assert table.count("never (test)") == 2 and table.count("pending") == 2
    assert len(cli("events", "list", "--test", "--json").stdout.splitlines()) == 2
    assert "never (test)" not in cli("events", "list", "--no-test").stdout
    acked = cli("ack", "--pending")
    assert acked.exit_code == 0, acked.output
    assert "Left out 2 test events (from `avasam send-test`)" in acked.stderr
    assert acked.stdout.count("acknowledged") == 2
    again = cli("ack", "--pending")
    assert "Nothing to acknowledge: every verified stock update from Avasam is" in " ".join(
        again.stderr.split()
    )


# --- 2. Forward headers are saved: no retry goes out without them ---------------------------
def test_a_job_queued_with_a_header_waits_for_a_runner_that_has_it(cli: Cli) -> None:
    """A forward queued by a listener given --forward-header: a runner without the header
    leaves it pending and names the header once; with the header saved in the profile
    (`configure --forward-header`, shown masked), the next run delivers it, carrying it."""
    from avasam_cli.paths import locations
    from avasam_cli.store.jobs import Plan
    from tests.helpers import RecordingShop

    shop = RecordingShop()
    try:
        plan = Plan({"stock": shop.url}, header_names=("X-Shop-Key",))
        with open_store(locations().store_file) as store:
            store.insert([_event("hdr-1"), _event("hdr-2")], plan)
        bare = cli("deliveries", "run")
        assert bare.exit_code == 0, bare.output
        assert shop.received == []
        said = " ".join(bare.stderr.split())
        assert said.count("queued with the header x-shop-key") == 1
        assert "configure --forward-header 'x-shop-key: VALUE'" in said
        saved = cli("configure", "--forward-header", "X-Shop-Key: abc123")
        assert saved.exit_code == 0, saved.output
        assert "X-Shop-Key: ****" in saved.stderr and "abc123" not in saved.output
        assert "abc123" not in cli("config", "show").stdout
        delivered = cli("deliveries", "run")
        assert delivered.exit_code == 0, delivered.output
    finally:
        shop.close()
    assert [headers.get("x-shop-key") for headers, _ in shop.received] == ["abc123", "abc123"]


def test_a_bad_saved_forward_header_is_refused(cli: Cli) -> None:
    result = cli("configure", "--forward-header", "no colon here")
    assert result.exit_code == 2
    assert "'Name: value'" in result.stderr and "Traceback" not in result.output


def test_listen_forwards_carry_the_saved_header(cli: Cli, isolated_home: Path) -> None:
    """`listen --forward-to` with the header saved in the profile (no flag): the shop gets
    it, and so does a retry by `deliveries run` after the listener stopped."""
    import httpx

    from tests.helpers import JSON_HEADERS, TOKEN, ListenProcess, RecordingShop, signed_body
    from tests.test_rotation import wait_for

    assert cli("configure", "--forward-header", "X-Shop-Key: abc123").exit_code == 0
    shop = RecordingShop()
    shop.codes = [500]
    env = {"AVASAM_VERIFICATION_TOKEN": TOKEN}
    try:
        listener = ListenProcess(isolated_home, "--forward-to", shop.url, env=env)
        try:
            url = f"{listener.url}/webhooks/stock"
            httpx.post(url, content=signed_body(), headers=JSON_HEADERS, timeout=30)
            wait_for(lambda: len(shop.received) == 1, 10, "the first attempt")
        finally:
            listener.stop()
        assert cli("deliveries", "run").exit_code == 0
    finally:
        shop.close()
    assert [headers.get("x-shop-key") for headers, _ in shop.received] == ["abc123", "abc123"]


# --- 17. Ids that are no row id --------------------------------------------------------------
def test_ids_beyond_a_row_id_are_looked_up_as_request_ids(cli: Cli, store_location: Any) -> None:
    """A number past 2**63 and a non-ASCII digit: no traceback on either store; on the CLI
    exit 2 with the usual message."""
    with open_store(store_location) as store:
        store.insert([_event("1")])
        assert store.find("99999999999999999999") is None
        assert store.find("²") is None
        assert store.find("1") is not None
    for key in ("99999999999999999999", "²"):
        result = cli("events", "show", key)
        assert result.exit_code == 2, result.output
        assert "no stored event has id or request id" in result.stderr
        assert "Traceback" not in result.output


# --- 18. Port 0 is no port to save ------------------------------------------------------------
def test_port_zero_is_refused_where_it_would_be_saved_or_used(cli: Cli) -> None:
    """`configure --listen-port 0` (or ², or 65536), AVASAM_LISTEN_PORT=0 for send-test and
    doctor: exit 2 naming the range; `listen --port 0` still means any free port."""
    for value in ("0", "²", "65536"):
        result = cli("configure", "--listen-port", value)
        assert result.exit_code == 2, value
        assert "use a number from 1 to 65535" in result.stderr and "Traceback" not in result.output
    os.environ["AVASAM_LISTEN_PORT"] = "0"
    try:
        sent = cli("send-test", "--verification-token", "x" * 40)
    finally:
        del os.environ["AVASAM_LISTEN_PORT"]
    assert sent.exit_code == 2 and "AVASAM_LISTEN_PORT" in sent.stderr


# --- 15. No password from the driver's own words ----------------------------------------------
def test_a_password_with_a_space_is_masked_in_the_drivers_error() -> None:

    from avasam_cli.errors import StoreUnavailable
    from avasam_cli.paths import DatabaseUrl
    from avasam_cli.store.postgres import connect

    for url in (
        "postgresql://user:pa ss@127.0.0.1:1/db",
        "postgresql://user@127.0.0.1:1/db?password=se cret",
    ):
        with pytest.raises(StoreUnavailable) as refused:
            connect(DatabaseUrl(url))
        assert "pa ss" not in refused.value.message and "se cret" not in refused.value.message
        assert "****" in refused.value.message


# --- 16. Our credentials never reach stdout through an echo ------------------------------------
def test_api_masks_our_token_in_an_answer_that_echoes_it(cli: Cli, avasam: Any) -> None:
    avasam.ack_script = ["echo"]  # a 400 repeating the request's Authorization header
    result = cli(
        "api", "/api-seller/Product/AcknowledgeStockUpdate", "-d", '{"requestId": "x"}', "-i"
    )
    assert result.exit_code == 1
    assert "access-0001" not in result.output and "****" in result.stdout


# --- 21. A SKU asked for and not found ------------------------------------------------------------
def test_stock_list_names_a_missing_sku_with_exit_1(cli: Cli, avasam: Any) -> None:
    avasam.stock = {"A": 1}
    result = cli("stock", "list", "--sku", "A", "--sku", "NOPE")
    assert result.exit_code == 1
    assert "not in Avasam's stock list: NOPE" in result.stderr
    assert result.stdout.split() == ["sku", "stock", "A", "1"]


# --- 5. A forward target that trickles cannot hold the start ------------------------------------
def test_a_trickling_forward_target_does_not_block_listen(isolated_home: Path) -> None:
    """A target sending one byte every 0.5 s: the start-up look gives up after 3 s, says
    so, and the listener is ready and stops on SIGTERM."""
    import socket
    import threading
    import time

    from tests.helpers import TOKEN, ListenProcess

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                    if stop.is_set():
                        break
                    conn.sendall(bytes([byte]))
                    time.sleep(0.5)

    threading.Thread(target=trickle, daemon=True).start()
    target = f"http://127.0.0.1:{server.getsockname()[1]}/shop"
    try:
        listener = ListenProcess(
            isolated_home, "--forward-price-to", target, env={"AVASAM_VERIFICATION_TOKEN": TOKEN}
        )  # ready, or this raises
        code, _, err = listener.stop()
    finally:
        stop.set()
        server.close()
    assert code == 0
    assert "no answer within 3 s" in " ".join(err.split())


# --- 9. Attempt counts match the attempts listed -------------------------------------------------
def test_attempt_counts_after_a_retry_of_a_dead_job(cli: Cli) -> None:
    """A forward refused 400 goes dead "after 1 attempt"; retried, it is "after 2 attempts",
    and `events show` lists both under "dead, 2 attempts"."""
    from avasam_cli.paths import locations
    from avasam_cli.store.jobs import Plan
    from tests.helpers import RecordingShop

    shop = RecordingShop()
    shop.codes = [400, 400]
    try:
        with open_store(locations().store_file) as store:
            store.insert([_event("dead-1")], Plan({"stock": shop.url}))
        first = cli("deliveries", "run")
        assert cli("deliveries", "retry", "--dead").exit_code == 0
        second = cli("deliveries", "run")
    finally:
        shop.close()
    assert "after 1 attempt:" in " ".join(first.stderr.split())
    assert "after 2 attempts:" in " ".join(second.stderr.split())
    shown = cli("events", "show", "dead-1").stdout
    assert "dead, 2 attempts" in shown
    assert shown.count("400") >= 2


# --- 7, 12, 14. The inspector's actions ---------------------------------------------------------
def test_two_inspectors_in_one_browser_keep_their_own_cookie(tmp_path: Path) -> None:
    """Each page's cookie is named for its port: opening the second printed URL does not
    log the first page out (cookies are per host, not per port)."""
    import httpx

    from avasam_cli.inspector.app import create_inspector
    from tests.helpers import free_port
    from tests.test_inspector import serving

    store = tmp_path / "events.sqlite3"
    open_store(store).close()
    ports = [free_port(), free_port()]
    apps = [create_inspector(store, f"token-{n}", port) for n, port in enumerate(ports)]
    with (
        serving(apps[0], ports[0]) as first,
        serving(apps[1], ports[1]) as second,
        httpx.Client(follow_redirects=True) as browser,  # one cookie jar
    ):
        for n, base in enumerate((first, second)):
            assert browser.get(f"{base}/?token=token-{n}").status_code == 200
        answers = [browser.get(f"{base}/api/session").status_code for base in (first, second)]
    assert answers == [200, 200]


def test_acknowledge_all_acts_on_the_store_the_page_shows(tmp_path: Path) -> None:
    """The inspector of another store (`avasam --store X inspect`): "Acknowledge all
    pending" acknowledges X's updates, through X's outbox, with the page's API client."""
    import httpx

    from avasam_cli.inspector.app import create_inspector
    from tests.helpers import free_port
    from tests.test_inspector import PAGE_TOKEN, cookie_for, serving

    other = tmp_path / "other.sqlite3"
    with open_store(other) as store:
        store.insert([_event("other-1")])
    port = free_port()
    sent: list[str] = []

    def acknowledge(request_id: str) -> str:
        sent.append(request_id)
        return "200 ok"

    app = create_inspector(other, PAGE_TOKEN, port, acknowledge=acknowledge)
    with serving(app, port) as base, httpx.Client(base_url=base) as client:
        client.cookies.set(cookie_for(base), PAGE_TOKEN)
        csrf = client.get("/api/session").json()["csrf"]
        answer = client.post(
            "/api/acknowledge-pending", headers={"origin": base, "x-avasam-csrf": csrf}
        ).json()
    assert answer == {"status": 200, "answer": "Acknowledged 1 of 1."}
    assert sent == ["other-1"]
    with open_store(other) as store:
        (row,) = store.deliveries()
        assert (row.job, row.state) == ("acknowledge", "delivered")
        assert store.pending_acknowledgements() == []


def test_the_inspectors_forward_is_built_as_the_outbox_builds_it(tmp_path: Path) -> None:
    """Replay to the forward target: with the forward headers and X-Avasam-Delivery-Attempt."""
    import httpx

    from avasam_cli.inspector.app import create_inspector
    from tests.helpers import RecordingShop, free_port
    from tests.test_inspector import PAGE_TOKEN, cookie_for, serving

    path = tmp_path / "events.sqlite3"
    with open_store(path) as store:
        store.insert([_event("fw-1")])
    shop = RecordingShop()
    port = free_port()
    try:
        app = create_inspector(path, PAGE_TOKEN, port, forward={"stock": shop.url})
        app.state.forward_headers = [("X-Shop-Key", "abc123")]
        with serving(app, port) as base, httpx.Client(base_url=base) as client:
            client.cookies.set(cookie_for(base), PAGE_TOKEN)
            csrf = client.get("/api/session").json()["csrf"]
            client.post("/api/events/1/forward", headers={"origin": base, "x-avasam-csrf": csrf})
    finally:
        shop.close()
    ((headers, _),) = shop.received
    assert headers["x-shop-key"] == "abc123" and headers["x-avasam-delivery-attempt"] == "1"


def test_the_inspector_closes_a_head_that_never_ends(tmp_path: Path) -> None:
    """A half-sent request head is closed once the head timeout passes (1 s here), as the
    receiver's are: 1,500 of them can no longer stay open."""
    import socket
    import threading
    import time

    import uvicorn

    from avasam_cli.inspector.app import create_inspector
    from avasam_cli.inspector.server import server_config
    from avasam_cli.receiver.protocol import ConnectionLimits
    from tests.helpers import free_port

    path = tmp_path / "events.sqlite3"
    open_store(path).close()
    port = free_port()
    config = server_config(create_inspector(path, "t", port), ConnectionLimits(65536, 1.0, 1.0))
    config.host, config.port = "127.0.0.1", port
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the inspector did not start"
        time.sleep(0.02)
    try:
        with socket.create_connection(("127.0.0.1", port)) as half:
            half.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1")
            half.settimeout(15)
            start = time.monotonic()
            while half.recv(4096):  # an answer (408), then the close
                pass
            assert time.monotonic() - start < 15
    finally:
        server.should_exit = True
        thread.join(timeout=15)


# --- 19. Numbers and booleans written and shown as such ----------------------------------------
def test_configure_writes_a_port_as_a_number(cli: Cli, isolated_home: Path) -> None:
    import json
    import tomllib

    assert cli("configure", "--listen-port", "19787", "--allow-insecure-base-url").exit_code == 0
    table = tomllib.loads((isolated_home / "config" / "config.toml").read_text())
    profile = table["profiles"]["default"]
    assert profile["listen_port"] == 19787 and profile["allow_insecure_base_url"] is True
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["listen_port"]["value"] == 19787
    assert shown["allow_insecure_base_url"]["value"] is True
    assert shown["base_url"]["value"] == "https://app.avasam.com"


# --- 8. An answer over the limit: said, nothing partial on stdout; --output FILE keeps it whole --
def test_api_refuses_to_print_half_an_answer(cli: Cli, avasam: Any, tmp_path: Path) -> None:
    import json

    rows = [{"SKU": f"S-{n:07d}", "Stock": n} for n in range(300_000)]
    avasam.raw_answer = json.dumps(rows).encode()
    assert len(avasam.raw_answer) > 8 * 2**20
    cut = cli("api", "/apiseeker/ProductModule/GetInventoryListWithFilter", "-F", "limit=1")
    assert cut.exit_code == 1 and cut.stdout == ""
    assert "over 8 MiB" in cut.stderr and "--output FILE" in cut.stderr
    target = tmp_path / "answer.json"
    whole = cli(
        "api", "/apiseeker/ProductModule/GetInventoryListWithFilter", "-F", "limit=1", "-o",
        str(target),
    )  # fmt: skip
    assert whole.exit_code == 0, whole.output
    assert target.read_bytes() == avasam.raw_answer and whole.stdout == ""


# --- 10. Tables at 80 columns keep what you need ------------------------------------------------
def test_tables_at_80_columns(cli: Cli, monkeypatch: Any) -> None:
    """`deliveries list` cuts a URL in its middle and says when the next try is from now;
    `events list` keeps its headers whole."""
    from avasam_cli.paths import locations
    from avasam_cli.store.jobs import Plan

    target = "http://127.0.0.1:9/a-long-path/to-the-shops-webhook-endpoint/for-stock-updates"
    with open_store(locations().store_file) as store:
        store.insert([_event("x" * 36)], Plan({"stock": target}))
    ran = cli("deliveries", "run", "--retry-schedule", "1h")  # refused: kept for an hour
    assert ran.exit_code == 0, ran.output
    monkeypatch.setenv("COLUMNS", "80")
    listed = cli("deliveries", "list").stdout
    assert all(len(line) <= 80 for line in listed.splitlines()), listed
    row = listed.splitlines()[1]
    assert "http://12" in row and "updates" in row and "…" in row
    import re

    assert re.search(r" in \d+ (min|h)$", row) and "2026-" not in row  # the schedule's jitter
    events = cli("events", "list").stdout.splitlines()
    assert events[0].split() == ["id", "received", "(UTC)", "kind", "status", "request", "id",
                                 "items", "ack"]  # fmt: skip


def test_reconcile_at_80_columns_keeps_the_request_id_whole(
    cli: Cli, avasam: Any, monkeypatch: Any
) -> None:
    """A drifted SKU at 80 columns: the request id (what `events show` takes) is whole,
    the received time is what gives way, and the note says --json has it all."""
    import json

    from tests.test_api_commands import NOW, store_stock_update

    avasam.stock = {"MUG-BLUE": 3}
    store_stock_update({"MUG-BLUE": 12}, NOW, "2026-11-28T09:00:01.000+00:00")
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("reconcile")
    assert shown.exit_code == 1, shown.output
    request_id = json.loads(cli("reconcile", "--json").stdout.splitlines()[0])["requestId"]
    table = [line for line in shown.stdout.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in table), table
    assert table[0].split() == ["sku", "avasam", "webhook", "updatedOn", "request", "id"]
    assert table[1].split()[:3] == ["MUG-BLUE", "3", "12"] and table[1].endswith(request_id)
    assert "--json shows them whole" in shown.stderr
    monkeypatch.setenv("COLUMNS", "200")
    wide = cli("reconcile").stdout.splitlines()
    assert "received" in wide[0] and "2026-11-28 09:00:01" in wide[1]


# --- 6. After a crash, only the update in flight is sent again --------------------------------
def test_a_killed_runner_repeats_only_the_update_in_flight(isolated_home: Path) -> None:
    """`deliveries run` killed (-9) while its 10th forward waits for the shop: the next run
    sends the 10th again and the rest once; the first nine reach the shop once each."""
    import collections
    import json
    import signal
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from avasam_cli.paths import locations
    from avasam_cli.store.jobs import Plan
    from tests.helpers import free_port
    from tests.test_rotation import wait_for

    received: list[str] = []
    stalled = threading.Event()
    release = threading.Event()

    class Shop(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request_id = json.loads(self.rfile.read(int(self.headers["content-length"])))
            received.append(request_id["requestId"])
            if request_id["requestId"] == "q-09" and not stalled.is_set():
                stalled.set()
                release.wait(30)  # the runner dies meanwhile
                return
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Shop)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{port}/shop"
    events = []
    for n in range(30):
        event = _event(f"q-{n:02d}")
        event.body = json.dumps({"requestId": f"q-{n:02d}"}).encode()
        events.append(event)
    with open_store(locations().store_file) as store:
        store.insert(events, Plan({"stock": url}))
    env = {**os.environ, "AVASAM_HOME": str(isolated_home)}
    command = [sys.executable, "-m", "avasam_cli", "deliveries", "run", "--forward-timeout", "60"]
    try:
        runner = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        wait_for(stalled.is_set, 30, "the 10th forward to reach the shop")
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        release.set()
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    counts = collections.Counter(received)
    assert sorted(counts) == [f"q-{n:02d}" for n in range(30)]
    assert [request_id for request_id, n in counts.items() if n > 1] == ["q-09"]
