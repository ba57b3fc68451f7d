"""uvicorn's httptools protocol with the limits it lacks for a public endpoint.

uvicorn already closes idle keep-alive connections (`timeout_keep_alive`) and
answers 503 past `limit_concurrency`; these are set by `listen`.  What it does
not do, this subclass adds:

- a cap on the request head (request line and headers): past it, the rest of the
  head is read and dropped, and the app answers 431 (`HEAD_TOO_LARGE` in the
  scope), so memory stays bounded whatever a client sends;
- a deadline for a request head that is not complete (slow or idle clients);
- a deadline for a request body that stops arriving (the clock restarts with
  every chunk).

- a lingering close: when a connection ends with our answer while the client is
  still sending its body (a 413 to `Connection: close` or HTTP/1.0), closing at
  once would make the kernel answer the client's next bytes with a reset, and
  most clients then lose the answer.  So the answer is written, our side is
  half-closed, and what the client still sends is read and dropped, up to
  LINGER_BYTES or LINGER_SECONDS.  (On keep-alive connections uvicorn already
  reads and drops an unread body.)

A connection that misses a deadline is closed.  The timers are only set when a
head or a body is still incomplete once the bytes at hand are parsed, so the
usual request (head and body in one read) costs no timer at all.

- a whole-request path: a request the app takes whole (`whole_request`: the
  webhook POSTs) whose head and body came in one read is handed over in one call
  with its body, and answered in one write from the app's callback: no ASGI task,
  no messages, no cycle's send (they cost the receiver about a sixth of its time
  per request: bench/).  A request still incomplete after the read goes the ASGI
  way, as does every other request, so the edges (a slow body, a client gone, a
  pipelined request) keep uvicorn's handling.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

# Scope key set when the head outgrew the cap: its size in bytes so far.
HEAD_TOO_LARGE = "avasam.head_too_large"
HEADERS_KEPT = 32  # headers kept (and stored) from a head that is too large
HEADER_VALUE_KEPT = 256  # bytes kept of each of those values
TLS_HANDSHAKE = 0x16  # the first byte of a TLS handshake record (then 0x03): https://
_TLS_WARNED: set[str] = set()  # client hosts already told, so a scanner cannot flood stderr
LINGER_BYTES = 64 * 1024 * 1024  # dropped at most after an answer that ends the connection
LINGER_SECONDS = 5.0  # and for at most this long

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body
# Takes (scope, body, respond) and calls respond once with the answer (None: no answer).
WholeRequest = Callable[[Any, bytes, Callable[[Answer | None], None]], None]
_INTERNAL_ERROR: Answer = (
    500,
    [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
    b"Internal Server Error",
)


@dataclass(frozen=True)
class ConnectionLimits:
    max_head_size: int
    head_timeout: float
    body_timeout: float


def protocol_with(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `http` setting, with these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_size = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_activity = 0.0
        self._in_head = False
        self._in_body = False
        self._lingering: asyncio.TimerHandle | None = None
        self._linger_left = 0
        # The app's `whole_request`, unless it is wrapped (a proxy-headers middleware must
        # see every request).
        self._whole_requests: Callable[[Any], WholeRequest | None] | None = getattr(
            self.app, "whole_request", None
        )
        self._heading = False  # inside uvicorn's on_headers_complete
        self._whole: tuple[RequestResponseCycle, Any, WholeRequest] | None = None

    # --- the head ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        if data and data[0] == TLS_HANDSHAKE and self.cycle is None and data[:2] == b"\x16\x03":
            self._refuse_tls()
            return
        if self._lingering is not None:  # the answer is out: drop the rest of the body
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self.transport.close()
            return
        super().data_received(data)
        if self._whole is not None:  # its body did not all come with its head
            cycle, app, _ = self._whole
            self._whole = None
            self._start_asgi_task(cycle, app)
        if self._in_head and self._head_timer is None:
            self._arm_head_timer()
        elif self._in_body and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._check_body)

    def _refuse_tls(self) -> None:
        """HTTPS sent to this plain-HTTP port: say so in words (once per client host),
        instead of uvicorn's bare "Invalid HTTP request received"."""
        client = self.transport.get_extra_info("peername")
        host = client[0] if client else "?"
        if host not in _TLS_WARNED:
            _TLS_WARNED.add(host)
            print(
                f"Warning: {host} spoke HTTPS (TLS) to this port, which speaks plain HTTP: "
                "use http:// for it, or put a TLS terminator (a tunnel, a reverse proxy) in "
                "front",
                file=sys.stderr,
                flush=True,
            )
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0
        self._in_head = True

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._close)

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size <= self.limits.max_head_size:
            super().on_url(url)
        else:
            self.scope[HEAD_TOO_LARGE] = self._head_size  # type: ignore[literal-required]

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size <= self.limits.max_head_size:
            super().on_header(name, value)
            return
        self.scope[HEAD_TOO_LARGE] = self._head_size  # type: ignore[literal-required]
        if len(self.headers) < HEADERS_KEPT:  # a bounded excerpt, for the stored refusal
            self.headers.append((name[:HEADER_VALUE_KEPT].lower(), value[:HEADER_VALUE_KEPT]))

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._in_head = False
        self._in_body = True
        self._body_activity = self.loop.time()
        self._heading = True
        try:
            super().on_headers_complete()
        finally:
            self._heading = False

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if self._heading and app is self.app and self._whole_requests is not None:
            whole = self._whole_requests(cycle.scope)
            if whole is not None:  # taken whole if its body comes in this same read
                self._whole = (cycle, app, whole)
                return
        # Whether the answer ends the connection may be decided later: see close_after_answer.
        cycle.transport = _LingeringClose(self, cycle)  # type: ignore[assignment]
        super()._start_asgi_task(cycle, app)

    def _respond(self, cycle: RequestResponseCycle, answer: Answer | None) -> None:
        """A whole request's answer: what the cycle's send does for a complete response."""
        if answer is None or cycle.disconnected or self.transport.is_closing():
            return
        status, headers, body = answer
        cycle.response_started = cycle.response_complete = True
        content = [STATUS_LINE[status]]
        for name, value in (*cycle.default_headers, *headers):
            content += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", body)
        self.transport.write(b"".join(content))
        if not cycle.keep_alive:
            self.transport.close()  # its body was read whole: nothing to linger for
        cycle.on_response()

    def close_after_answer(self) -> None:
        """The cycle's close: at once when the request was read whole, else lingering."""
        if self.cycle is None or not self.cycle.more_body or self.transport.is_closing():
            self.transport.close()
            return
        self._in_body = False  # the body deadline no longer applies; the linger's does
        self._linger_left = LINGER_BYTES
        self._lingering = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        self.transport.write_eof()  # after the answer already written
        self.flow.resume_reading()

    # --- the body ----------------------------------------------------------------
    def on_body(self, body: bytes) -> None:
        self._body_activity = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()
        if self._whole is not None:  # head and body in one read: the app takes it whole
            cycle, _, whole = self._whole
            self._whole = None
            body, cycle.body = bytes(cycle.body), bytearray()
            respond = functools.partial(self._respond, cycle)
            try:
                whole(cycle.scope, body, respond)
            except Exception:  # a bug: answered and logged as uvicorn does for an app's
                self.logger.exception("Exception in the receiver taking a request whole")
                respond(_INTERNAL_ERROR)

    def _check_body(self) -> None:
        idle = self.loop.time() - self._body_activity
        if idle >= self.limits.body_timeout:
            self._close()
        else:
            remaining = self.limits.body_timeout - idle
            self._body_timer = self.loop.call_later(remaining, self._check_body)

    # --- either ------------------------------------------------------------------
    def _close(self) -> None:
        self._head_timer = self._body_timer = None
        self._in_head = self._in_body = False
        if not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._lingering):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        super().connection_lost(exc)


class _LingeringClose:
    """The transport as a request's cycle sees it: the answer's head is held until its
    body, so that both leave in one write (uvicorn writes them apart: two system calls and
    two segments the client wakes up for); closing lingers (see the module's docstring);
    all else is the transport."""

    def __init__(self, protocol: GuardedHttpToolsProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._head_seen = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif not self._head_seen and self._cycle.response_started:  # the head (not a 100)
            self._head, self._head_seen = data, True
            self._protocol.loop.call_soon(self._release)  # should no body follow at once
            return
        self._transport.write(data)

    def _release(self) -> None:
        if self._head is not None:
            data, self._head = self._head, None
            self._transport.write(data)

    def close(self) -> None:
        self._release()
        self._protocol.close_after_answer()
