"""Why a webhook was refused: the last refusals per account and provider, kept in PostgreSQL.

The request path only appends to a bounded in-memory buffer (never awaits, never raises); a
background task writes the buffer every second in one statement and trims each account and
provider to its newest `KEPT`. A slow or absent database costs refusals, not requests: a full
buffer drops new refusals, and a failed write drops its batch, each counted in
`mailfold_refusals_dropped_total`. Kept: time, provider, status, reason, source address and
request id; never a body, a header or a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from service import db, metrics
from service.http import authenticate, json, service_of
from service.read.params import bad, integer, known_only
from service.read.recipients import iso
from service.webhooks import PROVIDERS

log = logging.getLogger("mailfold.refusals")

KEPT = 100  # per account and provider
BUFFERED = 1000  # refusals waiting for the next write; more are dropped
FLUSH_EVERY_S = 1.0
WRITE_TIMEOUT_S = 5.0
REASON_CHARS = 500
PARAMS = {"provider", "limit"}


@dataclass(frozen=True, slots=True)
class Refusal:
    account: str
    provider: str
    refused_at: datetime
    status: int
    reason: str
    remote_addr: str | None
    request_id: str | None


class RefusalLog:
    """A small buffer of refusals, written to PostgreSQL by `run()` in the background."""

    def __init__(self, pool: asyncpg.Pool[Any], every_s: float = FLUSH_EVERY_S) -> None:
        self._pool = pool
        self._every_s = every_s
        self._buffer: list[Refusal] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, refusal: Refusal) -> None:
        """Keep a refusal for the next write; drops it (counted) when the buffer is full."""
        if len(self._buffer) >= BUFFERED:
            metrics.REFUSALS_DROPPED.inc()
            return
        self._buffer.append(refusal)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            await self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        """Write and trim what is buffered; on any failure the batch is dropped and counted."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            await asyncio.wait_for(self._write(batch), WRITE_TIMEOUT_S)
        except Exception as exc:  # the log of refusals must never become an outage of its own
            metrics.REFUSALS_DROPPED.inc(len(batch))
            log.warning("refusals not recorded (%d dropped): %r", len(batch), exc)

    async def _write(self, batch: list[Refusal]) -> None:
        columns = [
            [r.account for r in batch],
            [r.provider for r in batch],
            [r.refused_at for r in batch],
            [r.status for r in batch],
            [r.reason[:REASON_CHARS] for r in batch],
            [r.remote_addr for r in batch],
            [r.request_id for r in batch],
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(db.QUERIES["record_webhook_refusals"], *columns)
            await conn.execute(db.QUERIES["trim_webhook_refusals"], *columns[:2], KEPT)


def refused(
    account: str, provider: str, status: int, reason: str, remote: str | None, rid: str | None
) -> Refusal:
    return Refusal(account, provider, datetime.now(UTC), status, reason, remote, rid)


def refusal_json(row: Any) -> dict[str, Any]:
    return {
        "provider": row["provider"],
        "refusedAt": iso(row["refused_at"]),
        "status": row["status"],
        "reason": row["reason"],
        "remoteAddr": row["remote_addr"],
        "requestId": row["request_id"],
    }


async def latest(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any],
    account: str,
    provider: str | None,
    limit: int = KEPT,
) -> list[Any]:
    """An account's latest refusals, newest first (for one provider, or all)."""
    return list(await conn.fetch(db.QUERIES["list_webhook_refusals"], account, provider, limit))


async def endpoint(request: Request) -> Response:
    """GET /v1/webhooks/refusals: the caller's own account only."""
    svc = service_of(request)
    account = await authenticate(request)
    params = request.query_params
    known_only(params, PARAMS)
    provider = params.get("provider")
    if provider is not None and provider not in PROVIDERS:
        raise bad("provider", f"{provider[:100]!r} is not one of {', '.join(PROVIDERS)}")
    limit = integer(params, "limit", KEPT, 1, KEPT)
    rows = await latest(svc.pool, account, provider, limit)
    return json({"refusals": [refusal_json(r) for r in rows]})
