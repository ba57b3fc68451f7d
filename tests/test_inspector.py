"""The inspector: its defences and its data, served by a real uvicorn on a free port over
a real store; then in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from avasam_cli.inspector.app import create_inspector
from avasam_cli.inspector.security import SECURITY_HEADERS, cookie_name
from avasam_cli.store.base import open_store
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import Plan
from tests.helpers import TOKEN, ListenProcess, free_port, signed_body

PAGE_TOKEN = "page-token-for-tests"


def cookie_for(base: str) -> str:
    """The page's cookie name for the inspector at `base` (http://127.0.0.1:PORT)."""
    return cookie_name(int(base.rsplit(":", 1)[1]))


SKU = json.loads(signed_body())["data"][0]["sku"]  # every stored update here has it


def stored(
    request_id: str, kind: str = "stock", status: str = "verified", **extra: object
) -> Event:
    body = signed_body(kind, request_id=request_id) if status == "verified" else b"{"
    return Event(
        "2026-11-28T10:00:00.000+00:00", kind, status, 200 if status == "verified" else 400,
        json.dumps([["content-type", "application/json"]]), body, request_id=request_id,
        item_count=1 if status == "verified" else None, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@contextlib.contextmanager
def serving(app: Any, port: int) -> Iterator[str]:
    """`app` on a real uvicorn at 127.0.0.1:`port`; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="none",
        timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.stopping.set()
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.contextmanager
def inspector(store_path: Path) -> Iterator[str]:
    """The inspector over `store_path` on a free port; yields its base URL."""
    port = free_port()
    with serving(create_inspector(store_path, PAGE_TOKEN, port), port) as base:
        yield base


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "events.sqlite3"
    with open_store(path) as store:
        store.insert([stored(f"r-{n:03d}") for n in range(250)])
        store.insert([stored("p-1", "price"), stored("bad", status="rejected")])
    return path


def test_a_foreign_host_and_a_missing_token_are_refused(store_path: Path) -> None:
    """421 for any Host but our own (DNS rebinding), 401 without the token; the printed
    URL's token becomes a SameSite=Strict cookie; the security headers are on every
    answer, and no CORS header on any."""
    with inspector(store_path) as base, httpx.Client(base_url=base) as client:
        port = base.rsplit(":", 1)[1]
        foreign = client.get(f"/?token={PAGE_TOKEN}", headers={"host": f"rebind.test:{port}"})
        assert foreign.status_code == 421
        assert client.get("/api/events").status_code == 401
        assert client.get("/api/events?token=wrong").status_code == 401
        entered = client.get(f"/?token={PAGE_TOKEN}", follow_redirects=False)
        assert entered.status_code == 303 and entered.headers["location"] == "/"
        cookie = entered.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = client.get("/", headers={"origin": "https://evil.test"})  # the cookie, kept
        assert page.status_code == 200 and "avasam inspector" in page.text
        refused = httpx.get(f"{base}/api/events")
        for answer in (foreign, entered, page, refused):
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers[name] == value
            assert not [h for h in answer.headers if h.startswith("access-control-")]
        for host in ("127.0.0.1", "localhost", "[::1]"):
            allowed = client.get("/api/counts", headers={"host": f"{host}:{port}"})
            assert allowed.status_code == 200


def test_the_list_is_paged_and_filtered_from_the_store(store_path: Path) -> None:
    with (
        inspector(store_path) as base,
        httpx.Client(base_url=base, cookies={cookie_for(base): PAGE_TOKEN}) as client,
    ):
        first = client.get("/api/events").json()["events"]
        assert len(first) == 100 and first[0]["requestId"] == "bad"
        second = client.get(f"/api/events?before={first[-1]['id']}").json()["events"]
        assert second[0]["id"] == first[-1]["id"] - 1
        assert [e["requestId"] for e in client.get("/api/events?kind=price").json()["events"]] == [
            "p-1"
        ]
        rejected = client.get("/api/events?status=rejected").json()["events"]
        assert [e["requestId"] for e in rejected] == ["bad"]
        by_id = client.get("/api/events?request_id=r-007").json()["events"]
        assert [e["requestId"] for e in by_id] == ["r-007"]
        by_sku = client.get(f"/api/events?sku={SKU}").json()["events"]
        assert len(by_sku) == 100  # every generated update has it
        assert client.get("/api/events?sku=NOPE").json()["events"] == []


def test_the_detail_shows_the_token_items_and_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with open_store(path) as store:
        store.insert([stored("d-1")], Plan({"stock": "http://127.0.0.1:9/shop"}))
    with (
        inspector(path) as base,
        httpx.Client(base_url=base, cookies={cookie_for(base): PAGE_TOKEN}) as client,
    ):
        detail = client.get("/api/events/1").json()
        assert client.get("/api/events/99").status_code == 404
    assert detail["jwt"]["header"]["alg"] == "HS256"
    assert detail["jwt"]["claims"]["requestId"] == "d-1"
    assert isinstance(detail["skew_seconds"], float)
    assert detail["items"][0]["sku"] == SKU
    (job,) = detail["deliveries"]
    assert job["job"] == "forward" and job["state"] == "pending" and job["log"] == []


def test_the_stream_sends_new_rows_and_resumes_from_the_last_id(store_path: Path) -> None:
    with (
        inspector(store_path) as base,
        httpx.Client(base_url=base, cookies={cookie_for(base): PAGE_TOKEN}) as client,
    ):
        with client.stream("GET", "/api/stream?after=251", timeout=10) as stream:
            lines = stream.iter_lines()
            with open_store(store_path) as store:
                store.insert([stored("live-1")])
            seen = []
            for line in lines:
                if line.startswith("id: "):
                    seen.append(int(line[4:]))
                if line.startswith("data: "):
                    assert json.loads(line[6:])["requestId"] in ("bad", "live-1")
                if 253 in seen:
                    break
        assert seen == [252, 253]
        with client.stream(
            "GET", "/api/stream", headers={"last-event-id": "252"}, timeout=10
        ) as again:
            for line in again.iter_lines():
                if line.startswith("id: "):
                    assert line == "id: 253"
                    break


def test_the_streams_rows_keep_any_text_on_one_data_line(store_path: Path) -> None:
    """A detail with a line break and non-ASCII text still makes one `data:` line of
    JSON (a raw line break would end the server-sent event there)."""
    detail = "naïve \u2013 first line\nsecond line"
    with (
        inspector(store_path) as base,
        httpx.Client(base_url=base, cookies={cookie_for(base): PAGE_TOKEN}) as client,
        client.stream("GET", "/api/stream?after=252", timeout=10) as stream,
    ):
        lines = stream.iter_lines()
        with open_store(store_path) as store:
            store.insert([stored("odd", status="rejected", reason="bad", detail=detail)])
        data = next(line for line in lines if line.startswith("data: "))
    row = json.loads(data.removeprefix("data: "))
    assert row["requestId"] == "odd" and row["detail"] == detail


def test_listen_serves_the_inspector_on_its_own_port(isolated_home: Path) -> None:
    """The banner prints the page's URL (port + 1 by default); a busy port is said, and
    the listener carries on without it."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        env = {"AVASAM_VERIFICATION_TOKEN": TOKEN}
        listener = ListenProcess(isolated_home, "--inspect-port", str(free_port()), env=env)
        blocked = ListenProcess(
            isolated_home, "--inspect-port", str(busy.getsockname()[1]), env=env
        )
        try:
            url = _page_url(listener)
            page = httpx.get(url, follow_redirects=True, timeout=10)
            assert page.status_code == 200 and "avasam inspector" in page.text
            assert httpx.get(url.split("?")[0], timeout=10).status_code == 401
        finally:
            listener.stop()
            _, _, blocked_err = blocked.stop()
    finally:
        busy.close()
    assert "no inspector: port" in blocked_err and "already in use" in blocked_err
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=1)
        pytest.fail("the inspector outlived its listener")


