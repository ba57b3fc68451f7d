"""The webhook receiver: a Starlette app built by `create_app`, served by uvicorn.

The two webhook endpoints are plain ASGI callables mounted on Starlette
routes: they read the body in chunks (enforcing the size limit even without
Content-Length), hand it to the pure verifier, wait for the store's commit and
answer.  Nothing else happens on the request path.  A webhook POST that arrived
whole in one read is handed to the same endpoint without ASGI by the protocol
(`ReceiverApp.whole_request`, receiver.protocol): same verdict, same store, same
answer, less of the event loop's work per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from avasam_cli import __version__
from avasam_cli.defaults import (
    DEFAULT_DURABILITY,
    DEFAULT_LEEWAY,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_HEAD_SIZE,
    DEFAULT_WEBHOOK_PATHS,
    HEALTH_PATH,
)
from avasam_cli.metrics.counts import here as metrics_here
from avasam_cli.paths import StoreLocation
from avasam_cli.receiver.protocol import HEAD_TOO_LARGE, Answer, WholeRequest
from avasam_cli.receiver.writer import Outcome, StoreWriter
from avasam_cli.rotation import Rolling
from avasam_cli.store.events import WireRequest
from avasam_cli.store.jobs import Plan
from avasam_cli.webhooks.contract import (
    CURRENT,
    HTTP_STATUS,
    NO_AUDIENCE,
    PREVIOUS_TOKEN,
    REUSED_DETAIL,
    Reason,
    VerificationError,
)
from avasam_cli.webhooks.kinds import STRAY_KIND
from avasam_cli.webhooks.verify import verify_rolling

if TYPE_CHECKING:
    from avasam_cli.alerts import Alerts
    from avasam_cli.supervise import Published, Supervisor


@dataclass(frozen=True)
class ReceiverSettings:
    """What the receiver needs to answer; every default is in `defaults`."""

    verification_token: str
    paths: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_WEBHOOK_PATHS))
    leeway: float = DEFAULT_LEEWAY
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE  # enforced by the protocol (receiver.protocol)
    audience: tuple[str, ...] = NO_AUDIENCE  # the `aud` values required; () accepts any
    # During a rotation's grace the token replaced still verifies, until this Unix time.
    previous_token: str | None = None
    previous_until: float | None = None
    # (config file, profile) whose token changes a running receiver takes up; None when
    # the token came from a flag or the environment.
    follow_profile: tuple[str, str] | None = None

    @property
    def tokens(self) -> Rolling:
        return Rolling(self.verification_token, self.previous_token, self.previous_until)


def _is_json(content_type: bytes) -> bool:
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


class _Refused(Exception):
    """A request refused before verification (method, media type, size)."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers or {}


# Stored for a request whose client went away before its body was complete: nginx's 499,
# since no answer is sent.
CLIENT_GONE = 499
_GONE_DETAIL = (
    "the connection closed, or the body stalled past the body timeout, before the whole "
    "body arrived; no answer was sent"
)


class _Disconnected(Exception):
    pass


def _too_large(limit: int) -> _Refused:
    return _Refused(413, "body_too_large", f"the body exceeds {limit} bytes")


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
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _response(
    status: int, payload: Mapping[str, Any], extra: Mapping[str, str] | None = None
) -> Answer:
    body = orjson.dumps(payload)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(name.encode(), value.encode()) for name, value in (extra or {}).items()]
    return status, headers, body


async def _answer(send: Send, answer: Answer) -> None:
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# (status, http_status, reason, detail, request_id, item_count, items_as_sent):
# see WireRequest
_Verdict = tuple[str, int, "str | None", "str | None", "str | None", "int | None", bool]


