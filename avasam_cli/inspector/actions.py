"""What the inspector's page can do: the actions on one request (`ACTIONS`), and
acknowledging every pending update; each refused with a reason the page shows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from avasam_cli.errors import CredentialsRefused, StoreError
from avasam_cli.store.base import open_store
from avasam_cli.store.events import StoredEvent

if TYPE_CHECKING:
    from avasam_cli.inspector.app import Inspector


def _refusal(error: str, detail: str, status: int = 409) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


async def act(state: Inspector, request: Request) -> Response:
    """A state-changing action on one request, by its name in ACTIONS."""
    why = state.action_refused(request)
    if why is not None:
        return _refusal("forbidden", why, 403)
    action = ACTIONS.get(request.path_params["action"])
    event = state.store.find(str(request.path_params["event_id"]))
    if event is None or action is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return await action(state, event, request)


async def _replay(state: Inspector, event: StoredEvent, request: Request) -> Response:
    """Replay it to the receiver as it was, or (`resign`) re-signed as new."""
    url = state.receiver.get(event.kind)
    if url is None:
        return _refusal("no_target", f"no receiver endpoint for {event.kind!r} is configured")
    from avasam_cli.delivery.replay import replay_headers, resigned, stored_items

    body, request_id = event.body, event.request_id
    if request.path_params["action"] == "resign":
        signing = state.signing_token()
        if signing is None:
            return _refusal("no_token", "no verification token is configured: `avasam configure`")
        asked = await request.json() if await request.body() else {}
        items = asked.get("items") if isinstance(asked, dict) else None
        items = items if isinstance(items, list) else stored_items(event)
        if items is None:
            return _refusal("no_items", "this request holds no items to re-sign")
        body, request_id = resigned(items, signing)
    return JSONResponse(await _send(url, body, replay_headers(event)) | {"request_id": request_id})


async def _forward(state: Inspector, event: StoredEvent, _: Request) -> Response:
    """The stored update to the forward target configured for its kind, as the outbox
    sends it (marker headers included)."""
    import httpx

    from avasam_cli.delivery.forward import forward
    from avasam_cli.delivery.replay import replay_headers

    url = state.forward.get(event.kind)
    if url is None or event.status != "verified":
        return _refusal("no_target", f"no forward target is configured for {event.kind!r}")
    # As the outbox sends it: the forward headers, and the attempt's number after the job's.
    jobs = state.store.deliveries(event_id=event.id, target=url) if event.id else []
    attempt = 1 + sum(job.attempts for job in jobs if job.job == "forward")
    extra = [*state.forward_headers, ("x-avasam-delivery-attempt", str(attempt))]
    async with httpx.AsyncClient() as client:
        result = await forward(
            client, url, event.kind, replay_headers(event), event.body, 10, extra,
            state.forward_secrets(), event.request_id,
        )  # fmt: skip
    return JSONResponse(
        {"status": result.code, "answer": result.excerpt, "ms": result.latency_ms, "to": url}
    )


async def _acknowledge(state: Inspector, event: StoredEvent, _: Request) -> Response:
    """Acknowledge a verified stock update to Avasam, and note it on the stored event."""
    from avasam_cli.delivery.acknowledge import acknowledge_one
    from avasam_cli.store.jobs import is_test_event
    from avasam_cli.webhooks.kinds import KINDS

    if state.acknowledge is None:
        return _refusal("no_keys", "no API keys are configured: `avasam configure`")
    acknowledged = event.kind in KINDS and KINDS[event.kind].acknowledged
    if not acknowledged or event.status != "verified" or event.request_id is None:
        return _refusal("not_acknowledged", "only verified stock updates are acknowledged")
    if is_test_event(event.headers_json):
        return _refusal("test_event", "a test event from `avasam send-test` is never acknowledged")
    request_id, acknowledge = event.request_id, state.acknowledge

    def run() -> dict[str, Any]:
        with open_store(state.store_path) as store:  # the page's own store is read-only
            outcome = acknowledge_one(acknowledge, request_id, store)
        return {"status": 200 if outcome.acknowledged else None, "answer": outcome.detail}

    return JSONResponse(await asyncio.to_thread(run))


async def acknowledge_pending(state: Inspector, request: Request) -> Response:
    """What `avasam ack --pending --yes` does, for the page: through the outbox of the
    store the page shows (each acknowledgement claimed once, none before its forward);
    its summary back."""
    why = state.action_refused(request)
    if why is not None:
        return _refusal("forbidden", why, 403)
    acknowledge = state.acknowledge
    if acknowledge is None:
        return _refusal("no_keys", "no API keys are configured: `avasam configure`")

    def run() -> str:
        from avasam_cli.delivery.acknowledge import acknowledge_all, claim_pending

        with open_store(state.store_path) as store:
            return acknowledge_all(acknowledge, claim_pending(store, None, None))

    try:
        said = await asyncio.get_running_loop().run_in_executor(None, run)
    except (StoreError, CredentialsRefused) as error:
        return JSONResponse({"status": None, "answer": error.message})
    return JSONResponse({"status": 200, "answer": said})


async def _send(url: str, body: bytes, headers: list[tuple[str, str]]) -> dict[str, Any]:
    """POST to the receiver; its answer for the page."""
    import time

    import httpx

    from avasam_cli.delivery.replay import replay_outcome
    from avasam_cli.text import excerpt

    start = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return {"status": None, "answer": f"{type(error).__name__}: nothing answered at {url}"}
    took = round((time.perf_counter() - start) * 1000, 1)
    return {
        "status": answer.status_code,
        "answer": excerpt(answer.text, 300),
        "ms": took,
        "outcome": replay_outcome(answer.text),  # the page suggests re-signing for these
    }


Action = Callable[["Inspector", StoredEvent, Request], Awaitable[Response]]
# What the page can do with one request: replay it to the receiver, re-sign it as new,
# replay it to the configured forward target, or acknowledge it to Avasam.  A new action
# is a handler and its entry here (and its button in static/app.js).
ACTIONS: Mapping[str, Action] = {
    "replay": _replay,
    "resign": _replay,
    "forward": _forward,
    "acknowledge": _acknowledge,
}