# --- In a real browser -------------------------------------------------------------
def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (it is in the test extra)")
    return found


def test_in_a_browser_rows_appear_live_filters_and_detail_work_and_stored_html_stays_inert(
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = _chromium()
    path = tmp_path / "events.sqlite3"
    with open_store(path) as store:
        store.insert([stored("first-1")])
        hostile = stored("<img src=x onerror=\"document.title='pwned'\">", status="rejected")
        hostile.reason, hostile.detail = "bad_signature", "<script>document.title='pwned'</script>"
        store.insert([hostile])
    with inspector(path) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{base}/?token={PAGE_TOKEN}")
        rows = page.locator("#list tbody tr")
        expect(rows).to_have_count(2)
        with open_store(path) as store:
            store.insert([stored("live-2", "price")])
        expect(rows.first).to_contain_text("live-2", timeout=5000)  # live, over SSE
        rows.filter(has_text="onerror").click()
        expect(page.locator("#detail")).to_contain_text("<script>document.title='pwned'</script>")
        assert page.title() == "avasam inspector"  # shown as text, never run
        assert page.locator("#detail img, #list img, script:not([src])").count() == 0
        rows.filter(has_text="first-1").click()
        expect(page.locator("#detail")).to_contain_text("JWT (decoded, not verified)")
        expect(page.locator("#detail")).to_contain_text(SKU)
        page.select_option("select[name=kind]", "price")
        page.click("#filters button[type=submit]")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("live-2")
        assert "kind=price" in page.url  # the filter lives in the URL
        page.keyboard.press("Escape")
        browser.close()


def test_in_a_browser_a_rebound_host_and_a_missing_token_are_refused(store_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with inspector(store_path) as base, sync_playwright() as playwright:
        port = base.rsplit(":", 1)[1]
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--host-resolver-rules=MAP rebind.test 127.0.0.1"],
        )
        page = browser.new_page()
        rebound = page.goto(f"http://rebind.test:{port}/?token={PAGE_TOKEN}")
        assert rebound is not None and rebound.status == 421
        bare = page.goto(f"{base}/")
        assert bare is not None and bare.status == 401
        browser.close()


def test_ctrl_c_with_a_tab_open_exits_fast(isolated_home: Path) -> None:
    """`avasam inspect` with a page open (its event stream connected): SIGINT ends the
    stream at once, so uvicorn's graceful shutdown (1 s) never has to cancel it."""
    import signal
    import subprocess
    import sys

    from playwright.sync_api import sync_playwright

    executable = _chromium()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "avasam_cli", "inspect", "--port", str(port)],
        env={**os.environ, "AVASAM_INSPECTOR_TOKEN": PAGE_TOKEN}, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            time.sleep(0.05)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/?token={PAGE_TOKEN}")
            page.wait_for_timeout(300)  # the page's stream is open
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            process.wait(10)
            took = time.monotonic() - started
            browser.close()
    finally:
        process.kill()
        _, err = process.communicate()
    assert "graceful shutdown exceeded" not in err.decode(), err
    assert took < 10, took


