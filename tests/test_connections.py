"""The receiver against hostile and careless clients, over real sockets to a real listener:
oversized heads, slow heads, stalled bodies, idle connections, too many connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from avasam_cli.receiver.protocol import Answer, WholeRequest
from tests.helpers import TOKEN, ListenProcess, serve_in_thread, signed_body, store_rows

ENV = {"AVASAM_VERIFICATION_TOKEN": TOKEN}
FAST = ("--head-timeout", "0.5", "--body-timeout", "0.5", "--keep-alive-timeout", "0.5")


def connect(listener: ListenProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", listener.port), timeout=10)
    return sock


def closed_by_server(sock: socket.socket, within: float = 5.0) -> bool:
    """True when the server closes the connection (EOF or reset) within `within` seconds.
    The socket is closed either way."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.close()
    return True


def test_oversized_headers_get_431_and_a_bounded_stored_excerpt(isolated_home: Path) -> None:
    """128 headers of 64 KiB each: 431, stored with at most a few KiB of headers."""
    listener = ListenProcess(isolated_home, env=ENV)
    headers = {f"x-filler-{i}": "a" * 65536 for i in range(128)}
    headers["content-type"] = "application/json"
    answer = httpx.post(
        f"{listener.url}/webhooks/stock", content=signed_body(), headers=headers, timeout=30
    )
    code, _, err = listener.stop()
    assert code == 0, err
    assert answer.status_code == 431
    assert answer.json()["error"] == "headers_too_large"
    (row,) = store_rows(isolated_home / "data" / "events.sqlite3")
    assert (row["status"], row["http_status"], row["reason"]) == (
        "rejected",
        431,
        "headers_too_large",
    )
    assert len(row["headers"]) < 16 * 1024


def test_header_limit_is_an_option(isolated_home: Path) -> None:
    """--max-header-size lowers the cap; a normal request still passes under it."""
    listener = ListenProcess(isolated_home, "--max-header-size", "2048", env=ENV)
    ok = httpx.post(
        f"{listener.url}/webhooks/stock",
        content=signed_body(),
        headers={"content-type": "application/json"},
    )
    big = httpx.post(
        f"{listener.url}/webhooks/stock",
        content=signed_body(),
        headers={"content-type": "application/json", "x-big": "b" * 4096},
    )
    listener.stop()
    assert (ok.status_code, big.status_code) == (200, 431)


