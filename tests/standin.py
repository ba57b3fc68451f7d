"""A real local HTTP server standing in for the Avasam API, recording what it receives."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Avasam:
    """Behaviour knobs and the record of received requests."""

    url: str = ""
    consumer_key: str = "ck-test-0001"
    secret_key: str = "sk-test-0001"
    token_lifetime: timedelta = timedelta(hours=1)
    # Queued answers for the acknowledgement path: a status code, or "drop" to close the
    # connection without answering; when empty, 200.
    ack_script: list[int | str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)

    def paths(self) -> list[str]:
        return [request.path for request in self.received]


def _handler(state: Avasam) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            body = json.loads(raw) if raw else None
            state.received.append(Received(self.path, dict(self.headers.items()), body))
            if self.path == "/api/auth/request-token":
                if body != {"consumer_key": state.consumer_key, "secret_key": state.secret_key}:
                    self._answer(401, {"message": "invalid credentials"})
                    return
                token = f"access-{len(state.issued) + 1:04d}"
                state.issued.append(token)
                expires = datetime.now(UTC) + state.token_lifetime
                text = f"{expires:%Y-%m-%dT%H:%M:%S}.{expires.microsecond:06d}1+00:00"
                self._answer(200, {"access_token": token, "expires_at": text})
                return
            if self.path == "/api-seller/Product/AcknowledgeStockUpdate":
                token = self.headers.get("authorization", "").removeprefix("Bearer ")
                if token not in state.issued or token in state.revoked:
                    self._answer(401, {"message": "token expired"})
                    return
                step = state.ack_script.pop(0) if state.ack_script else 200
                if step == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                assert isinstance(step, int)
                headers_only = {"retry-after": "1"} if step == 429 else {}
                if headers_only:
                    data = b"{}"
                    self.send_response(step)
                    self.send_header("retry-after", "1")
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self._answer(step, {"ok": step < 300})
                return
            self._answer(404, {"message": "not found"})

    return Handler


@contextmanager
def running_avasam() -> Iterator[Avasam]:
    state = Avasam()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
