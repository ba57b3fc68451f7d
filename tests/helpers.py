"""Shared test helpers: signed bodies, free ports, a real uvicorn in a thread, `avasam listen`."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import httpx
import uvicorn

from avasam_cli.paths import DatabaseUrl, StoreLocation
from avasam_cli.store.base import open_store
from avasam_cli.store.events import Event
from avasam_cli.webhooks import sign as signing

TOKEN = "test-verification-token-0123456789-abcdefghijkl"
JSON_HEADERS = {"content-type": "application/json"}


def signed_body(
    kind: str = "stock",
    count: int = 1,
    key: str = TOKEN,
    request_id: str | None = None,
    now: datetime | None = None,
    **options: Any,
) -> bytes:
    moment = now or datetime.now(UTC)
    items = signing.generate_items(kind, count, moment, seed=7)
    body = signing.build_body(items, key, now=moment, request_id=request_id, **options)
    return signing.encode(body)


def store_rows(path: StoreLocation, where: str = "1 = 1") -> list[dict[str, Any]]:
    """Every stored row as a dict of its columns (test-only: raw SQL, read-only)."""
    import sqlite3

    if isinstance(path, DatabaseUrl):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(path.url, row_factory=dict_row) as pg:
            found = pg.execute(f"SELECT * FROM events WHERE {where} ORDER BY id")  # noqa: S608
            return [dict(row) for row in found]

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT * FROM events WHERE {where} ORDER BY id")  # noqa: S608
        return [dict(row) for row in rows]


def store_event(
    path: StoreLocation,
    request_id: str,
    kind: str = "stock",
    status: str = "verified",
    headers_json: str = "[]",
) -> None:
    """Put one update straight into the store, as if it had been received."""
    with open_store(path) as store:
        store.insert(
            [
                Event(
                    received_at="2026-11-27T10:00:00+00:00",
                    kind=kind,
                    status=status,
                    http_status=200,
                    headers_json=headers_json,
                    body=b"{}",
                    request_id=request_id,
                    item_count=1,
                )
            ]
        )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def with_token(raw: bytes, token: str) -> bytes:
    document = json.loads(raw)
    document["token"] = token
    return json.dumps(document).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_in_thread(app: Any, **options: Any) -> Iterator[str]:
    """A real uvicorn server on a free port, stopped when the block ends; `options` are
    uvicorn's (`http`, `lifespan`...)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, **{"log_level": "warning", "lifespan": "on",
                                             "ws": "none", **options}
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class ListenProcess:
    """`avasam listen` in a subprocess, with its own AVASAM_HOME.

    Its output is read as it comes, as a terminal would, unless `drain` is False
    (a consumer that has stopped reading).  One a test leaves running (it failed before
    its stop) is stopped when that test ends (`stop_leftovers`, from conftest).
    """

    started: ClassVar[list[ListenProcess]] = []

    def __init__(
        self, home: Path, *args: str, env: dict[str, str] | None = None, drain: bool = True
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Tests ask for the inspector page when they want it: it is one more process.
        inspector = [] if any(a.startswith("--inspect-port") for a in args) else ["--no-inspect"]
        full_env = {**os.environ, "AVASAM_HOME": str(home), "NO_COLOR": "1", **(env or {})}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "avasam_cli",
                "listen",
                "--port",
                str(self.port),
                *inspector,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        ListenProcess.started.append(self)
        self.captured: dict[str, bytearray] = {"out": bytearray(), "err": bytearray()}
        self.readers = []
        if drain:
            for name, stream in (("out", self.process.stdout), ("err", self.process.stderr)):
                reader = threading.Thread(target=self._drain, args=(stream, name), daemon=True)
                reader.start()
                self.readers.append(reader)
        self.wait_ready()

    def _drain(self, stream: Any, name: str) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            self.captured[name] += chunk

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"listen exited {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        self.process.kill()
        raise RuntimeError("listen did not become ready")

    def stop(self, sig: int | None = None) -> tuple[int, str, str]:
        import signal

        self.process.send_signal(sig or signal.SIGTERM)
        if not self.readers:
            try:
                out, err = self.process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                out, err = self.process.communicate()
            return self.process.returncode, out.decode(), err.decode()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        out, err = bytes(self.captured["out"]), bytes(self.captured["err"])
        return self.process.returncode, out.decode(), err.decode()


def stop_leftovers(since: int = 0) -> None:
    """Stop the listeners started after the first `since` (those of one test: a module's
    shared listener was started before) that are still running, children and all: a
    test that fails before its own stop must not leave a process tree behind."""
    leftovers = ListenProcess.started[since:]
    del ListenProcess.started[since:]
    for listener in leftovers:
        if listener.process.poll() is None:
            listener.stop()


class TerminalRun(NamedTuple):
    code: int
    prompt: bytes  # stderr up to the answer
    out: bytes
    err: bytes  # stderr after the answer
    echoed: bytes  # what the terminal showed of the typing


def at_terminal(args: list[str], env: dict[str, str], prompt: bytes, answer: bytes) -> TerminalRun:
    """`avasam ARGS` with a pseudo-terminal on standard input: wait for `prompt` on
    stderr, type `answer`, and collect what happened (and what the terminal echoed)."""
    import pty
    import select

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "avasam_cli", *args],
        stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        said = b""
        deadline = time.monotonic() + 30
        while prompt not in said and time.monotonic() < deadline:
            if select.select([process.stderr], [], [], 1)[0]:
                said += os.read(process.stderr.fileno(), 4096)
        assert prompt in said, said
        os.write(controller, answer)
        out, err = process.communicate(timeout=30)
        echoed = b""
        while select.select([controller], [], [], 0.2)[0]:
            try:
                echoed += os.read(controller, 4096)
            except OSError:
                break
    finally:
        process.kill()
        os.close(controller)
        os.close(terminal)
    return TerminalRun(process.returncode, said, out, err, echoed)


def _serve(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A real HTTP server on 127.0.0.1:`port`, on a thread of its own."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


class RecordingShop:
    """A real HTTP server for the seller's shop: keeps each request's headers (names in
    lower case) and raw body; answers from `codes` (a queue of statuses, then 200)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/avasam"
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.codes: list[int] = []
        self.open = threading.Event()  # cleared: each request is held until it is set
        self.open.set()
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                raw = self.rfile.read(length)
                if len(raw) < length:  # the sender went away mid-body (a runner killed)
                    self.close_connection = True
                    return  # no request, as for any shop: nothing recorded or answered
                shop.received.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                shop.open.wait(60)
                code = shop.codes.pop(0) if shop.codes else 200
                self.send_response(code)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                pass

        self.server = _serve(self.port, Handler)

    def close(self) -> None:
        self.open.set()
        self.server.shutdown()
        self.server.server_close()


class Proxy:
    """A reverse proxy on a free port: passes each POST on to `upstream` (its path kept),
    or, with `upstream` None, answers 404 as a proxy that knows no such path."""

    def __init__(self, upstream: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        proxy_upstream = upstream

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if proxy_upstream is None:
                    status, answer = 404, b"<html>404 Not Found</html>"
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    passed = httpx.post(proxy_upstream + self.path, content=body,
                                        headers=headers, timeout=10)  # fmt: skip
                    status, answer = passed.status_code, passed.content
                self.send_response(status)  # Server: standin-proxy (version_string)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def version_string(self) -> str:
                return "standin-proxy"

            def log_message(self, *_: object) -> None:
                pass

        self.server = _serve(self.port, Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
