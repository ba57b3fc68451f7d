"""The receiver against hostile and careless clients, over real sockets to a real listener:
oversized heads, slow heads, stalled bodies, idle connections, too many connections."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import TOKEN, ListenProcess, signed_body, store_rows

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
        protocol = SimpleNamespace(transport=transport, cycle=cycle,
                                   loop=asyncio.get_running_loop())  # fmt: skip
        seen = []
        answer = _LingeringClose(protocol)  # type: ignore[arg-type]
        answer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        seen.append(list(written))
        cycle.response_started = True
        answer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        seen.append(list(written))
        answer.write(b"{}")
        seen.append(list(written))
        written.clear()
        alone = _LingeringClose(protocol)  # type: ignore[arg-type]
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
