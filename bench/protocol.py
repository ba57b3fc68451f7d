"""What the HTTP layer costs a whole webhook request, without sockets or a store.

Usage: python bench/protocol.py [--requests 100000] [--repeats 5]

The listener's protocol (uvicorn's httptools protocol with receiver.protocol's
subclass, set up as `listen` sets it) is fed the request wrk sends, whole, in a loop.
The app takes it whole and answers at once, and the transport's write does nothing.
So the figure is the layer alone: parsing, the scope, uvicorn's request cycle, the
answer's bytes and the keep-alive bookkeeping.

Beside it, a minimal protocol on the same parser does only what a whole request needs:
the method, path, headers and body, then the answer's bytes. The difference is what
taking whole requests past uvicorn's cycle could save at most (docs/performance.md,
2026-12-08). Both figures are the best of --repeats runs, in microseconds a request.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.server import ServerState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avasam_cli.defaults import DEFAULT_WEBHOOK_PATHS
from avasam_cli.receiver.protocol import STATUS_LINE, Answer, ConnectionLimits, protocol_with

ANSWER: Answer = (
    200,
    [(b"content-type", b"application/json"), (b"content-length", b"44")],
    b'{"status":"ok","requestId":"run-1-0000001"}',
)
BODY = b'{"requestId":"run-1-0000001","on":"stock","token":"' + b"e" * 480 + b'","data":[]}'
REQUEST = (
    b"POST " + DEFAULT_WEBHOOK_PATHS["stock"].encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:8787\r\n"
    b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
) + BODY


class AnsweringApp:
    """Takes every request whole and answers at once."""

    def whole_request(self, scope: Any) -> Callable[..., None]:
        return self.whole

    def whole(self, scope: Any, body: bytes, respond: Callable[[Answer], None]) -> None:
        respond(ANSWER)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a whole request went the ASGI way")


class NullTransport:
    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8787), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


class MinimalProtocol:
    """The least a whole request needs from the same parser."""

    def __init__(self, transport: NullTransport, app: AnsweringApp) -> None:
        self.transport = transport
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        scope = {
            "type": "http",
            "method": self.parser.get_method().decode("ascii"),
            "path": httptools.parse_url(self.url).path.decode("ascii"),
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
        }
        self.app.whole(scope, self.body, self._respond)

    def _respond(self, answer: Answer) -> None:
        status, headers, body = answer
        content = [STATUS_LINE[status], b"date: Tue, 08 Dec 2026 02:00:00 GMT\r\n"]
        for name, value in headers:
            content += (name, b": ", value, b"\r\n")
        content += (b"\r\n", body)
        self.transport.write(b"".join(content))


def per_request(feed: Callable[[bytes], None], requests: int, repeats: int) -> float:
    """Microseconds a request, the best of `repeats` runs."""
    for _ in range(requests // 50):  # warm up
        feed(REQUEST)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(requests):
            feed(REQUEST)
        best = min(best, (time.perf_counter() - started) / requests)
    return best * 1e6


async def measure(requests: int, repeats: int) -> tuple[float, float]:
    app = AnsweringApp()
    limits = ConnectionLimits(max_head_size=64 * 1024, head_timeout=30, body_timeout=30)
    config = Config(app=app, http=protocol_with(limits), ws="none", lifespan="off",
                    log_level="warning", access_log=False, server_header=False,
                    proxy_headers=False)  # fmt: skip
    config.load()
    protocol = config.http_protocol_class(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    ours = NullTransport()
    protocol.connection_made(ours)  # type: ignore[arg-type]
    listener = per_request(protocol.data_received, requests, repeats)
    minimal_transport = NullTransport()
    minimal = per_request(MinimalProtocol(minimal_transport, app).data_received, requests, repeats)
    answered = requests // 50 + requests * repeats  # the warm-up's too
    if ours.writes != answered or minimal_transport.writes != answered:
        raise RuntimeError("some requests went unanswered")
    return listener, minimal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    # The loop `listen` runs on where uvicorn[standard] brings it: its timers are in the
    # measured path (the keep-alive timer armed at every answer).
    try:
        import uvloop

        run: Callable[[Any], tuple[float, float]] = uvloop.run
    except ImportError:
        run = asyncio.run
    listener, minimal = run(measure(options.requests, options.repeats))
    print(f"the listener's protocol: {listener:6.2f} us a whole request")
    print(f"a minimal protocol:      {minimal:6.2f} us a whole request")
    print(f"what the layer costs above the minimum: {listener - minimal:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
