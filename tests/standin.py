"""A real local HTTP server standing in for the Avasam API, recording what it receives."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_PATH = "/api/auth/request-token"
ACK_PATH = "/api-seller/Product/AcknowledgeStockUpdate"
STOCK_PATH = "/apiseeker/Products/SellerStockList"
PRODUCT_PATH = "/apiseeker/Products/GetSellerProductList"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    method: str = "POST"
    status: int = 0


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
    # How the access token must come: "bearer" (Bearer <token>), "raw" (<token>), or "any".
    scheme: str = "any"
    customer_id: int | None = None
    # Overrides for the token answer (hostile or broken servers): the token, the expiry text.
    token_override: str | None = None
    echo_token_request: bool = False  # answer the token request 400, echoing what was sent
    expires_override: str | None = None
    # The seller's stock list, {SKU: Stock}, served in pages; tests change it at will.
    stock: dict[str, int] = field(default_factory=dict)
    # Queued answers for any other data path (`avasam api`): a status code; when empty, 200.
    data_script: list[int] = field(default_factory=list)
    # The seller's product list, {SKU: Price}, served in pages as live accounts answer (an
    # array of PascalCase rows); None: the path echoes like any other (`avasam api`).
    products: dict[str, float] | None = None
    # Wrap list answers in an object under this key (e.g. "Data"), as some accounts may.
    list_wrapper: str | None = None
    # An answer for any other data path, sent as it is (a huge one, say).
    raw_answer: bytes | None = None

    def paths(self) -> list[str]:
        return [request.path for request in self.received]

    def authorized(self, header: str) -> bool:
        """Whether the Authorization header carries a live token in an accepted form."""
        if header.startswith("Bearer "):
            form, token = "bearer", header.removeprefix("Bearer ")
        else:
            form, token = "raw", header
        if self.scheme not in ("any", form):
            return False
        return token in self.issued and token not in self.revoked

    def refused_calls(self) -> int:
        """Data calls answered 401 (a wrong form or a dead token)."""
        return sum(1 for r in self.received if r.status == 401 and r.path != TOKEN_PATH)


def _handler(state: Avasam) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            state.received[-1].status = status
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            body = json.loads(raw) if raw else None
            path = self.path.split("?", 1)[0]
            state.received.append(Received(self.path, dict(self.headers.items()), body, method))
            if path == TOKEN_PATH:
                self._token(body)
            elif not state.authorized(self.headers.get("authorization", "")):
                self._answer(401, {"message": "Authorization has been denied for this request."})
            elif path == ACK_PATH:
                self._acknowledge()
            elif path == STOCK_PATH:
                self._stock_list(body)
            elif path == PRODUCT_PATH and state.products is not None:
                self._product_list(body)
            elif state.raw_answer is not None and path.startswith("/apiseeker/"):
                state.received[-1].status = 200
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(state.raw_answer)))
                self.end_headers()
                self.wfile.write(state.raw_answer)
            elif path.startswith("/apiseeker/") or path.startswith("/api-seller/"):
                step = state.data_script.pop(0) if state.data_script else 200
                self._answer(step, {"method": method, "path": self.path, "received": body})
            else:
                self._answer(404, {"message": "not found"})

        def _token(self, body: Any) -> None:
            if state.echo_token_request:
                self._answer(400, {"error": "bad request", "request": body})
                return
            if body != {"consumer_key": state.consumer_key, "secret_key": state.secret_key}:
                self._answer(401, {"message": "invalid credentials"})
                return
            token = state.token_override
            if token is None:
                token = f"access-{len(state.issued) + 1:04d}"
            state.issued.append(token)
            expires = datetime.now(UTC) + state.token_lifetime
            text = f"{expires:%Y-%m-%dT%H:%M:%S}.{expires.microsecond:06d}1+00:00"
            text = state.expires_override or text
            answer: dict[str, Any] = {"access_token": token, "expires_at": text}
            if state.customer_id is not None:
                answer["customerId"] = state.customer_id
            self._answer(200, answer)

        def _acknowledge(self) -> None:
            step = state.ack_script.pop(0) if state.ack_script else 200
            if step == "echo":  # a 400 that repeats the request, credentials included
                self._answer(400, {"error": "bad", "authorization": self.headers["authorization"]})
                return
            if step == "stall":  # holds the acknowledgement past the client's deadline
                time.sleep(40)
                return
            if step == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            assert isinstance(step, int)
            if step == 429:
                self._answer(step, {}, {"retry-after": "1"})
                return
            self._answer(step, {"ok": step < 300})

        def _stock_list(self, body: Any) -> None:
            limit, page = int(body["limit"]), int(body["page"])
            rows = [{"SKU": sku, "Stock": stock} for sku, stock in sorted(state.stock.items())]
            self._list(rows[page * limit : (page + 1) * limit], len(rows))

        def _product_list(self, body: Any) -> None:
            assert state.products is not None
            limit, page = int(body["Limit"]), int(body["Page"])
            rows = [
                {"SKU": sku, "Title": f"Product {sku}", "Price": price}
                for sku, price in sorted(state.products.items())
            ]
            self._list(rows[page * limit : (page + 1) * limit], len(rows))

        def _list(self, rows: list[dict[str, Any]], total: int) -> None:
            wrapper = state.list_wrapper
            self._answer(200, rows if wrapper is None else {wrapper: rows, "TotalCount": total})

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
