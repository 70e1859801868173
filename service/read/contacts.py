"""One contact across all its deliveries: its activity log and its timeline.

The key is an e-mail address (any case), a contact id or a client contact id; it takes in the
events of every recipient that carries it in any of those fields (activities.contact_sql), and
the events of no delivery (seed 003's named events) kept under it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service.errors import NotFound
from service.http import authenticate, json, service_of
from service.read import activities, timeline
from service.read.params import integer, known_only
from service.read.recipients import Query, path_id

LOG_PARAMS = activities.LOG_PARAMS - {"contact"}
TIMELINE_PARAMS = {"limit", "offset"}
TIMELINE_COLUMNS = """event_id, occurred_at, received_at, type, native_type, source, message_id,
url, ip, user_agent, machine, machine_reason, agent_class, bounce_class, bounce_code,
bounce_reason, ab_version, amount, currency, name, payload, campaign_id, delivery_id,
recipient_key"""


def contact_key(request: Request) -> str:
    """The path's key; one the OpenAPI document forbids (a leading ".", a "/") is a 404, as no
    contact has it."""
    key = path_id(request, "key")
    if key.startswith(".") or "/" in key:
        raise NotFound(f"contact {key[:64]!r} not found")
    return key


def timeline_sql(query: Query, limit: int, offset: int) -> tuple[str, list[Any], str]:
    """(the page of the contact's events in event-time order, its arguments, the count over
    query.args)."""
    where = " AND ".join(query.where)
    n = len(query.args)
    sql = (
        f"SELECT {TIMELINE_COLUMNS} FROM events WHERE {where} "
        f"ORDER BY occurred_at, event_id LIMIT ${n + 1} OFFSET ${n + 2}"
    )
    return sql, [*query.args, limit, offset], f"SELECT count(*) FROM events WHERE {where}"


def timeline_event_json(row: Any) -> dict[str, Any]:
    """A timeline event with the delivery it belongs to (null for an event of none)."""
    return {
        **timeline.event_json(row),
        "campaignId": row["campaign_id"],
        "deliveryId": row["delivery_id"],
        "recipientKey": row["recipient_key"],
    }


async def activities_endpoint(request: Request) -> Response:
    """GET /v1/contacts/{key}/activities: the activity log, of this contact only."""
    svc = service_of(request)
    account = await authenticate(request)
    key = contact_key(request)
    known_only(request.query_params, LOG_PARAMS)
    query = activities.build_log(account, request.query_params, datetime.now(UTC))
    query.where.append(activities.contact_sql(query, key))
    page, args, count = activities.log_sql(query)
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch(page, *args)
        total = await conn.fetchval(count, *query.args)
    return json(
        {
            "contact": key,
            "activities": [activities.activity_json(r) for r in rows],
            "paging": {"start": query.offset, "count": len(rows), "totalCount": total},
        }
    )


async def timeline_endpoint(request: Request) -> Response:
    """GET /v1/contacts/{key}/timeline: the contact's events in event-time order, a page at a
    time."""
    svc = service_of(request)
    account = await authenticate(request)
    key = contact_key(request)
    known_only(request.query_params, TIMELINE_PARAMS)
    limit = integer(request.query_params, "limit", 1000, 1, timeline.MAX_EVENTS)
    offset = integer(request.query_params, "offset", 0, 0, timeline.MAX_OFFSET)
    query = Query()
    query.where.append(f"account_id = {query.arg(account)}")
    query.where.append(activities.contact_sql(query, key))
    sql, args, count = timeline_sql(query, limit, offset)
    async with svc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        total = await conn.fetchval(count, *query.args)
        if not total:
            raise NotFound(f"contact {key[:64]!r} not found")
        rows = await conn.fetch(sql, *args)
    return json(
        {
            "contact": key,
            "events": [timeline_event_json(r) for r in rows],
            "paging": {"start": offset, "count": len(rows), "totalCount": total},
        }
    )
