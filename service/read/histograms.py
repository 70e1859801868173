"""Hourly, daily and monthly histograms of a delivery (seed 000) on event time, in a time zone.

Buckets are by when each event happened, never when it arrived, so a late event lands in its
own bucket. They come from the fold's hourly counters; in zones whose hours do not start on
UTC hours (India's +05:30, Nepal's +05:45, ...) they are counted from the ledger instead. Only
buckets with events are listed. dateFrom/dateTo select whole UTC hours of event time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.http import authenticate, json, service_of
from service.read.params import bad, known_only, moment, time_zone
from service.read.recipients import delivery_ids, number, require_delivery

INTERVALS = {"hourly": "hour", "daily": "day", "monthly": "month"}
PARAMS = {"interval", "timeZone", "dateFrom", "dateTo"}
# event type -> the bucket's field; opens and clicks also count their human and machine ones
# (the rest are undecided), bounces their hard ones
FIELDS = {
    "sent": "sent",
    "delivered": "delivered",
    "deferred": "deferred",
    "dropped": "dropped",
    "bounced": "bounced",
    "opened": "opened",
    "clicked": "clicked",
    "unsubscribed": "unsubscribed",
    "complained": "complained",
    "converted": "converted",
    "custom": "custom",
}


def empty_bucket(start: str) -> dict[str, Any]:
    bucket: dict[str, Any] = {"start": start, **{f: 0 for f in FIELDS.values()}}
    bucket.update(
        openedHuman=0,
        openedMachine=0,
        clickedHuman=0,
        clickedMachine=0,
        bouncedHard=0,
        conversionsAmount=0,
    )
    return bucket


def buckets(rows: list[Any], zone: ZoneInfo) -> list[dict[str, Any]]:
    """Rows of (bucket, type, events, machine, human, hard, amount) -> one dict per bucket, in
    order."""
    out: dict[datetime, dict[str, Any]] = {}
    for row in rows:
        start: datetime = row["bucket"]
        bucket = out.setdefault(start, empty_bucket(start.astimezone(zone).isoformat()))
        kind = row["type"]
        if kind not in FIELDS:
            continue
        bucket[FIELDS[kind]] += int(row["events"])
        if kind in ("opened", "clicked"):
            bucket[f"{kind}Human"] += int(row["human"])
            bucket[f"{kind}Machine"] += int(row["machine"])
        elif kind == "bounced":
            bucket["bouncedHard"] += int(row["hard"])
        elif kind == "converted":
            bucket["conversionsAmount"] = number(row["amount"])
    return list(out.values())


async def endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/histogram"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    params = request.query_params
    known_only(params, PARAMS)
    interval = params.get("interval", "hourly")
    if interval not in INTERVALS:
        raise bad("interval", f"must be one of {', '.join(INTERVALS)}")
    date_from = moment(params, "dateFrom", end=False)
    date_to = moment(params, "dateTo", end=True)
    if date_from and date_to and date_from > date_to:
        raise bad("dateTo", "is before dateFrom")
    async with svc.pool.acquire() as conn:
        zone = time_zone(params, "timeZone", await account_zone(conn, account))
        await require_delivery(conn, account, campaign, delivery)
        args = (account, delivery, INTERVALS[interval], zone, date_from, date_to)
        try:
            rows = await conn.fetch(db.QUERIES["histogram_from_stats"], *args)
            if not all(r["aligned"] for r in rows):
                rows = await conn.fetch(db.QUERIES["histogram_from_events"], *args)
        except asyncpg.InvalidParameterValueError:  # a zone Python knows and PostgreSQL not
            raise bad("timeZone", f"{zone!r} is not known to the database") from None
    return json(
        {"interval": interval, "timeZone": zone, "buckets": buckets(list(rows), ZoneInfo(zone))}
    )


async def account_zone(conn: Any, account: str) -> str:
    zone = await conn.fetchval(db.QUERIES["account_time_zone"], account)
    return str(zone or "UTC")
