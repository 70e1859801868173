"""HTTP plumbing shared by the service's endpoints: JSON responses, bodies, callers."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.errors import MailfoldError, TooLarge, Unavailable
from service.settings import Settings

if TYPE_CHECKING:
    from service.app import Service

_ids = random.Random()


def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(exc: MailfoldError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Basic realm="mailfold"'}
    return json(exc.body(), exc.status, headers)


def remote_addr(request: Request, settings: Settings) -> str | None:
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else None


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def new_request_id() -> str:
    """32 random hex digits. A trace id, not a secret: Mersenne Twister (seeded from the OS at
    start) costs a tenth of uuid4, which makes a system call per id."""
    return f"{_ids.getrandbits(128):032x}"


def request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if 0 < len(given) <= 128 else new_request_id()


def service_of(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


async def authenticate(request: Request) -> str:
    """The account of the request's Basic credentials (401/403 otherwise)."""
    svc = service_of(request)
    remote = remote_addr(request, svc.settings)
    return await svc.auth.account(request.headers.get("authorization"), remote)
