"""The inspector: a local web page over the store, showing every request as it arrives.

It is served on its own loopback socket, never on the webhook port (the one a
tunnel exposes), by `avasam inspect` or by a process `avasam listen` starts.
Everything it shows came from requests anyone could send, so the page renders
it as text only, and the server defends the page's reach:

- a Host allow-list (421 for anything else): DNS rebinding cannot reach it;
- a per-run random token, in the printed URL, then a SameSite=Strict cookie;
- no CORS headers, and a strict Content-Security-Policy on every answer.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from avasam_cli.delivery.signature import Secrets, no_secrets
from avasam_cli.errors import StoreError
from avasam_cli.inspector import actions, security
from avasam_cli.paths import StoreLocation
from avasam_cli.store.base import EventStore, open_store
from avasam_cli.store.events import StoredEvent, event_json
from avasam_cli.store.follow import Follower
from avasam_cli.webhooks.keys import readable_body

PAGE_SIZE = 100
T = TypeVar("T")
STREAM_POLL = 0.1  # seconds at most between looks (PostgreSQL's NOTIFY wakes it at once)
STREAM_BATCH = 500
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def _stream_event(row: StoredEvent) -> str:
    """A row as the live stream's server-sent event.  orjson, not json.dumps: under a
    burst, json.dumps was a sixth of the inspector's time (bench/listener.py, `page`)."""
    return f"id: {row.id}\nevent: row\ndata: {orjson.dumps(event_json(row)).decode()}\n\n"


def _static(name: str) -> bytes:
    return resources.files("avasam_cli.inspector").joinpath("static", name).read_bytes()


