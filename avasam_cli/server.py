"""The webhook receiver: a Starlette app built by `create_app`, served by uvicorn.

The two webhook endpoints are plain ASGI callables mounted on Starlette
routes: they read the body in chunks (enforcing the size limit even without
Content-Length), hand it to the pure verifier, wait for the store's commit and
answer.  Nothing else happens on the request path.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from avasam_cli import __version__
from avasam_cli.store import BatchWriter, Event, Report
from avasam_cli.verification import DEFAULT_LEEWAY, VerificationError, verify

DEFAULT_STOCK_PATH = "/webhooks/stock"
DEFAULT_PRICE_PATH = "/webhooks/price"
HEALTH_PATH = "/healthz"
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
# Header names that may carry credentials: stored as "[redacted]".
_SECRET_HEADER_MARKERS = ("auth", "cookie", "token", "secret", "key", "signature")


@dataclass(frozen=True)
class ReceiverSettings:
    verification_token: str
    stock_path: str = DEFAULT_STOCK_PATH
    price_path: str = DEFAULT_PRICE_PATH
    leeway: float = DEFAULT_LEEWAY
    max_body_size: int = DEFAULT_MAX_BODY_SIZE

    def paths(self) -> Mapping[str, str]:
        return {"stock": self.stock_path, "price": self.price_path}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def redacted_headers(raw: list[tuple[bytes, bytes]]) -> str:
    pairs = []
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        secret = any(marker in name for marker in _SECRET_HEADER_MARKERS)
        pairs.append((name, "[redacted]" if secret else value_bytes.decode("latin-1")))
    return orjson.dumps(pairs).decode()


def _is_json(content_type: bytes) -> bool:
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, payload: Mapping[str, Any], **extra: str) -> None:
    body = orjson.dumps(payload)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(name.encode(), value.encode()) for name, value in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class WebhookEndpoint:
    """POST endpoint for one kind of update (stock or price)."""

    def __init__(self, kind: str, settings: ReceiverSettings, writer: BatchWriter) -> None:
        self.kind = kind
        self.settings = settings
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received_at = now_iso()
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        content_type = b""
        content_length = -1
        for name, value in raw_headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length" and value.isdigit():
                content_length = int(value)
        client = scope.get("client")
        event = Event(
            received_at=received_at,
            kind=self.kind,
            status="rejected",
            http_status=0,
            headers_json=redacted_headers(raw_headers),
            body=b"",
            client=f"{client[0]}:{client[1]}" if client else None,
        )
        extra: dict[str, str] = {}
        limit = self.settings.max_body_size
        if scope["method"] != "POST":
            self._refuse(event, 405, "method_not_allowed", "use POST")
            extra["allow"] = "POST"
        elif not _is_json(content_type):
            shown = content_type.decode("latin-1")[:60] or "none"
            self._refuse(
                event,
                415,
                "unsupported_media_type",
                f"Content-Type must be application/json (got {shown})",
            )
        elif content_length > limit:
            self._refuse(event, 413, "body_too_large", f"the body exceeds {limit} bytes")
        else:
            try:
                event.body = await _read_body(receive, limit)
            except _BodyTooLarge:
                self._refuse(event, 413, "body_too_large", f"the body exceeds {limit} bytes")
            except _Disconnected:
                return
            else:
                self._verify(event)

        await self.writer.record(event)
        if event.status == "rejected":
            payload: dict[str, Any] = {"error": event.reason, "detail": event.detail}
        elif event.store_error is not None:
            event.http_status = 503
            payload = {
                "error": "store_unavailable",
                "detail": "the update could not be stored; please retry",
            }
        else:
            event.http_status = 200
            payload = {
                "status": "ok" if event.status == "verified" else "duplicate",
                "requestId": event.request_id,
            }
        await _answer(send, event.http_status, payload, **extra)

    def _verify(self, event: Event) -> None:
        settings = self.settings
        try:
            update = verify(event.body, self.kind, settings.verification_token, settings.leeway)
        except VerificationError as refused:
            self._refuse(event, refused.http_status, refused.reason.value, refused.detail)
            return
        event.status = "verified"
        event.http_status = 200
        event.request_id = update.request_id
        event.item_count = len(update.items)
        event.items = update.items

    @staticmethod
    def _refuse(event: Event, status: int, reason: str, detail: str) -> None:
        event.status = "rejected"
        event.http_status = status
        event.reason = reason
        event.detail = detail


async def _health(_: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    reason = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return JSONResponse(
        {"error": reason, "detail": error.detail},
        status_code=error.status_code,
        headers=error.headers,
    )


def create_app(
    settings: ReceiverSettings, store_path: Path, report: Report | None = None
) -> Starlette:
    """The receiver; the store's writer thread starts and stops with the app's lifespan."""
    writer = BatchWriter(store_path, report)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        writer.start()
        try:
            yield
        finally:
            writer.close()  # commits what is queued: every answered request is stored

    routes = [
        Route(path, WebhookEndpoint(kind, settings, writer))
        for kind, path in settings.paths().items()
    ]
    routes.append(Route(HEALTH_PATH, _health, methods=["GET"]))
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