class WebhookEndpoint:
    """POST endpoint for one kind of update (stock or price).

    Two ways in, one logic: as an ASGI app (`__call__`), and `whole`, for a request the
    protocol has read whole in one go (the usual webhook), which answers from the
    commit's callback with no task, no ASGI messages and no uvicorn cycle in between
    (receiver.protocol).
    """

    def __init__(
        self,
        kind: str,
        settings: ReceiverSettings,
        store: StoreWriter,
    ) -> None:
        self.kind = kind
        self.settings = settings
        self.store = store
        self.tokens = settings.tokens  # replaced when the profile's token changes
        self.counts = metrics_here()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = time.time()
        body: bytes | _Refused | _Disconnected
        try:
            body = await self._read_request(scope, receive)
        except (_Refused, _Disconnected) as unread:
            body = unread
        verdict, extra, request = self._judge(scope, body, received)
        answer = self._settle(verdict, extra, await self.store.submit(request), received)
        if answer is not None:
            await _answer(send, answer)

    def whole(self, scope: Scope, body: bytes, respond: Callable[[Answer | None], None]) -> None:
        """As `__call__`, for a request whose body is all here: `respond` is called with
        the answer (None: nobody is left to answer) once the request is committed."""
        received = time.time()
        read: bytes | _Refused = body
        try:
            self._check_head(scope)
            if len(body) > self.settings.max_body_size:
                raise _too_large(self.settings.max_body_size)
        except _Refused as refused:
            read = refused
        verdict, extra, request = self._judge(scope, read, received)
        self.store.submit(request).add_done_callback(
            lambda committed: respond(self._settle(verdict, extra, committed.result(), received))
        )

    def _judge(
        self, scope: Scope, body: bytes | _Refused | _Disconnected, received: float
    ) -> tuple[_Verdict, dict[str, str], WireRequest]:
        """The verdict on a request (its body, or why it was not read), what its answer
        adds to the headers, and the request as the store keeps it."""
        extra: dict[str, str] = {}
        verdict: _Verdict
        if isinstance(body, _Refused):
            verdict = ("rejected", body.status, body.reason, body.detail, None, None, False)
            extra, body = body.headers, b""
        elif isinstance(body, _Disconnected):
            verdict = ("rejected", CLIENT_GONE, "client_disconnected", _GONE_DETAIL, None, None,
                       False)  # fmt: skip
            body = b""
        else:
            settings = self.settings
            try:
                update = verify_rolling(
                    body, self.kind, self.tokens, settings.leeway, settings.audience, received
                )
            except VerificationError as refused:
                code, claimed = refused.reason.value, refused.claimed_request_id
                verdict = ("rejected", refused.http_status, code, refused.detail, claimed, None,
                           False)  # fmt: skip
            else:
                how = None if update.token == CURRENT else PREVIOUS_TOKEN
                verdict = ("verified", 200, how, None, update.request_id, len(update.items),
                           update.items_as_sent)  # fmt: skip
        client = scope.get("client")
        client_address = f"{client[0]}:{client[1]}" if client else None
        request = WireRequest._make(
            (received, self.kind, *verdict, client_address, scope["headers"], body)
        )
        return verdict, extra, request

    def _settle(
        self, verdict: _Verdict, extra: dict[str, str], outcome: Outcome, received: float
    ) -> Answer | None:
        """The answer, now that the store has the request (None: nobody is left)."""
        status, http_status, reason, detail, request_id, *_ = verdict
        answer: Answer | None
        if http_status == CLIENT_GONE:
            answer = None  # nobody is left to answer
        elif status == "rejected":
            answer = _response(http_status, {"error": reason, "detail": detail}, extra)
        elif outcome.store_error is not None:
            status, reason = "unstored", _STORE_UNAVAILABLE["error"]
            answer = _response(503, _STORE_UNAVAILABLE)
        elif outcome.status == "rejected":  # the store found the request id used elsewhere
            status, reason = "rejected", _REUSED["error"]
            answer = _response(HTTP_STATUS[Reason.REQUEST_ID_REUSED], _REUSED)
        else:
            status = outcome.status
            said = "ok" if status == "verified" else "duplicate"
            answer = _response(200, {"status": said, "requestId": request_id})
        if self.counts is not None:
            self.counts.answered(self.kind, status, reason or "", time.time() - received)
        return answer

    def _check_head(self, scope: Scope) -> None:
        """Raises _Refused unless method, media type and announced size are acceptable."""
        limit = self.settings.max_body_size
        if HEAD_TOO_LARGE in scope:
            raise _Refused(
                431,
                "headers_too_large",
                f"the request line and headers exceed {self.settings.max_head_size} bytes",
            )
        if scope["method"] != "POST":
            raise _Refused(405, "method_not_allowed", "use POST", {"allow": "POST"})
        content_type = b""
        content_length = -1
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length" and value.isdigit():
                content_length = int(value)
        if not _is_json(content_type):
            shown = content_type.decode("latin-1")[:60] or "none"
            raise _Refused(
                415,
                "unsupported_media_type",
                f"Content-Type must be application/json (got {shown})",
            )
        if content_length > limit:
            raise _too_large(limit)

    async def _read_request(self, scope: Scope, receive: Receive) -> bytes:
        """The body, once method, media type and size are acceptable; else _Refused."""
        self._check_head(scope)
        return await _read_body(receive, self.settings.max_body_size)


