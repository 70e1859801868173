"""The ingest baselines: bare Starlette routes doing the same HTTP I/O without Mailfold's logic,
served exactly as `mailfold serve` serves the real app (uvicorn, one worker, same defaults).

    python -m bench.baseline --port PORT
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.http import new_request_id
from service.server import HTTP, LOOP


async def webhook(request: Request) -> Response:
    """Read and parse the body, answer as the real endpoint does (no verify, no produce)."""
    orjson.loads(await request.body())
    body = orjson.dumps({"accepted": True, "request_id": new_request_id()})
    return Response(body, 200, media_type="application/json")


async def echo(request: Request) -> Response:
    """Answer with the body as received."""
    return Response(await request.body(), 202, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/events", echo, methods=["POST"]),
            Route("/webhooks/{provider}/{account}", webhook, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.baseline")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(), host="127.0.0.1", port=args.port, log_level="warning", loop=LOOP, http=HTTP
    )


if __name__ == "__main__":
    main()
