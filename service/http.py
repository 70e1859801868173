"""HTTP plumbing shared by the service's endpoints: JSON responses, bodies, callers."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.errors import MailfoldError, RequestTimeout, TooLarge, Unavailable
from service.settings import Network, Settings, trusted_networks

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


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# MAILFOLD_TRUSTED_PROXIES, parsed once per distinct value rather than per request.
_trusted = functools.lru_cache(maxsize=8)(trusted_networks)


def remote_addr(request: Request, settings: Settings) -> str | None:
    """The caller's address, for allow lists and the raw record (see `client_address`)."""
    peer = request.client.host if request.client else None
    if not settings.trusted_proxies:
        return peer
    forwarded = request.headers.getlist("x-forwarded-for")
    return client_address(peer, forwarded, _trusted(settings.trusted_proxies))


def client_address(
    peer: str | None, forwarded: Sequence[str], trusted: Sequence[Network]
) -> str | None:
    """The peer's address, unless the peer is a trusted proxy: then X-Forwarded-For (every
    line, in order) read right to left past trusted proxies to the first address that is not one.

    Only the entries trusted proxies appended are believed; anything left of the first untrusted
    one is the caller's to write. A malformed entry ends the walk at the last trusted hop.
    """
    hop = parse_ip(peer) if peer else None
    if hop is None:
        return peer
    if not is_trusted(hop, trusted):
        return str(hop)
    for entry in reversed([e for line in forwarded for e in line.split(",")]):
        ip = parse_ip(entry)
        if ip is None:
            break
        hop = ip
        if not is_trusted(ip, trusted):
            break
    return str(hop)


def parse_ip(text: str) -> IPAddress | None:
    """An address literal, IPv4-mapped IPv6 taken as the IPv4 it carries; None if malformed."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_trusted(ip: IPAddress, trusted: Sequence[Network]) -> bool:
    return any(ip in net for net in trusted)


class BodyReads:
    """Caps the request bodies being read at once (503 + Retry-After beyond the cap) and the time
    one may take (408): a sender trickling bytes holds neither a slot nor memory for long."""

    def __init__(self, most: int, timeout_s: float, retry_after: int) -> None:
        self._slots = asyncio.Semaphore(most)
        self._timeout_s = timeout_s
        self._retry_after = retry_after

    async def read(self, request: Request, limit: int) -> bytes:
        if self._slots.locked():
            raise Unavailable("too many request bodies being read", retry_after=self._retry_after)
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout_s):
                    return await _receive(request, limit)
            except TimeoutError as exc:
                message = f"body not received within {self._timeout_s:g} s"
                raise RequestTimeout(message) from exc


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) as soon as it passes `limit` bytes; 503 while too many
    bodies are being read, 408 when it does not arrive in time (`BodyReads`)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {declared} bytes exceeds the limit of {limit}")
    return await service_of(request).body_reads.read(request, limit)


async def _receive(request: Request, limit: int) -> bytes:
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
    """The request's id: set by the access middleware (service/access.py) from X-Request-Id or
    new; read from the header here only when the app runs without it."""
    known = getattr(request.state, "request_id", None)
    if isinstance(known, str):
        return known
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
