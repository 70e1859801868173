"""Every HTTP request: its request id, an access log line and its latency by route template.

An ASGI middleware around the whole app. The request id is the caller's `X-Request-Id` (at most
128 characters) or a new one; handlers read it through `service.http.request_id`, ingest puts
it on the raw record's `request-id` header, and every answer carries it back in `X-Request-Id`.
The route label is the matched route's template (`/v1/deliveries/{campaignId}/...`), never the
raw path, so the histogram's series stay few.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics

log = logging.getLogger("mailfold.access")

UNMATCHED = "unmatched"  # the route label of a path no route answers (404)
MAX_ID_CHARS = 128


def given_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if 0 < len(text) <= MAX_ID_CHARS else None
    return None


def route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class AccessLog:
    """Times each HTTP request, counts it by route template and status, and logs one line."""

    def __init__(self, app: ASGIApp, new_id: Any) -> None:
        self.app = app
        self.new_id = new_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = given_request_id(scope) or self.new_id()
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before starting a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", rid.encode("latin-1", "replace")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.record(scope, rid, status, time.perf_counter() - started)

    @staticmethod
    def record(scope: Scope, rid: str, status: int, seconds: float) -> None:
        method, route = scope["method"], route_of(scope)
        metrics.HTTP_SECONDS.observe(seconds, method=method, route=route, status=status)
        log.info(
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": rid,
            },
        )