# --- Actions ----------------------------------------------------------------------
@contextlib.contextmanager
def listener_and_inspector(home: Path) -> Iterator[tuple[ListenProcess, str]]:
    """A real listener with one verified update stored, and the inspector over its store,
    replaying to it."""
    listener = ListenProcess(home, env={"AVASAM_VERIFICATION_TOKEN": TOKEN})
    try:
        posted = httpx.post(
            f"{listener.url}/webhooks/stock", content=signed_body(request_id="act-1"),
            headers={"content-type": "application/json"}, timeout=10,
        )  # fmt: skip
        assert posted.json()["status"] == "ok"
        receiver = {kind: f"{listener.url}/webhooks/{kind}" for kind in ("stock", "price")}
        port = free_port()
        store = home / "data" / "events.sqlite3"
        with serving(create_inspector(store, PAGE_TOKEN, port, receiver, TOKEN), port) as base:
            yield listener, base
    finally:
        listener.stop()


def _stored_ids(home: Path) -> list[str]:
    from tests.helpers import store_rows

    return [row["request_id"] for row in store_rows(home / "data" / "events.sqlite3")]


def test_actions_need_post_our_origin_and_the_csrf_token(isolated_home: Path) -> None:
    with listener_and_inspector(isolated_home) as (_, base), httpx.Client(base_url=base) as client:
        client.cookies.set(cookie_for(base), PAGE_TOKEN)
        csrf = client.get("/api/session").json()["csrf"]
        good = {"origin": base, "x-avasam-csrf": csrf}
        refusals = [
            client.get("/api/events/1/replay", headers=good),
            client.post("/api/events/1/replay", headers={"origin": base}),
            client.post("/api/events/1/replay", headers={**good, "x-avasam-csrf": "forged"}),
            client.post("/api/events/1/replay", headers={**good, "origin": "https://evil.test"}),
            client.post("/api/events/1/replay", headers={**good, "sec-fetch-site": "cross-site"}),
        ]
        assert [r.status_code for r in refusals] == [403] * 5
        assert _stored_ids(isolated_home) == ["act-1"]
        replayed = client.post("/api/events/1/replay", headers=good).json()
        assert replayed["status"] == 200 and '"status":"duplicate"' in replayed["answer"]
        resigned = client.post("/api/events/1/resign", headers=good, json={"items": []}).json()
        assert resigned["status"] == 200 and '"status":"ok"' in resigned["answer"]
        raw = client.get("/api/events/1/raw")
        assert raw.headers["content-disposition"] == 'attachment; filename="event-1.json"'
    stored = _stored_ids(isolated_home)
    assert stored[:2] == ["act-1", "act-1"] and stored[2] == resigned["request_id"]