class StrayEndpoint:
    """Any other path: answered 404 with the valid paths, and stored and shown like every
    request, because a URL typed wrong in Avasam is otherwise invisible."""

    def __init__(self, settings: ReceiverSettings, store: StoreWriter) -> None:
        self.settings = settings
        self.store = store
        self.detail = "no endpoint here: " + ", ".join(
            f"{kind} updates go to POST {path}" for kind, path in settings.paths.items()
        )
        self.counts = metrics_here()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = time.time()
        try:
            body = await _read_body(receive, self.settings.max_body_size)
        except (_Refused, _Disconnected):
            body = b""  # only kept for the record: the answer is 404 all the same
        client = scope.get("client")
        detail = f"{scope['method']} {scope['path'][:200]}: {self.detail}"
        await self.store.record(
            WireRequest._make(
                (
                    received, STRAY_KIND, "rejected", 404, "not_found", detail, None, None,
                    False, f"{client[0]}:{client[1]}" if client else None, scope["headers"],
                    body,
                )
            )
        )  # fmt: skip
        await _answer(send, _response(404, {"error": "not_found", "detail": self.detail}))
        if self.counts is not None:
            self.counts.answered(STRAY_KIND, "rejected", "not_found", time.time() - received)


_REUSED = {"error": Reason.REQUEST_ID_REUSED.value, "detail": REUSED_DETAIL}
_STORE_UNAVAILABLE = {
    "error": "store_unavailable",
    "detail": "the update could not be stored; please retry",
}


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    reason = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return JSONResponse(
        {"error": reason, "detail": error.detail},
        status_code=error.status_code,
        headers=error.headers,
    )


