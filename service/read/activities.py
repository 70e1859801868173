"""The activity log and the recent-activity deltas (seed 001 activities, recentActivities).

`/v1/activities` pages the account's events filtered by event-time range, type, campaign,
delivery and contact. `/v1/activities/recent` hands out everything after a cursor: positions
are (writing transaction id, sequence number), and only rows written by transactions older
than the oldest one still running are returned. A fold that commits late therefore never slips
in behind a cursor already handed out, and nothing is returned twice (schema.sql, "Feed order").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.http import authenticate, json, service_of
from service.read.params import (
    bad,
    boolean,
    choices,
    feed_position,
    format_position,
    integer,
    known_only,
    moment,
    sort_fields,
    text,
)
from service.read.recipients import Query, iso, number
from service.read.timeline import hex_id

TYPES = (
    "sent",
    "delivered",
    "deferred",
    "bounced",
    "dropped",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
    "converted",
    "custom",
)
# exact-match filters -> their column
EQUALS = {"campaignId": "campaign_id", "deliveryId": "delivery_id"}
# A contact's events: those of its own key (an e-mail address, lower-cased, or a contact id) and
# of every recipient that carries it as contact id or client contact id, in any delivery. The
# keys are gathered once (an InitPlan over recipients_contact_idx and
# recipients_client_contact_idx); the events are then read through events_contact_idx.
CONTACT_KEYS = """recipient_key = ANY(ARRAY(
    SELECT {key}::text
    UNION
    SELECT c.recipient_key FROM recipients c
    WHERE c.account_id = {account} AND (c.contact_id = {raw} OR c.client_contact_id = {raw})))"""
# sort field -> column; the event id breaks ties in the same direction
SORTS = {"occurredAt": "occurred_at"}
FILTERS = {"dateFrom", "dateTo", "type", "contact", "machine", *EQUALS}
LOG_PARAMS = FILTERS | {"limit", "offset", "sort"}
RECENT_PARAMS = {"since", "limit"}
DEFAULT_DAYS = 7
MAX_OFFSET = 1_000_000

COLUMNS = """event_id, occurred_at, type, campaign_id, delivery_id, recipient_key, email,
contact_id, client_contact_id, url, ip, user_agent, machine, bounce_class, bounce_code,
bounce_reason, amount, currency, name"""


def activity_json(row: Any) -> dict[str, Any]:
    """One event as an activity (seed 001's fields in the API's spelling)."""
    return {
        "eventId": hex_id(row["event_id"]),
        "occurredAt": iso(row["occurred_at"]),
        "type": row["type"],
        "campaignId": row["campaign_id"],
        "deliveryId": row["delivery_id"],
        "recipientKey": row["recipient_key"],
        "email": row["email"],
        "contactId": row["contact_id"],
        "clientContactId": row["client_contact_id"],
        "url": row["url"],
        "ip": row["ip"],
        "userAgent": row["user_agent"],
        "machine": row["machine"],
        "bounceClass": row["bounce_class"],
        "bounceCode": row["bounce_code"],
        "bounceReason": row["bounce_reason"],
        "conversionsAmount": number(row["amount"]),
        "conversionsCurrency": row["currency"],
        "name": row["name"],
    }


def date_range(params: Any, now: datetime) -> tuple[datetime, datetime]:
    """dateFrom/dateTo, inclusive. Without either: the seven days up to now (seed 001); with
    dateFrom only: everything since; with dateTo only: the seven days up to it."""
    date_from = moment(params, "dateFrom", end=False)
    date_to = moment(params, "dateTo", end=True)
    if date_from and date_to and date_from > date_to:
        raise bad("dateTo", "is before dateFrom")
    if date_to is None:
        date_to = datetime.max.replace(tzinfo=UTC) if date_from else now
    if date_from is None:
        floor = datetime.min.replace(tzinfo=UTC)
        date_from = date_to - min(timedelta(days=DEFAULT_DAYS), date_to - floor)
    return date_from, date_to


def build_log(account: str, params: Any, now: datetime) -> Query:
    """The activity log's filters as a Query; BadInput names the first bad parameter."""
    known_only(params, LOG_PARAMS)
    query = Query()
    query.where.append(f"account_id = {query.arg(account)}")
    date_from, date_to = date_range(params, now)
    query.where.append(f"occurred_at >= {query.arg(date_from)}")
    query.where.append(f"occurred_at <= {query.arg(date_to)}")
    types = choices(params, "type", TYPES)
    if types is not None:
        query.where.append(f"type = ANY({query.arg(types)}::text[])")
    for name, column in EQUALS.items():
        value = text(params, name)
        if value is not None:
            query.where.append(f"{column} = {query.arg(value)}")
    contact = text(params, "contact")
    if contact is not None:
        query.where.append(contact_sql(query, contact))
    machine = boolean(params, "machine")
    if machine is not None:
        query.where.append(f"machine IS {'TRUE' if machine else 'NOT TRUE'}")
    query.order = parse_sort(params.get("sort"))
    query.limit = integer(params, "limit", 100, 1, 1000)
    query.offset = integer(params, "offset", 0, 0, MAX_OFFSET)
    return query


def parse_sort(raw: str | None) -> str:
    """The one sort syntax over SORTS (default `occurredAt`), the event id last, each in the
    direction of the field before it."""
    picked = sort_fields(raw or "occurredAt", SORTS)
    parts = [f"{SORTS[name]} {'DESC' if desc else 'ASC'}" for name, desc in picked]
    return ", ".join([*parts, f"event_id {'DESC' if picked[-1][1] else 'ASC'}"])


def contact_sql(query: Query, contact: str) -> str:
    """The condition keeping one contact's events: `contact` is an e-mail address (any case), a
    contact id or a client contact id. The query's first argument is the account."""
    key = contact.lower() if "@" in contact else contact
    return CONTACT_KEYS.format(key=query.arg(key), account="$1", raw=query.arg(contact))


def log_sql(query: Query) -> tuple[str, list[Any], str]:
    """(page statement, its arguments, count statement over the first len(query.args))."""
    where = " AND ".join(query.where)
    n = len(query.args)
    page = (
        f"SELECT {COLUMNS} FROM events WHERE {where} "
        f"ORDER BY {query.order} LIMIT ${n + 1} OFFSET ${n + 2}"
    )
    return (
        page,
        [*query.args, query.limit, query.offset],
        f"SELECT count(*) FROM events WHERE {where}",
    )


async def log_endpoint(request: Request) -> Response:
    """GET /v1/activities"""
    svc = service_of(request)
    account = await authenticate(request)
    query = build_log(account, request.query_params, datetime.now(UTC))
    page, args, count = log_sql(query)
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch(page, *args)
        total = await conn.fetchval(count, *query.args)
    return json(
        {
            "activities": [activity_json(r) for r in rows],
            "paging": {"start": query.offset, "count": len(rows), "totalCount": total},
        }
    )


async def recent_endpoint(request: Request) -> Response:
    """GET /v1/activities/recent"""
    svc = service_of(request)
    account = await authenticate(request)
    params = request.query_params
    known_only(params, RECENT_PARAMS)
    xact, seq = feed_position(params, "since")
    limit = integer(params, "limit", 100, 1, 1000)
    rows = await svc.pool.fetch(db.QUERIES["recent_activities"], account, xact, seq, limit)
    if rows:
        xact, seq = rows[-1]["feed_xact"], rows[-1]["feed_seq"]
    return json(
        {
            "activities": [activity_json(r) for r in rows],
            "cursor": format_position(xact, seq),
            "hasMore": len(rows) == limit,
        }
    )
