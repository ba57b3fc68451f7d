"""The inspector's guard: it answers only on its own address (the Host allow-list, against
DNS rebinding), only to whoever has the page's token, and every answer carries the
security headers; state-changing actions also need POST, our origin and the CSRF token
(`Inspector.action_refused`)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from avasam_cli.inspector.app import Inspector

COOKIE = "avasam_inspector"  # and the port: cookies are per host, not per port


def cookie_name(port: int) -> str:
    """The page's cookie on `port`: two inspectors open in one browser keep their own."""
    return f"{COOKIE}_{port}"


SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def allowed_hosts(port: int) -> frozenset[str]:
    """The Host values of our own origins: anything else is a rebinding attempt."""
    return frozenset(f"{host}:{port}" for host in ("127.0.0.1", "localhost", "[::1]"))


class Guard:
    """Before any route: the Host allow-list, the token, and the security headers."""

    def __init__(self, app: Starlette, state: Inspector) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        request = Request(scope)  # type: ignore[arg-type]
        host = request.headers.get("host", "")
        if host not in self.state.hosts:
            answer: Response = JSONResponse(
                {
                    "error": "misdirected",
                    "detail": "this inspector answers only on its own address",
                },
                status_code=421,
            )
        elif not self.state.authorized(request):
            answer = JSONResponse(
                {
                    "error": "unauthorized",
                    "detail": "open the URL printed by avasam, token included",
                },
                status_code=401,
            )
        else:
            await self.app(scope, receive, _with_headers(send))  # type: ignore[arg-type]
            return
        await answer(scope, receive, _with_headers(send))  # type: ignore[arg-type]


def _with_headers(send: Any) -> Any:
    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message.get("headers", []),
                *((name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
            ]
        await send(message)

    return sending
