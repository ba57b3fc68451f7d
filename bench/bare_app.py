"""The floor any receiver pays: a bare Starlette app that reads the body, parses it and answers.

Usage: python bench/bare_app.py PORT  (served by uvicorn with the listener's settings)
"""

from __future__ import annotations

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def receive(request: Request) -> Response:
    json.loads(await request.body())
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/webhooks/stock", receive, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        server_header=False,
    )
