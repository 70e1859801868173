"""The recipient list of a delivery, any filter, as CSV or JSON lines, streamed.

Rows come from a server-side cursor in one read-only repeatable-read transaction on a
connection of the export's own (not the pool's, so a long export never starves the API), and go
out in chunks as they are read: memory stays flat for a million recipients. A few exports run
at once, and fewer for any one account, so one account's exports never use up another's; past
either limit the answer is 503 with Retry-After, naming the limit.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service import db
from service.errors import Unavailable
from service.http import authenticate, service_of
from service.read.params import bad
from service.read.recipients import (
    COLUMNS,
    FIELD_NAMES,
    FILTERS,
    Query,
    build,
    delivery_ids,
    require_delivery,
    to_json,
)

PARAMS = FILTERS | {"sort", "format"}
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
ROWS_PER_CHUNK = 1000
MAX_EXPORTS = 4  # running at once, in all
MAX_EXPORTS_PER_ACCOUNT = 2  # running at once, for one account
RETRY_AFTER_S = 30


class Slots:
    """Who is exporting: at most `per_account` exports of one account and `total` in all."""

    def __init__(self, total: int, per_account: int) -> None:
        self.total = total
        self.per_account = per_account
        self.running: Counter[str] = Counter()

    def take(self, account: str) -> None:
        """Take a slot for the account, or raise Unavailable naming the limit it would pass."""
        if self.running[account] >= self.per_account:
            raise Unavailable(
                f"account {account!r} has {self.per_account} exports running, its limit; "
                "retry when one ends",
                retry_after=RETRY_AFTER_S,
            )
        if self.running.total() >= self.total:
            raise Unavailable(
                f"{self.total} exports are running, the service's limit; retry later",
                retry_after=RETRY_AFTER_S,
            )
        self.running[account] += 1

    def give(self, account: str) -> None:
        self.running[account] -= 1
        if self.running[account] <= 0:
            del self.running[account]


SLOTS = Slots(MAX_EXPORTS, MAX_EXPORTS_PER_ACCOUNT)


class Export(StreamingResponse):
    """A streamed body whose generator is closed (cursor, transaction, connection) and whose
    slot is given back however the response ends, a client that goes away included."""

    def __init__(
        self, rows: AsyncIterator[bytes], media_type: str, filename: str, account: str
    ) -> None:
        disposition = f'attachment; filename="{filename}"'
        super().__init__(rows, media_type=media_type, headers={"Content-Disposition": disposition})
        self.rows = rows
        self.account = account

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            SLOTS.give(self.account)
            aclose = getattr(self.rows, "aclose", None)
            if aclose is not None:
                await aclose()


# A spreadsheet takes a cell that begins with one of these for a formula (OWASP, "CSV
# Injection"); names, ids and bounce reasons come from recipients and remote mail servers.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """A CSV cell: text a spreadsheet would run as a formula gets a leading `'`, which makes it
    text again; numbers (a negative amount too) and times go out as they are."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_line(values: list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([cell(v) for v in values])
    return out.getvalue().encode()


def encoder(fmt: str) -> tuple[bytes, Callable[[Any], bytes]]:
    """(header, row -> bytes) for a format; CSV columns are the JSON fields, in their order."""
    if fmt == "csv":
        return csv_line(list(FIELD_NAMES)), lambda row: csv_line(list(to_json(row).values()))
    return b"", lambda row: orjson.dumps(to_json(row)) + b"\n"


async def rows(dsn: str, sql: str, args: list[Any], fmt: str) -> AsyncIterator[bytes]:
    """The export's body, chunk by chunk, from a server-side cursor."""
    header, encode = encoder(fmt)
    conn = await db.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            chunk = [header]
            async for row in conn.cursor(sql, *args, prefetch=ROWS_PER_CHUNK):
                chunk.append(encode(row))
                if len(chunk) >= ROWS_PER_CHUNK:
                    yield b"".join(chunk)
                    chunk = []
            if any(chunk):
                yield b"".join(chunk)
    finally:
        await conn.close()


def export_sql(query: Query) -> str:
    return (
        f"SELECT {COLUMNS} FROM recipients WHERE {' AND '.join(query.where)} ORDER BY {query.order}"
    )


async def endpoint(request: Request) -> Export:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/export"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    fmt = request.query_params.get("format", "csv")
    if fmt not in FORMATS:
        raise bad("format", f"must be one of {', '.join(FORMATS)}")
    query = build(account, campaign, delivery, request.query_params, PARAMS)
    async with svc.pool.acquire() as conn:
        await require_delivery(conn, account, campaign, delivery)
    body = rows(svc.settings.database_url, export_sql(query), query.args, fmt)
    export = Export(body, FORMATS[fmt], f"recipients-{delivery_slug(delivery)}.{fmt}", account)
    # Taken last, with no await before the response owns it: Export.__call__ gives it back.
    SLOTS.take(account)
    return export


def delivery_slug(delivery: str) -> str:
    """The delivery id as a safe file-name part."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in delivery)