def test_slow_and_idle_heads_are_closed(isolated_home: Path) -> None:
    """A connection that sends nothing, or a head that never completes, is closed in time,
    while /healthz keeps answering."""
    listener = ListenProcess(isolated_home, *FAST, env=ENV)
    idle = connect(listener)
    slow = connect(listener)
    slow.sendall(b"POST /webhooks/stock HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    assert closed_by_server(idle) and closed_by_server(slow)
    assert time.monotonic() - start < 4
    assert httpx.get(f"{listener.url}/healthz").status_code == 200
    listener.stop()


def test_stalled_body_is_closed_and_stored(isolated_home: Path) -> None:
    """A body that stops arriving: the connection is closed and a client_disconnected row kept."""
    listener = ListenProcess(isolated_home, *FAST, env=ENV)
    sock = connect(listener)
    sock.sendall(
        b"POST /webhooks/stock HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"requestId": '
    )
    assert closed_by_server(sock)
    code, _, err = listener.stop()
    assert code == 0, err
    (row,) = store_rows(isolated_home / "data" / "events.sqlite3")
    assert (row["status"], row["reason"], row["http_status"]) == (
        "rejected",
        "client_disconnected",
        499,
    )


def test_idle_keep_alive_is_closed(isolated_home: Path) -> None:
    """After an answer, an idle keep-alive connection is closed after the keep-alive timeout."""
    listener = ListenProcess(isolated_home, *FAST, env=ENV)
    sock = connect(listener)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first
    assert closed_by_server(sock, within=5)
    listener.stop()


def test_connections_beyond_the_cap_get_503(isolated_home: Path) -> None:
    """With --max-connections 4 and four connections held open, the next request is 503."""
    listener = ListenProcess(isolated_home, "--max-connections", "4", env=ENV)
    held = [connect(listener) for _ in range(4)]
    answer = _health_until(listener, 503)  # once the server has taken the four
    for sock in held:
        sock.close()
    after = _health_until(listener, 200)  # once it has seen them close
    listener.stop()
    assert answer.status_code == 503
    assert after.status_code == 200


def _health_until(listener: ListenProcess, status: int, seconds: float = 10) -> httpx.Response:
    """/healthz, asked again until it answers `status` or `seconds` pass (its last answer)."""
    deadline = time.monotonic() + seconds
    while (answer := httpx.get(f"{listener.url}/healthz")).status_code != status:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return answer


def writer_pid(listener: ListenProcess) -> int:
    """The store writer: the listener's one child process."""
    pid = listener.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    (child,) = children
    return int(child)


def test_a_stopped_writer_means_503_within_the_commit_deadline(isolated_home: Path) -> None:
    """A writer that stops committing (kill -STOP): answers come back 503 in about 5 s,
    and once it runs again, so do 200s."""
    import os
    import signal

    listener = ListenProcess(isolated_home, env=ENV)
    child = writer_pid(listener)
    os.kill(child, signal.SIGSTOP)
    try:
        start = time.monotonic()
        stuck = httpx.post(
            f"{listener.url}/webhooks/stock",
            content=signed_body(request_id="stuck-1"),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        waited = time.monotonic() - start
    finally:
        os.kill(child, signal.SIGCONT)
    after = httpx.post(
        f"{listener.url}/webhooks/stock",
        content=signed_body(request_id="after-1"),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    listener.stop()
    assert stuck.status_code == 503 and 4 < waited < 10
    assert after.status_code == 200


def test_a_dead_writer_is_reported_and_restarted(isolated_home: Path) -> None:
    """kill -9 of the writer: 503 and /healthz 503 with the reason, said on stderr; it is
    restarted, and then updates are stored and answered 200 again."""
    import os
    import signal

    listener = ListenProcess(isolated_home, env=ENV)
    os.kill(writer_pid(listener), signal.SIGKILL)
    _health_until(listener, 503)  # once the listener has seen its writer die
    down = httpx.post(
        f"{listener.url}/webhooks/stock",
        content=signed_body(request_id="down-1"),
        headers={"content-type": "application/json"},
    )
    health = httpx.get(f"{listener.url}/healthz")
    deadline = time.monotonic() + 15
    while httpx.get(f"{listener.url}/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the store writer was not restarted"
        time.sleep(0.1)
    back = httpx.post(
        f"{listener.url}/webhooks/stock",
        content=signed_body(request_id="back-1"),
        headers={"content-type": "application/json"},
    )
    code, _, err = listener.stop()
    assert code == 0, err
    assert down.status_code == 503
    assert health.status_code == 503 and "store writer" in health.json()["reason"]
    assert back.status_code == 200
    assert "the store writer stopped" in err and "is back" in err
    stored = store_rows(isolated_home / "data" / "events.sqlite3")
    assert [row["request_id"] for row in stored] == ["back-1"]


@pytest.mark.parametrize(
    "ending",
    [b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", b"HTTP/1.0\r\n"],
    ids=["keep-alive", "connection-close", "http-1.0"],
)
def test_413_reaches_a_client_that_sends_everything_first(
    isolated_home: Path, ending: bytes
) -> None:
    """A declared Content-Length over the limit, sent whole before reading: the client
    reads the 413, not a reset, every time.  A keep-alive connection's unread body is read
    and dropped by uvicorn; a connection that ends with the answer lingers to drop it."""
    listener = ListenProcess(isolated_home, "--max-body-size", "1000", env=ENV)
    body = b"x" * 20_000_000  # far more than the socket buffers hold
    head = (
        b"POST /webhooks/stock " + ending + b"Host: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    answers = []
    for _ in range(5):
        sock = connect(listener)
        try:
            sock.sendall(head + body)
            answers.append(sock.recv(65536)[:12])
        except ConnectionError as error:
            answers.append(type(error).__name__.encode())
        finally:
            sock.close()
    listener.stop()
    assert answers == [b"HTTP/1.1 413"] * 5


def test_https_to_the_plain_port_is_explained(isolated_home: Path) -> None:
    """A TLS ClientHello on the plain-HTTP port: closed, and said in words, once per host."""
    listener = ListenProcess(isolated_home, env=ENV)
    hello = bytes.fromhex("16030100a5010000a10303") + b"\x00" * 160
    for _ in range(2):
        sock = connect(listener)
        try:
            sock.sendall(hello)
            assert sock.recv(100) == b""  # closed without an HTTP answer
        finally:
            sock.close()
    assert httpx.get(f"{listener.url}/healthz").status_code == 200
    _, _, err = listener.stop()
    assert err.count("spoke HTTPS (TLS) to this port, which speaks plain HTTP") == 1
    assert "Invalid HTTP request received" not in err


def test_an_answer_leaves_in_one_write() -> None:
    """The receiver's transport holds an answer's head until its body, so that both go in
    one write; a 100 Continue (before the answer) goes at once, and a head with no body
    after it leaves on the next turn of the loop."""
    import asyncio
    from types import SimpleNamespace

    from avasam_cli.receiver.protocol import _LingeringClose

    async def scenario() -> list[list[bytes]]:
        written: list[bytes] = []
        transport = SimpleNamespace(write=written.append)
        cycle = SimpleNamespace(response_started=False)
        protocol = SimpleNamespace(transport=transport, loop=asyncio.get_running_loop())
        seen = []
        answer = _LingeringClose(protocol, cycle)  # type: ignore[arg-type]
        answer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        seen.append(list(written))
        cycle.response_started = True
        answer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        seen.append(list(written))
        answer.write(b"{}")
        seen.append(list(written))
        written.clear()
        alone = _LingeringClose(protocol, cycle)  # type: ignore[arg-type]
        alone.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        seen.append(list(written))
        await asyncio.sleep(0)  # one turn of the loop
        seen.append(list(written))
        return seen

    seen = asyncio.run(scenario())
    continued = b"HTTP/1.1 100 Continue\r\n\r\n"
    assert seen[0] == [continued]
    assert seen[1] == [continued]  # the head waits for its body
    assert seen[2] == [continued, b"HTTP/1.1 200 OK\r\n\r\n{}"]
    assert seen[3] == [] and seen[4] == [b"HTTP/1.1 204 No Content\r\n\r\n"]


class TwoWays:
    """An app that answers both ways the receiver's protocol offers, echoing the body, and
    notes which way each request came: taken whole, or through ASGI."""

    def __init__(self) -> None:
        self.ways: list[tuple[str, bytes]] = []
        self.asgi_started = threading.Event()

    def whole_request(self, scope: dict[str, Any]) -> WholeRequest | None:
        if scope["method"] != "POST":
            return None

        def whole(_: Any, body: bytes, respond: Callable[[Answer | None], None]) -> None:
            self.ways.append(("whole", body))
            answer = (200, [(b"content-length", str(len(body)).encode())], body)
            # Later, as a commit's answer is: a request read meanwhile is pipelined.
            asyncio.get_running_loop().call_soon(respond, answer)

        return whole

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.asgi_started.set()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.ways.append(("asgi", body))
        length = str(len(body)).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", length)]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def _connected(app: Any, **options: Any) -> Iterator[tuple[socket.socket, Any]]:
    """A connection (and its reader) to `app` on a real uvicorn with the receiver's
    protocol, set up as `listen` does."""
    from avasam_cli.receiver.protocol import ConnectionLimits, protocol_with

    limits = ConnectionLimits(max_head_size=16384, head_timeout=10, body_timeout=10)
    options = {"http": protocol_with(limits), "lifespan": "off", "proxy_headers": False,
               **options}  # fmt: skip
    with serve_in_thread(app, **options) as url:
        port = int(url.rsplit(":", 1)[1])
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
            sock.makefile("rb") as reader,
        ):
            yield sock, reader


def _post(body: bytes, *extra: bytes) -> bytes:
    head = [b"POST /webhooks/stock HTTP/1.1", b"host: x", b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(), *extra]  # fmt: skip
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _read_answer(reader: Any) -> tuple[bytes, dict[bytes, bytes], bytes]:
    status = reader.readline().rstrip()
    headers = {}
    while line := reader.readline().rstrip():
        name, _, value = line.partition(b":")
        headers[name.lower()] = value.strip()
    return status, headers, reader.read(int(headers[b"content-length"]))


def test_a_request_read_in_one_go_is_taken_whole_and_answered_like_any() -> None:
    """Head and body in one write: the app takes it whole (no ASGI); the answer has
    uvicorn's own headers and keeps the connection; pipelined behind it, a second request
    waits its turn and goes through ASGI; a GET goes through ASGI too."""
    app = TwoWays()
    with _connected(app) as (sock, reader):
        sock.sendall(_post(b'{"n": 1}'))
        status, headers, body = _read_answer(reader)
        assert (status, body) == (b"HTTP/1.1 200 OK", b'{"n": 1}')
        assert b"date" in headers and b"connection" not in headers
        sock.sendall(_post(b'{"n": 2}') + _post(b'{"n": 3}'))  # the same connection
        assert [_read_answer(reader)[2] for _ in range(2)] == [b'{"n": 2}', b'{"n": 3}']
        sock.sendall(b"GET /webhooks/stock HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _read_answer(reader)[0] == b"HTTP/1.1 200 OK"
    assert app.ways == [("whole", b'{"n": 1}'), ("whole", b'{"n": 2}'), ("asgi", b'{"n": 3}'),
                        ("asgi", b"")]  # fmt: skip


def test_a_body_that_comes_after_its_head_goes_through_asgi() -> None:
    """The head alone: the request is not held back waiting for its body (ASGI starts,
    and reads the body as it comes)."""
    app = TwoWays()
    with _connected(app) as (sock, reader):
        head, _, body = _post(b'{"late": true}').partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\n\r\n")
        assert app.asgi_started.wait(10), "the app was not started before the body came"
        sock.sendall(body)
        assert _read_answer(reader)[2] == b'{"late": true}'
    assert app.ways == [("asgi", b'{"late": true}')]


def test_a_whole_request_that_ends_its_connection_is_closed_after_its_answer() -> None:
    """HTTP/1.0 (no keep-alive, on every uvicorn this supports): the answer says so and
    the connection closes after it."""
    app = TwoWays()
    with _connected(app) as (sock, reader):
        sock.sendall(_post(b"{}").replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        status, headers, _ = _read_answer(reader)
        assert (status, headers[b"connection"]) == (b"HTTP/1.1 200 OK", b"close")
        assert reader.read() == b""  # closed by the server
    assert app.ways == [("whole", b"{}")]


def test_a_wrapped_app_sees_every_request_through_asgi() -> None:
    """With proxy headers on, uvicorn wraps the app in its middleware, which must see
    (and rewrite) every request: nothing is taken whole past it."""
    app = TwoWays()
    with _connected(app, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as (sock, reader):
        sock.sendall(_post(b"{}"))
        assert _read_answer(reader)[0] == b"HTTP/1.1 200 OK"
    assert app.ways == [("asgi", b"{}")]


def test_the_listener_answers_one_write_requests_as_any(isolated_home: Path) -> None:
    """Requests sent head and body in one write (as wrk and most senders do, so they are
    taken whole): each verdict is answered and stored as through ASGI, pipelined ones in
    order, and the store's own findings (a duplicate) too."""
    listener = ListenProcess(isolated_home, env=ENV)
    first = signed_body(request_id="whole-1")
    requests = [
        (_post(first), 200, b'"ok"'),
        (_post(first), 200, b'"duplicate"'),
        (_post(signed_body(key="another-token-" + "x" * 40)), 401, b"bad_signature"),
        (_post(b"[]", b"content-type: text/plain"), 415, b"unsupported_media_type"),
    ]
    seen = []
    with (
        socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock,
        sock.makefile("rb") as reader,
    ):
        for request, _, _ in requests:
            sock.sendall(request)
            status, headers, body = _read_answer(reader)
            seen.append((int(status.split()[1]), body, headers[b"content-type"]))
        sock.sendall(b"".join(_post(signed_body(request_id=f"piped-{n}")) for n in range(3)))
        piped = [orjson.loads(_read_answer(reader)[2])["requestId"] for _ in range(3)]
    code, _, err = listener.stop()
    assert code == 0, err
    for (_, expected, part), (got, body, media) in zip(requests, seen, strict=True):
        assert (got, media) == (expected, b"application/json") and part in body, body
    assert piped == ["piped-0", "piped-1", "piped-2"]
    rows = store_rows(isolated_home / "data" / "events.sqlite3")
    assert [(r["status"], r["http_status"]) for r in rows] == [
        ("verified", 200), ("duplicate", 200), ("rejected", 401), ("rejected", 415),
        ("verified", 200), ("verified", 200), ("verified", 200),
    ]  # fmt: skip


def test_an_app_that_fails_taking_a_request_whole_answers_500(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A bug in the app is a 500 with its traceback in the log, as uvicorn gives an ASGI
    app's, not a parser error; the connection goes on serving."""
    app = TwoWays()

    def broken(_: Any, body: bytes, respond: Callable[[Answer | None], None]) -> None:
        raise RuntimeError("a bug")

    app.whole_request = lambda scope: broken if scope["method"] == "POST" else None  # type: ignore[method-assign]
    with _connected(app) as (sock, reader):
        sock.sendall(_post(b"{}"))
        status, _, body = _read_answer(reader)
        assert (status, body) == (b"HTTP/1.1 500 Internal Server Error", b"Internal Server Error")
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _read_answer(reader)[0] == b"HTTP/1.1 200 OK"
    assert "RuntimeError: a bug" in capfd.readouterr().err