def create_app(
    settings: ReceiverSettings,
    store_path: StoreLocation,
    output: str = "none",
    output_fd: int | None = None,
    plan: Plan | None = None,
    on_ready: Callable[[], None] | None = None,
    retain: int | None = None,
    on_token_change: Callable[[Rolling], None] | None = None,
    children: Supervisor | None = None,
    elsewhere: Published | None = None,
    alerts: Alerts | None = None,
    durability: str = DEFAULT_DURABILITY,
) -> Starlette:
    """The receiver.  Its store writer, whose printer shows each committed request when
    `output` is "json" or "human" (on `output_fd`), starts and stops with the lifespan,
    prunes events older than `retain` seconds, and commits each new verified update with
    the delivery jobs of `plan`; `on_ready` is called once everything has started.  With
    `settings.follow_profile`, a change of the profile's verification token (a rotation)
    is taken up within about a second, and `on_token_change` hears of it.  `/healthz`
    names the `children` (the supervisor's, which then runs the store writer too) and
    their states; an extra receiver process adds those its listener publishes
    (`elsewhere`).  A SQLite store commits with `durability` (defaults.DURABILITY_LEVELS)."""
    store = StoreWriter(
        store_path, output, output_fd, retain=retain, plan=plan, supervisor=children,
        alerts=alerts, durability=durability,
    )  # fmt: skip

    async def health(_: Request) -> Response:
        """200 while the promises hold; 503 with the reason while requests cannot be
        stored, or a child they depend on (the runner) has been down too long."""
        own = store.supervisor
        states = (elsewhere.states() if elsewhere is not None else {}) | own.states()
        trouble = store.failure or own.trouble()
        if trouble is None and elsewhere is not None:
            trouble = elsewhere.trouble()
        if trouble is not None:
            return JSONResponse(
                {"status": "unavailable", "reason": trouble, "version": __version__,
                 "children": states},
                status_code=503,
            )  # fmt: skip
        return JSONResponse({"status": "ok", "version": __version__, "children": states})

    webhooks = {
        path: WebhookEndpoint(kind, settings, store) for kind, path in settings.paths.items()
    }

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await store.start()
        following = None
        if settings.follow_profile is not None:
            following = asyncio.create_task(
                _follow_tokens(settings, list(webhooks.values()), on_token_change)
            )
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            if following is not None:
                following.cancel()
            await store.close()  # after the last answer: every answered request is stored

    return ReceiverApp(
        webhooks,
        StrayEndpoint(settings, store),
        routes=[Route(HEALTH_PATH, health, methods=["GET"])],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )


TOKEN_LOOK_INTERVAL = 1.0  # seconds between looks at the profile for a changed token


async def _follow_tokens(
    settings: ReceiverSettings,
    endpoints: list[WebhookEndpoint],
    on_change: Callable[[Rolling], None] | None,
) -> None:
    """Look at the config file every TOKEN_LOOK_INTERVAL; a changed verification token (or
    previous token) is in force for the next request, on every endpoint."""
    from pathlib import Path

    from avasam_cli.rotation import VERIFICATION_TOKEN, ProfileWatch, profile_reader

    assert settings.follow_profile is not None
    path, profile = settings.follow_profile
    watch = ProfileWatch(
        Path(path), profile_reader(profile, VERIFICATION_TOKEN), settings.tokens, interval=0
    )
    while True:
        await asyncio.sleep(TOKEN_LOOK_INTERVAL)
        changed = watch.changed()  # a stat; the file is read only when it changed
        if changed is not None:
            for endpoint in endpoints:
                endpoint.tokens = changed
            if on_change is not None:
                on_change(changed)


class ReceiverApp(Starlette):
    """Starlette, with the two webhook paths dispatched before its middleware and router.

    Those layers cost more per request than the rest of the receiver's own work
    except verification (bench/); the webhook endpoints need neither, since they
    answer every outcome themselves.  Everything else (health, 404, lifespan) is
    plain Starlette.
    """

    def __init__(
        self, webhooks: Mapping[str, WebhookEndpoint], stray: StrayEndpoint, **options: Any
    ) -> None:
        routes = [Route(path, endpoint) for path, endpoint in webhooks.items()]
        super().__init__(routes=[*routes, *options.pop("routes", [])], **options)
        # A trailing slash is the same endpoint: Avasam keeps the URL as the seller typed it.
        self.webhooks = {**{path + "/": e for path, e in webhooks.items()}, **webhooks}
        self.stray = stray

    def whole_request(self, scope: Scope) -> WholeRequest | None:
        """Who answers this request once the protocol has read it whole (a webhook POST),
        without ASGI; None: it goes through `__call__` like any."""
        if scope["method"] != "POST":
            return None
        endpoint = self.webhooks.get(scope["path"])
        return endpoint.whole if endpoint is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        endpoint = self.webhooks.get(scope["path"])
        if endpoint is not None:
            await endpoint(scope, receive, send)
        elif scope["path"] == HEALTH_PATH:
            await super().__call__(scope, receive, send)
        else:
            await self.stray(scope, receive, send)
