"""The receiver app through Starlette's TestClient: every answer, and what is stored."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from avasam_cli.receiver.app import ReceiverSettings, create_app
from avasam_cli.store.base import open_store
from avasam_cli.webhooks import sign as signing
from tests.helpers import JSON_HEADERS, TOKEN, signed_body, store_rows


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "events.sqlite3"


@pytest.fixture
def client(store_path: Path) -> Iterator[TestClient]:
    settings = ReceiverSettings(verification_token=TOKEN, max_body_size=64 * 1024)
    with TestClient(create_app(settings, store_path)) as test_client:
        yield test_client


def stored(store_path: Path) -> list[Any]:
    return store_rows(store_path)


def test_verified_update_is_stored_before_the_answer(client: TestClient, store_path: Path) -> None:
    """200 ok with the request id; the row is committed by the time the answer arrives."""
    body = signed_body(count=2, request_id="r-1")
    response = client.post("/webhooks/stock", content=body, headers=JSON_HEADERS)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "requestId": "r-1"}
    (row,) = stored(store_path)
    assert (row["kind"], row["status"], row["request_id"], row["item_count"]) == (
        "stock",
        "verified",
        "r-1",
        2,
    )
    assert row["body"] == body


def test_price_endpoint(client: TestClient, store_path: Path) -> None:
    """The price endpoint verifies price items."""
    response = client.post("/webhooks/price", content=signed_body("price"), headers=JSON_HEADERS)
    assert response.status_code == 200, response.text
    assert stored(store_path)[0]["kind"] == "price"


def test_duplicate_is_answered_and_recorded(client: TestClient, store_path: Path) -> None:
    """The same request id again: 200 duplicate, recorded as such.  (The same id for the
    other kind is refused: see test_a_stock_token_is_refused_on_the_price_endpoint.)"""
    body = signed_body(request_id="dup-1")
    client.post("/webhooks/stock", content=body, headers=JSON_HEADERS)
    again = client.post("/webhooks/stock", content=body, headers=JSON_HEADERS)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "requestId": "dup-1"}
    assert [row["status"] for row in stored(store_path)] == ["verified", "duplicate"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{oops", 400, "malformed_json"),
        (b"[1, 2]", 400, "invalid_payload"),
        (signed_body(key="a-different-key-that-is-long-enough-000"), 401, "bad_signature"),
    ],
)
def test_refusals(
    client: TestClient, store_path: Path, body: bytes, status: int, reason: str
) -> None:
    """400 for unreadable bodies, 401 for untrusted ones; recorded as rejected."""
    response = client.post("/webhooks/stock", content=body, headers=JSON_HEADERS)
    assert response.status_code == status
    assert response.json()["error"] == reason and response.json()["detail"]
    (row,) = stored(store_path)
    assert (row["status"], row["reason"], row["http_status"]) == ("rejected", reason, status)


def test_wrong_method_is_405(client: TestClient, store_path: Path) -> None:
    """Other methods on a webhook path: 405 with Allow: POST, recorded."""
    response = client.get("/webhooks/stock")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"
    assert stored(store_path)[0]["reason"] == "method_not_allowed"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_non_json_is_415(client: TestClient, content_type: str) -> None:
    """A body that is not declared JSON is 415."""
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/webhooks/stock", content=signed_body(), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_charset_parameter_is_fine(client: TestClient) -> None:
    """application/json; charset=utf-8 is JSON."""
    headers = {"content-type": "Application/JSON; charset=utf-8"}
    assert client.post("/webhooks/stock", content=signed_body(), headers=headers).status_code == 200


def test_body_over_limit_is_413(client: TestClient, store_path: Path) -> None:
    """Over the limit with Content-Length: 413, and nothing of the body stored."""
    response = client.post("/webhooks/stock", content=b"x" * (64 * 1024 + 1), headers=JSON_HEADERS)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert stored(store_path)[0]["body"] == b""


def test_body_over_limit_without_length_is_413(client: TestClient) -> None:
    """Streamed (chunked) bodies are cut off at the limit too."""

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    response = client.post("/webhooks/stock", content=chunks(), headers=JSON_HEADERS)
    assert response.status_code == 413


def test_health_and_unknown_paths(client: TestClient) -> None:
    """GET /healthz answers ok; unknown paths are a JSON 404."""
    assert client.get("/healthz").json()["status"] == "ok"
    missing = client.post("/elsewhere", content=b"{}", headers=JSON_HEADERS)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_store_failure_is_503(client: TestClient, store_path: Path) -> None:
    """When the store cannot write, a verified update is answered 503 (Avasam retries)."""
    with sqlite3.connect(store_path) as conn:
        conn.execute("DROP TABLE events")
    response = client.post("/webhooks/stock", content=signed_body(), headers=JSON_HEADERS)
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    refused = client.post("/webhooks/stock", content=b"{", headers=JSON_HEADERS)
    assert refused.status_code == 400, "a refusal is still a refusal"


def test_headers_are_stored_without_secrets(client: TestClient, store_path: Path) -> None:
    """Credential-bearing headers are redacted in the store."""
    headers = {
        **JSON_HEADERS,
        "authorization": "Bearer s3cr3t-value",
        "x-api-key": "k3y-value",
        "x-password": "pa55",
        "x-avasam-sig": "s1g",
        "cookie": "session=c00kie",
        "user-agent": "Avasam",
    }
    client.post("/webhooks/stock", content=signed_body(), headers=headers)
    saved = dict(json.loads(stored(store_path)[0]["headers"]))
    for name in ("authorization", "x-api-key", "x-password", "x-avasam-sig", "cookie"):
        assert saved[name] == "[redacted]", name
    assert saved["user-agent"] == "Avasam"


def test_no_secret_in_any_answer(client: TestClient, store_path: Path) -> None:
    """Neither the verification token nor the JWT appears in any answer or stored detail."""
    bodies = [
        signed_body(),
        signed_body(key="another-long-enough-key-abcdefghijklmnopq"),
        signed_body(expires_in=0),
        b"{",
        b"[]",
    ]
    texts = [client.post("/webhooks/stock", content=b, headers=JSON_HEADERS).text for b in bodies]
    tokens = [json.loads(b)["token"] for b in bodies if b.startswith(b'{"')]
    for row in stored(store_path):
        texts.append(f"{row['detail']} {row['headers']}")
    for text in texts:
        assert TOKEN not in text
        assert not any(token in text for token in tokens)


def test_rows_get_consecutive_ids_in_arrival_order(client: TestClient, store_path: Path) -> None:
    """Each request is one row, in the order answered, whatever its outcome."""
    body = signed_body(request_id="order")
    for raw in (body, b"{", body):
        client.post("/webhooks/stock", content=raw, headers=JSON_HEADERS)
    rows = stored(store_path)
    assert [row["status"] for row in rows] == ["verified", "rejected", "duplicate"]
    assert [row["id"] for row in rows] == [1, 2, 3]


def test_custom_paths(store_path: Path) -> None:
    """--stock-path and --price-path move the endpoints."""
    settings = ReceiverSettings(TOKEN, paths={"stock": "/a/stock", "price": "/a/price"})
    with TestClient(create_app(settings, store_path)) as custom:
        assert (
            custom.post("/a/stock", content=signed_body(), headers=JSON_HEADERS).status_code == 200
        )
        assert (
            custom.post("/webhooks/stock", content=signed_body(), headers=JSON_HEADERS).status_code
            == 404
        )


def reads(*chunks: bytes) -> Callable[[memoryview], int]:
    """A socket's recv_into over `chunks` as they arrive: as much of the next one as the
    buffer holds (the rest on the next read), then 0 (the stream ended)."""
    waiting = [bytearray(chunk) for chunk in chunks]

    def receive_into(buffer: memoryview) -> int:
        if not waiting:
            return 0
        size = min(len(buffer), len(waiting[0]))
        buffer[:size] = waiting[0][:size]
        del waiting[0][:size]
        if not waiting[0]:
            waiting.pop(0)
        return size

    return receive_into


def test_a_frame_to_the_writer_carries_every_field_as_it_was() -> None:
    """A request's frame and an outcome's come back whole from the bytes that arrived:
    a timestamp's every digit, text beyond ASCII, every byte value, None and booleans;
    frames still incomplete stay in the buffer for the next read."""
    from avasam_cli.receiver.writer import frame, split_frames
    from avasam_cli.store.events import WireRequest

    request = WireRequest(1765152000.1234567, "stock", "rejected", 401, "bad_signature",
                          "détail — ünïcode", "ré-42", None, True, "[::1]:8787",
                          [(b"x-raw", bytes(range(256))), (b"content-type", b"application/json")],
                          b'{"requestId":"\\u00e9"}' + bytes(range(256)))  # fmt: skip
    outcome = [(7, 2**62, "duplicate", None), (8, None, "rejected", "disk full: ünïcode")]
    whole = frame((7, *request)) + frame(outcome)
    buffer = bytearray(whole + frame("the next one")[:-3])
    (seq, *fields), outcomes = split_frames(buffer)
    assert (seq, WireRequest(*fields)) == (7, request)
    assert [tuple(row) for row in outcomes] == outcome
    assert bytes(buffer) == frame("the next one")[:-3]


def test_store_writer_commits_a_burst_larger_than_a_batch(tmp_path: Path) -> None:
    """3,200 requests arriving at once: all stored and answered, in bounded batches.

    Some SQLite builds allow 32,766 variables per statement (this one 250,000): a
    batch of 3,200 eleven-column rows would not fit there.  First the commit loop with
    the whole burst in one read, then the real writer process with all of it sent in
    one write, before it has started reading.
    """
    import asyncio

    from avasam_cli.receiver.writer import StoreWriter, commit_loop, frame, split_frames
    from avasam_cli.store.events import WireRequest
    from avasam_cli.store.sqlite import MAX_BATCH

    def request(seq: int, prefix: str) -> WireRequest:
        return WireRequest(1.0e9, "stock", "verified", 200, None, None, f"{prefix}-{seq}", 1,
                           False, None, [(b"content-type", b"application/json")],
                           b"{}")  # fmt: skip

    path = tmp_path / "burst.sqlite3"
    burst = b"".join(frame((seq, *request(seq, "loop"))) for seq in range(3200))
    answers = bytearray()
    with open_store(path, bulk_writer=True) as store:
        commit_loop(store, lambda _: None, reads(burst), answers.extend)
    batches = split_frames(answers)
    assert sum(len(batch) for batch in batches) == 3200
    assert max(len(batch) for batch in batches) <= MAX_BATCH

    async def through_the_writer() -> list[object]:
        writer = StoreWriter(path)
        await writer.start()
        try:
            return list(await asyncio.gather(
                *(writer.record(request(seq, "process")) for seq in range(3200))
            ))  # fmt: skip
        finally:
            await writer.close()

    outcomes = asyncio.run(through_the_writer())
    assert len(outcomes) == 3200
    assert all(
        o.id and o.status == "verified" and o.store_error is None  # type: ignore[attr-defined]
        for o in outcomes
    )
    with open_store(path) as store:
        assert store.count_by_status() == {"verified": 6400}


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
def test_the_writer_starts_with_malloc_thresholds_that_keep_its_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store writer is started with glibc's thresholds at the values it would grow to
    (no page faults per batch of large bodies); a value set in the environment is kept."""
    import asyncio

    from avasam_cli.receiver.writer import MALLOC_THRESHOLDS, StoreWriter

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")

    async def writer_environment() -> dict[str, str]:
        writer = StoreWriter(tmp_path / "env.sqlite3")
        await writer.start()
        try:
            assert writer._watched is not None
            raw = Path(f"/proc/{writer._watched.process.pid}/environ").read_bytes()
        finally:
            await writer.close()
        return dict(entry.decode().partition("=")[::2] for entry in raw.split(b"\0") if entry)

    seen = asyncio.run(writer_environment())
    assert seen["MALLOC_MMAP_THRESHOLD_"] == MALLOC_THRESHOLDS["MALLOC_MMAP_THRESHOLD_"]
    assert seen["MALLOC_TRIM_THRESHOLD_"] == "12345"