def _decoded_token(token: Any) -> dict[str, Any] | None:
    """A JWT's header and claims, decoded without verifying (the verdict is the stored
    one): what the page shows of it."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    parts: list[Any] = []
    for segment in token.split(".")[:2]:
        try:
            parts.append(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))
        except (ValueError, UnicodeDecodeError):
            return None
    return {"header": parts[0], "claims": parts[1]}


def _skew_seconds(body: Any, claims: Any) -> float | None:
    """How far the token's `iat` is from the envelope's `on`: a clock skew at the sender."""
    if not isinstance(body, dict) or not isinstance(claims, dict):
        return None
    iat, on = claims.get("iat"), body.get("on")
    if not isinstance(iat, int | float) or not isinstance(on, str):
        return None
    try:
        moment = datetime.fromisoformat(on)  # Avasam's seven fractional digits included
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(iat - moment.timestamp(), 3)


def _pretty(body: Any) -> str | None:
    """The body indented; None when it is no JSON, or nested too deeply to write again."""
    if body is None:
        return None
    try:
        return json.dumps(body, indent=2)
    except RecursionError:
        return None


def detail_json(event: StoredEvent, store: EventStore) -> dict[str, Any]:
    """Everything the detail view shows of one request."""
    record = event_json(event)
    text = event.body.decode("utf-8", "replace")
    body: Any = readable_body(event.body, event.kind)  # known keys in canonical casing
    token = _decoded_token(body.get("token")) if isinstance(body, dict) else None
    items = body.get("data") if isinstance(body, dict) else None
    jobs = []
    if event.id is not None:
        for job in store.deliveries(event_id=event.id):
            attempts = store.delivery_attempts(job.id)
            jobs.append({**job._asdict(), "log": [list(a) for a in attempts]})
    record.update(
        {
            "client": event.client,
            "detail": event.detail,
            "headers": [list(pair) for pair in event.headers],
            "body_text": text,
            "body_pretty": _pretty(body),
            "items": items if isinstance(items, list) else None,
            "jwt": token,
            "skew_seconds": _skew_seconds(body, token["claims"] if token else None),
            "deliveries": jobs,
        }
    )
    return record


class Inspector:
    """The app's state: the store (read-only), the token, the allowed Hosts."""

    def __init__(
        self,
        store_path: StoreLocation,
        token: str,
        port: int,
        receiver: Mapping[str, str] | None = None,
        verification_token: str | None = None,
        forward: Mapping[str, str] | None = None,
        acknowledge: Callable[[str], str] | None = None,
    ) -> None:
        self.store_path = store_path
        self.forward = dict(forward or {})  # kind -> the forward target, from configuration
        self.acknowledge = acknowledge  # the API client's, when keys are configured
        self.forward_secrets: Secrets = no_secrets  # signs forwards, as the outbox does
        self.forward_headers: list[tuple[str, str]] = []  # --forward-header, the profile's
        self.token = token
        self.hosts = security.allowed_hosts(port)
        self.cookie = security.cookie_name(port)
        self.origins = frozenset(f"http://{host}" for host in self.hosts)
        self.csrf = secrets.token_urlsafe(24)
        # Where replays go: the receiver's endpoint for each kind, from our configuration,
        # never from a request (the page cannot be made to reach other hosts).
        self.receiver = dict(receiver or {})
        # Re-signs use the token in force: a rotation while the page is open is followed.
        self.signing_token: Callable[[], str | None] = lambda: verification_token
        self.stopping = asyncio.Event()
        self._store: EventStore | None = None
        self._was_missing = False

    @property
    def store(self) -> EventStore:
        """The store, read-only; a missing one reads as empty until a listener makes it."""
        if self._store is not None and self._was_missing and self.store_path.exists():
            self._store.close()
            self._store = None
        if self._store is None:
            self._was_missing = not self.store_path.exists()
            self._store = open_store(self.store_path, read_only=True)
        return self._store

    def close(self) -> None:
        self.stopping.set()
        if self._store is not None:
            self._store.close()

    async def off_the_loop(
        self, thread: concurrent.futures.Executor, call: Callable[..., T], *args: Any
    ) -> T | None:
        """`call(*args)` on a stream's thread; None at once when the inspector stops."""
        job = asyncio.get_running_loop().run_in_executor(thread, call, *args)
        stop = asyncio.ensure_future(self.stopping.wait())
        either: set[asyncio.Future[Any]] = {job, stop}
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        return job.result() if job in done else None

    def follower(self, after: int, filters: Mapping[str, str]) -> Follower:
        """A live stream's own reader of the store (one that does not exist yet is waited
        for), the rows after `after` that pass `filters`."""

        def open_reader() -> EventStore:
            if isinstance(self.store_path, Path) and not self.store_path.exists():
                raise StoreError("no event store yet")
            return open_store(self.store_path, read_only=True)

        return Follower(
            open_reader,
            after,
            STREAM_BATCH,
            lambda reader, last, n: reader.search(n, after_id=last, filters=filters),
        )

    def authorized(self, request: Request) -> bool:
        given = request.cookies.get(self.cookie) or request.query_params.get("token") or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def action_refused(self, request: Request) -> str | None:
        """Why a state-changing request is refused (None: it may go): POST only, from our
        own origin, with the page's CSRF token in a custom header."""
        if request.method != "POST":
            return "actions are POST only"
        if request.headers.get("origin") not in self.origins:
            return "the request did not come from this page (Origin)"
        if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
            return "the request did not come from this page (Sec-Fetch-Site)"
        given = request.headers.get("x-avasam-csrf", "")
        if not hmac.compare_digest(given.encode(), self.csrf.encode()):
            return "the page's CSRF token is missing or wrong: reload the page"
        return None


Endpoint = Callable[[Request], Awaitable[Response]]


def _filters(request: Request) -> dict[str, str]:
    from avasam_cli.store.sql import SEARCH_FILTERS

    return {
        name: request.query_params[name] for name in SEARCH_FILTERS if name in request.query_params
    }