def test_in_a_browser_the_replay_button_works_and_other_sites_cannot_press_it(
    isolated_home: Path, tmp_path: Path
) -> None:
    """From the page, Replay is answered duplicate by the listener.  A page on another
    origin trying a form POST, a no-cors fetch and a CORS fetch replays nothing."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from playwright.sync_api import expect, sync_playwright

    executable = _chromium()
    with listener_and_inspector(isolated_home) as (_, base), sync_playwright() as playwright:
        target = f"{base}/api/events/1/replay"
        attack = tmp_path / "attack.html"
        attack.write_text(
            f'<form id=f method=post action="{target}"><input name=a value=1></form>'
            f"<script>fetch('{target}', "
            "{method: 'POST', mode: 'no-cors', credentials: 'include'});"
            f"fetch('{target}', {{method: 'POST', credentials: 'include', headers: "
            "{'x-avasam-csrf': 'guess'}}).catch(() => {});"
            "setTimeout(() => document.getElementById('f').submit(), 300);</script>"
        )

        class Quiet(SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

            def log_message(self, *_: object) -> None:
                pass

        evil = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=evil.serve_forever, args=(0.05,), daemon=True).start()
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{base}/?token={PAGE_TOKEN}")  # the seller's tab: the cookie is set
            page.locator("#list tbody tr").first.click()
            page.get_by_role("button", name="Replay to the receiver (r)").click()
            expect(page.locator("#result")).to_contain_text("duplicate")
            assert _stored_ids(isolated_home) == ["act-1", "act-1"]
            other = browser.new_page()
            other.goto(f"http://localhost:{evil.server_address[1]}/attack.html")
            other.wait_for_timeout(1500)
        finally:
            browser.close()
            evil.shutdown()
            evil.server_close()
    assert _stored_ids(isolated_home) == ["act-1", "act-1"]  # nothing more was replayed


def test_forward_and_acknowledge_actions(tmp_path: Path) -> None:
    """Replay to the configured forward target (with the outbox's marker headers), and
    acknowledge to a real stand-in for Avasam, noted on the stored event; a test event
    from send-test is refused."""
    from avasam_cli.api.client import AvasamClient, TokenCache
    from tests.standin import running_avasam
    from tests.test_outbox import Shop

    path = tmp_path / "events.sqlite3"
    test_event = stored("t-1")
    test_event.headers_json = json.dumps([["x-avasam-cli-test", "1"]])
    with open_store(path) as store:
        store.insert([stored("f-1"), test_event])
    shop = Shop()
    shop.start()
    port = free_port()
    try:
        with running_avasam() as avasam, AvasamClient(
            avasam.url, avasam.consumer_key, avasam.secret_key, TokenCache(tmp_path / "t.json"),
            "test",
        ) as api:  # fmt: skip
            app = create_inspector(path, PAGE_TOKEN, port, forward={"stock": shop.url},
                                   acknowledge=api.acknowledge)  # fmt: skip
            with serving(app, port) as base, httpx.Client(base_url=base) as client:
                client.cookies.set(cookie_for(base), PAGE_TOKEN)
                headers = {
                    "origin": base,
                    "x-avasam-csrf": client.get("/api/session").json()["csrf"],
                }
                forwarded = client.post("/api/events/1/forward", headers=headers).json()
                acked = client.post("/api/events/1/acknowledge", headers=headers).json()
                refused = client.post("/api/events/2/acknowledge", headers=headers)
                unknown = client.post("/api/events/1/delete", headers=headers)
            acks = [r.body for r in avasam.received if "Acknowledge" in r.path]
    finally:
        shop.stop()
    assert forwarded["status"] == 200 and shop.received == ["f-1"]
    assert acked["status"] == 200 and acks == [{"requestId": "f-1"}]
    assert refused.status_code == 409 and "never acknowledged" in refused.json()["detail"]
    assert unknown.status_code == 404
    with open_store(path, read_only=True) as store:
        event = store.find("f-1")
    assert event is not None and event.ack_status == "acknowledged"


def test_in_a_browser_re_sign_with_edited_items_and_acknowledge_all_pending(
    isolated_home: Path, avasam: Any
) -> None:
    """Re-sign as new: the edited items reach the listener as a new verified update.
    Acknowledge all pending: every pending stock update is acknowledged to a real
    stand-in for Avasam (through the outbox, as `avasam ack --pending` does)."""
    from playwright.sync_api import expect, sync_playwright

    from avasam_cli.api.client import AvasamClient, TokenCache
    from tests.helpers import store_rows

    executable = _chromium()
    listener = ListenProcess(isolated_home, env={"AVASAM_VERIFICATION_TOKEN": TOKEN})
    store = isolated_home / "data" / "events.sqlite3"
    try:
        for request_id in ("ack-1", "ack-2"):
            httpx.post(f"{listener.url}/webhooks/stock", content=signed_body(request_id=request_id),
                       headers={"content-type": "application/json"}, timeout=10)  # fmt: skip
        receiver = {kind: f"{listener.url}/webhooks/{kind}" for kind in ("stock", "price")}
        port = free_port()
        with AvasamClient(avasam.url, avasam.consumer_key, avasam.secret_key,
                          TokenCache(isolated_home / "t.json"), "test") as api:  # fmt: skip
            app = create_inspector(store, PAGE_TOKEN, port, receiver, TOKEN,
                                   acknowledge=api.acknowledge)  # fmt: skip
            with serving(app, port) as base, sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=executable, args=["--no-sandbox"]
                )
                page = browser.new_page()
                page.goto(f"{base}/?token={PAGE_TOKEN}")
                page.locator("#list tbody tr", has_text="ack-1").click()
                page.get_by_role("button", name="Re-sign as new…").click()
                page.fill("#items-editor", '[{"sku": "EDITED-1", "quantity": 3, '
                          '"updatedOn": "2026-11-28T10:00:00.0000000+00:00"}]')  # fmt: skip
                page.get_by_role("button", name="Send re-signed").click()
                expect(page.locator("#result")).to_contain_text('"status":"ok"')
                page.get_by_role("button", name="Acknowledge all pending").click()
                expect(page.locator("#ack-all-result")).to_contain_text(
                    "Acknowledged 3 of 3.", timeout=20000
                )
                browser.close()
    finally:
        listener.stop()
    rows = {row["request_id"]: row for row in store_rows(store)}
    new = [row for rid, row in rows.items() if rid not in ("ack-1", "ack-2")]
    assert len(new) == 1 and new[0]["status"] == "verified"
    assert json.loads(new[0]["body"])["data"][0]["sku"] == "EDITED-1"
    acked = sorted(r.body["requestId"] for r in avasam.received if "Acknowledge" in r.path)
    assert acked == sorted(["ack-1", "ack-2", new[0]["request_id"]])


def test_in_a_browser_forward_acknowledge_download_and_curl(
    isolated_home: Path, tmp_path: Path, avasam: Any
) -> None:
    """From the detail view: replay to the forward target (the shop gets it), acknowledge
    (the stand-in gets it), download the raw body (the stored bytes), copy as curl (the
    command shown names the receiver and carries the body)."""
    from playwright.sync_api import expect, sync_playwright

    from avasam_cli.api.client import AvasamClient, TokenCache
    from tests.test_outbox import Shop

    executable = _chromium()
    store = isolated_home / "data" / "events.sqlite3"
    body = signed_body(request_id="b-1")
    with open_store(store) as opened:
        opened.insert([Event("2026-11-28T10:00:00.000+00:00", "stock", "verified", 200,
                             json.dumps([["content-type", "application/json"]]), body,
                             request_id="b-1", item_count=1)])  # fmt: skip
    shop = Shop()
    shop.start()
    port = free_port()
    receiver = {"stock": "http://127.0.0.1:9/webhooks/stock"}
    try:
        with AvasamClient(avasam.url, avasam.consumer_key, avasam.secret_key,
                          TokenCache(tmp_path / "t.json"), "test") as api:  # fmt: skip
            forward = {"stock": shop.url}
            app = create_inspector(
                store, PAGE_TOKEN, port, receiver, TOKEN, forward, api.acknowledge
            )
            with serving(app, port) as base, sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=executable, args=["--no-sandbox"]
                )
                page = browser.new_page(accept_downloads=True)
                page.goto(f"{base}/?token={PAGE_TOKEN}")
                page.locator("#list tbody tr").first.click()
                page.get_by_role("button", name=f"Replay to {shop.url}").click()
                expect(page.locator("#result")).to_contain_text("forward: 200")
                page.get_by_role("button", name="Acknowledge", exact=True).click()
                expect(page.locator("#result")).to_contain_text("acknowledge: 200")
                said = page.locator("#result").text_content() or ""
                assert "200 200" not in said and "200  200" not in said, said  # said once
                with page.expect_download() as download:
                    page.get_by_text("Download raw body").click()
                saved = tmp_path / "raw.json"
                download.value.save_as(saved)
                page.get_by_role("button", name="Copy as curl").click()
                curl = page.locator("#result").text_content() or ""
                browser.close()
    finally:
        shop.stop()
    assert shop.received == ["b-1"]
    assert [r.body for r in avasam.received if "Acknowledge" in r.path] == [{"requestId": "b-1"}]
    assert saved.read_bytes() == body
    assert curl.startswith("curl -X POST 'http://127.0.0.1:9/webhooks/stock'") and "b-1" in curl


def _page_url(listener: ListenProcess) -> str:
    deadline = time.monotonic() + 15
    while b"?token=" not in listener.captured["err"]:
        assert time.monotonic() < deadline, listener.captured["err"].decode()
        time.sleep(0.05)
    url = next(word for word in listener.captured["err"].decode().split() if "?token=" in word)
    while True:  # the URL is told as the inspector starts; it may not listen yet
        with contextlib.suppress(httpx.TransportError):
            httpx.get(url, timeout=2)
            return url
        assert time.monotonic() < deadline, "the inspector page did not answer"
        time.sleep(0.05)


def test_in_a_browser_actions_lead_the_detail_and_a_stopped_listener_is_said_and_rejoined(
    isolated_home: Path,
) -> None:
    """The detail's actions come first, their results beside them; replaying an expired
    update points to Re-sign; the listener stopped, the page says so, and once it is
    started again the page reconnects by itself (same URL, a new CSRF token taken up)."""
    from datetime import UTC, datetime, timedelta

    from playwright.sync_api import expect, sync_playwright

    executable = _chromium()
    inspect_port = str(free_port())
    env = {"AVASAM_VERIFICATION_TOKEN": TOKEN}
    listener = ListenProcess(isolated_home, "--inspect-port", inspect_port, env=env)
    again: ListenProcess | None = None
    try:
        url = _page_url(listener)
        late = datetime.now(UTC) - timedelta(hours=2)  # refused as expired, so stored
        httpx.post(f"{listener.url}/webhooks/stock", content=signed_body(request_id="old-1",
                   now=late), headers={"content-type": "application/json"}, timeout=10)  # fmt: skip
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url)
            page.locator("#list tbody tr", has_text="old-1").click()
            expect(page.locator("#detail")).to_contain_text("Verdict")  # the detail is drawn
            order = page.eval_on_selector_all(
                "#detail > *", "nodes => nodes.map(n => n.className || n.textContent)"
            )
            assert order[1] == "actions" and order.index("Verdict") > 1, order
            page.keyboard.press("r")
            result = page.locator("#result")
            expect(result).to_contain_text("Refused as expired")
            expect(result).to_contain_text('"Re-sign as new" signs the items afresh')
            expect(page.locator("#resign")).to_have_class("suggested")

            rows = page.locator("#list tbody tr")
            expect(rows).to_have_count(2)  # the update and its replay, refused again
            notice = page.locator("#stream-state")
            expect(notice).to_be_hidden()
            listener.stop()
            expect(notice).to_contain_text("The live stream dropped", timeout=10000)
            again = ListenProcess(isolated_home, "--inspect-port", inspect_port, env=env)
            assert _page_url(again) == url  # the kept token: the same page URL
            expect(notice).to_contain_text("Reconnected", timeout=15000)
            httpx.post(f"{again.url}/webhooks/stock", content=signed_body(request_id="new-1"),
                       headers={"content-type": "application/json"}, timeout=10)  # fmt: skip
            row = page.locator("#list tbody tr", has_text="new-1")
            expect(row).to_have_count(1, timeout=10000)  # live again
            expect(rows).to_have_count(3)  # resumed after the last row shown: none repeated
            row.click()
            page.get_by_role("button", name="Replay to the receiver (r)").click()
            expect(result).to_contain_text("replay: 200")  # the new CSRF token was taken up
            expect(result).to_contain_text("Answered duplicate")
            browser.close()
    finally:
        listener.stop()
        if again is not None:
            again.stop()
    kept = isolated_home / "cache" / "inspector-token"
    assert kept.read_text().strip() in url and (kept.stat().st_mode & 0o777) == 0o600