def test_a_parent_gone_without_closing_ends_the_commit_loop_quietly(tmp_path: Path) -> None:
    """A listener killed with answers unread resets the link instead of closing it: the
    writer ends as it does on a close (no traceback on the shared terminal), and what it
    had read is committed first."""
    from avasam_cli.receiver.writer import commit_loop, frame
    from avasam_cli.store.events import WireRequest

    arrived = frame((1, *WireRequest(1.0e9, "stock", "verified", 200, None, None, "gone-1", 1,
                                     False, None, [], b"{}")))  # fmt: skip
    given = [arrived]

    def receive_into(view: memoryview) -> int:
        if not given:
            raise ConnectionResetError(104, "Connection reset by peer")
        data = given.pop()
        view[: len(data)] = data
        return len(data)

    def send(_: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")  # nobody is left to answer

    path = tmp_path / "gone.sqlite3"
    with open_store(path, bulk_writer=True) as store:
        commit_loop(store, lambda _: None, receive_into, send)
    assert [row["request_id"] for row in store_rows(path)] == ["gone-1"]

    given.append(arrived)  # a reset while reading, the answer sent: the same end
    with open_store(tmp_path / "read.sqlite3", bulk_writer=True) as store:
        commit_loop(store, lambda _: None, receive_into, lambda _: None)


def test_frames_cut_anywhere_across_reads_are_committed_whole(tmp_path: Path) -> None:
    """The commit loop reads into one buffer of its own: a frame cut between reads at any
    byte, and a body larger than the buffer itself, still arrive whole and in order."""
    from avasam_cli.receiver.writer import LINK_BUFFER, commit_loop, frame, split_frames
    from avasam_cli.store.events import WireRequest

    bodies = [b'{"n":%d}' % seq for seq in range(40)]
    bodies[17] = b'{"pad":"' + b"x" * (LINK_BUFFER * 2 + 5) + b'"}'
    refused = (1.0e9, "stock", "rejected", 400, "invalid_payload", None, None, None, False)
    frames = [
        frame((seq, *WireRequest(*refused, None, [], body))) for seq, body in enumerate(bodies)
    ]
    stream = b"".join(frames)
    # Reads of 97 bytes, cutting frames wherever they fall, up to the large body; then
    # the rest at once: reads that fill the buffer, the large body across three of them.
    small = sum(map(len, frames[:17])) + 500
    chunks = [stream[start : start + 97] for start in range(0, small, 97)]
    chunks.append(stream[len(chunks) * 97 :])
    answers = bytearray()
    path = tmp_path / "cut.sqlite3"
    with open_store(path, bulk_writer=True) as store:
        commit_loop(store, lambda _: None, reads(*chunks), answers.extend)
    assert [seq for batch in split_frames(answers) for seq, *_ in batch] == list(range(40))
    assert [row["body"] for row in store_rows(path)] == bodies


def nested(depth: int, inner: str, brackets: str = "{}") -> bytes:
    opening = '{"a":' if brackets == "{}" else "["
    closing = "}" if brackets == "{}" else "]"
    return (opening * depth + inner + closing * depth).encode()


DEPTHS = [1, 2, 10, 100, 253, 254, 255, 256, 500, 999, 1000, 1001, 1023, 1024, 1025, 2000, 5000]


def test_deep_nesting_is_refused_and_stored(tmp_path: Path) -> None:
    """Any depth from 1 to 5,000, with or without escapes, objects or lists: a 400, stored."""
    store_path = tmp_path / "deep.sqlite3"
    settings = ReceiverSettings(verification_token=TOKEN, max_body_size=64 * 1024)
    sent = 0
    with TestClient(create_app(settings, store_path)) as client:
        for depth in DEPTHS:
            for inner in ("1", '"\\n"', '{"k\\u0041": 1}'):
                for brackets in ("{}", "[]"):
                    answer = client.post(
                        "/webhooks/stock",
                        content=nested(depth, inner, brackets),
                        headers=JSON_HEADERS,
                    )
                    sent += 1
                    assert answer.status_code == 400, (depth, inner, brackets, answer.text)
                    assert answer.json()["error"] in ("malformed_json", "invalid_payload")
    rows = store_rows(store_path)
    assert len(rows) == sent and all(row["status"] == "rejected" for row in rows)


def test_signed_update_with_a_deep_extra_field(tmp_path: Path) -> None:
    """A verified update whose item carries a field nested 600 deep is stored and printed
    (with a note for the items) without stopping the printer."""
    import io

    from avasam_cli.output import JsonEventPrinter
    from avasam_cli.receiver.printer import BackgroundPrinter
    from avasam_cli.store.events import Event

    deep = json.loads(nested(600, "1"))
    items = [{"sku": "A", "quantity": 1, "updatedOn": "2026-11-28T10:00:00+00:00", "x": deep}]
    # orjson writes at most 254 levels: the json module builds this body.
    token = signing.sign_token("deep-1", TOKEN, now=datetime.now(UTC))
    raw = json.dumps(
        {"requestId": "deep-1", "on": "2026-11-28T10:00:00+00:00", "token": token, "data": items}
    ).encode()
    settings = ReceiverSettings(verification_token=TOKEN, max_body_size=64 * 1024)
    with TestClient(create_app(settings, tmp_path / "s.sqlite3")) as client:
        assert client.post("/webhooks/stock", content=raw, headers=JSON_HEADERS).status_code == 200
    stream = io.BytesIO()
    stream.close = lambda: None  # type: ignore[method-assign]
    printer = BackgroundPrinter(JsonEventPrinter(stream))
    event = Event("2026-11-28T10:00:00.000+00:00", "stock", "verified", 200, "[]", raw, id=1)
    printer([event])
    printer([Event("2026-11-28T10:00:00.000+00:00", "stock", "rejected", 401, "[]", b"x", id=2)])
    assert printer.close(timeout=10) == "2 received (1 rejected, 1 verified)"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "nested too deeply" in lines[0]["data"] and lines[1]["id"] == 2


def test_trailing_slash_is_the_same_endpoint(client: TestClient, store_path: Path) -> None:
    """POST /webhooks/stock/ is accepted and stored like /webhooks/stock, never redirected."""
    answer = client.post(
        "/webhooks/stock/",
        content=signed_body(request_id="slash-1"),
        headers={**JSON_HEADERS, "host": "evil.example"},
        follow_redirects=False,
    )
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    assert [row["request_id"] for row in stored(store_path)] == ["slash-1"]


def test_a_stock_token_is_refused_on_the_price_endpoint(
    client: TestClient, store_path: Path
) -> None:
    """A request id verified as a stock update, replayed with its token as a price update,
    is refused (request_id_reused) and stored; the same kind again is still a duplicate."""
    stock = signed_body("stock", request_id="cross-1")
    token = json.loads(stock)["token"]
    forged = json.loads(signed_body("price", request_id="cross-1"))
    forged["token"] = token
    assert client.post("/webhooks/stock", content=stock, headers=JSON_HEADERS).status_code == 200
    refused = client.post("/webhooks/price", content=json.dumps(forged), headers=JSON_HEADERS)
    again = client.post("/webhooks/stock", content=stock, headers=JSON_HEADERS)
    assert refused.status_code == 401 and refused.json()["error"] == "request_id_reused"
    assert again.json()["status"] == "duplicate"
    rows = [(r["kind"], r["status"], r["reason"]) for r in stored(store_path)]
    assert rows == [
        ("stock", "verified", None),
        ("price", "rejected", "request_id_reused"),
        ("stock", "duplicate", None),
    ]


def test_a_failed_commit_reports_no_row_id(tmp_path: Path) -> None:
    """When a batch's transaction fails, no event keeps an id that another row may get."""

    from avasam_cli.receiver.writer import commit_loop, frame, split_frames
    from avasam_cli.store.events import Event, WireRequest

    class FailingStore:
        batch_size = 256

        def ensure_present(self) -> None:
            return None

        def insert(self, events: list[Event], plan: object = None) -> None:
            for number, event in enumerate(events, start=1):
                event.id = number  # as a real insert does before its COMMIT fails
            raise OSError("disk full")

    request = WireRequest(
        1.0e9, "stock", "verified", 200, None, None, "f-1", 1, False, None, [], b"{}"
    )
    answers = bytearray()
    printed: list[Event] = []
    commit_loop(FailingStore(), printed.extend, reads(frame((1, *request))), answers.extend)  # type: ignore[arg-type]
    (outcomes,) = split_frames(answers)
    assert outcomes == [(1, None, "verified", "disk full")]
    assert printed[0].id is None and printed[0].store_error == "disk full"


def test_json_lines_to_a_file_are_written_by_the_committing_thread(tmp_path: Path) -> None:
    """`listen --json > file`: no printer thread (a file never waits for a reader), and
    every line is there; to a pipe, a thread writes them, so that a reader that stops
    cannot stop the commits."""
    from avasam_cli.output import BytesEventPrinter
    from avasam_cli.receiver.printer import make_printer
    from avasam_cli.store.events import Event

    def batch(first: int) -> list[Event]:
        return [Event("2026-11-28T10:00:00.000+00:00", "price", "rejected", 401, "[]", b"x",
                      id=n) for n in range(first, first + 3)]  # fmt: skip

    path = tmp_path / "events.jsonl"
    with path.open("wb") as file:
        printer = make_printer("json", os.dup(file.fileno()))
        assert printer is not None and printer.thread is None
        printer(batch(1))
        assert [json.loads(line)["id"] for line in path.read_bytes().splitlines()] == [1, 2, 3]
        assert printer.close(timeout=10) == "3 received (3 rejected)"
        assert isinstance(printer.printer, BytesEventPrinter)
        printer.printer.stream.close()
    read, write = os.pipe()
    piped = make_printer("json", write)
    assert piped is not None and piped.thread is not None
    piped(batch(4))
    assert piped.close(timeout=10) == "3 received (3 rejected)"
    written = os.read(read, 1 << 16)  # all of it: the thread has finished
    assert isinstance(piped.printer, BytesEventPrinter)
    piped.printer.stream.close()
    os.close(read)
    assert [json.loads(line)["id"] for line in written.splitlines()] == [4, 5, 6]


def test_the_stop_summary_counts_what_was_answered_not_what_was_printed() -> None:
    """With the output stuck, the summary still counts every committed request, and says
    how many were not printed."""
    import threading

    from avasam_cli.output import JsonEventPrinter
    from avasam_cli.receiver.printer import BackgroundPrinter
    from avasam_cli.store.events import Event

    released = threading.Event()

    class StuckStream:
        def write(self, data: bytes) -> int:
            released.wait(30)  # a terminal nobody reads
            return len(data)

        def flush(self) -> None:
            pass

    printer = BackgroundPrinter(JsonEventPrinter(StuckStream()))  # type: ignore[arg-type]
    for n in range(50):
        printer(
            [Event("2026-11-28T10:00:00.000+00:00", "price", "rejected", 401, "[]", b"x", id=n)]
        )
    try:
        summary = printer.close(timeout=0.5)
    finally:
        released.set()
    assert summary.startswith("50 received (50 rejected)")
    assert "not printed because the output was blocked" in summary