def create_inspector(
    store_path: StoreLocation,
    token: str,
    port: int,
    receiver: Mapping[str, str] | None = None,
    verification_token: str | None = None,
    forward: Mapping[str, str] | None = None,
    acknowledge: Callable[[str], str] | None = None,
) -> security.Guard:
    """The inspector's app for a server on 127.0.0.1:`port`; its replays go to the
    `receiver` URL of each kind (re-signed ones signed with `verification_token`) or to
    the `forward` target of each kind; `acknowledge` is the API client's."""
    state = Inspector(store_path, token, port, receiver, verification_token, forward, acknowledge)

    async def page(request: Request) -> Response:
        if "token" in request.query_params:  # the printed URL: keep it in a cookie, not history
            answer: Response = RedirectResponse("/", status_code=303)
            answer.set_cookie(state.cookie, token, httponly=True, samesite="strict", path="/")
            return answer
        return Response(_static("index.html"), media_type="text/html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        suffix = Path(name).suffix
        if name not in ("app.js", "style.css"):
            return JSONResponse({"error": "not_found"}, status_code=404)
        return Response(_static(name), media_type=STATIC_TYPES[suffix])

    async def events(request: Request) -> Response:
        before = request.query_params.get("before")
        rows = state.store.search(
            PAGE_SIZE, before_id=int(before) if before and before.isdigit() else None,
            filters=_filters(request),
        )  # fmt: skip
        return JSONResponse({"events": [event_json(row) for row in rows]})

    async def one(request: Request) -> Response:
        event = state.store.find(str(request.path_params["event_id"]))
        if event is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(detail_json(event, state.store))

    async def counts(_: Request) -> Response:
        return JSONResponse(
            {"events": state.store.count_by_status(), "deliveries": state.store.delivery_counts()}
        )

    async def stream(request: Request) -> Response:
        start = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        filters = _filters(request)

        async def rows() -> AsyncIterator[bytes]:
            follower = state.follower(int(start) if start.isdigit() else 0, filters)
            # One thread per stream, for its reader's every call, its close last: a
            # SQLite connection closed while another thread reads from it crashes.
            thread = concurrent.futures.ThreadPoolExecutor(1, "avasam-stream")
            yield b"retry: 1000\n\n"
            try:
                while not state.stopping.is_set() and not await request.is_disconnected():
                    found = await state.off_the_loop(thread, follower.new_rows) or []
                    if found:  # one write for what was read: not one per row
                        yield "".join(map(_stream_event, found)).encode()
                    # Caught up: wait for more, so that under a burst each read takes what
                    # STREAM_POLL brought rather than the row or two of a commit.
                    if len(found) < follower.batch:
                        await state.off_the_loop(thread, follower.wait, STREAM_POLL)
            finally:
                thread.submit(follower.close)  # after the call in flight, if any
                thread.shutdown(wait=False)

        return StreamingResponse(rows(), media_type="text/event-stream")

    async def session(_: Request) -> Response:
        return JSONResponse(
            {
                "csrf": state.csrf,
                "receiver": state.receiver,
                "forward": state.forward,
                "can_resign": state.signing_token() is not None,
                "can_acknowledge": state.acknowledge is not None,
            }
        )

    async def raw(request: Request) -> Response:
        event = state.store.find(str(request.path_params["event_id"]))
        if event is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        disposition = f'attachment; filename="event-{event.id}.json"'
        return Response(
            event.body,
            media_type="application/octet-stream",
            headers={"content-disposition": disposition},
        )

    async def act(request: Request) -> Response:
        return await actions.act(state, request)

    async def acknowledge_pending(request: Request) -> Response:
        return await actions.acknowledge_pending(state, request)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        state.close()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/api/events", events),
            Route("/api/events/{event_id:int}", one),
            Route("/api/events/{event_id:int}/raw", raw),
            Route("/api/events/{event_id:int}/{action:str}", act, methods=["GET", "POST"]),
            Route("/api/session", session),
            Route("/api/acknowledge-pending", acknowledge_pending, methods=["GET", "POST"]),
            Route("/api/counts", counts),
            Route("/api/stream", stream),
        ],
    )
    return security.Guard(app, state)
