"""The sent and undelivered lists of a delivery (seed 001 sentEmails, undelivered).

Sent: every recipient the sender did not drop, including those that bounced later.
Undelivered: recipients that were dropped (never sent) or bounced without being delivered (a
hard bounce always counts), each with its reason (`dropped`, `hard_bounced`, `soft_bounced`,
spelled as the statuses) and the provider's code and text; for a drop, those of the first drop
event.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service.http import authenticate, json, service_of
from service.read.recipients import EXACT, Query, build, delivery_ids, iso, require_delivery

PARAMS = {"q", "limit", "offset", "sort", *EXACT}
SENT = "dropped_at IS NULL"
# Dropped, or bounced and (hard, or never delivered): summary.py's `undelivered`. The first
# clause is recipients_undelivered_idx's predicate, so the planner can use that index.
UNDELIVERED = """(dropped_at IS NOT NULL OR bounced_at IS NOT NULL)
    AND (dropped_at IS NOT NULL OR hard_bounced_at IS NOT NULL
         OR coalesce(delivered_at, opened_at, clicked_at) IS NULL)"""

SENT_COLUMNS = """contact_id, client_contact_id, first_name, surname, email, sent_at, delivered_at,
bounced_at, ab_version, mailfold_status(status_rank) AS status"""
UNDELIVERED_COLUMNS = """contact_id, client_contact_id, first_name, surname, email, dropped_at,
bounced_at, bounce_class, bounce_code, bounce_reason, first_drop.code AS drop_code,
first_drop.reason AS drop_reason"""
# the first drop event's details (events_contact_idx)
FIRST_DROP = """LEFT JOIN LATERAL (
    SELECT e.bounce_code AS code, e.bounce_reason AS reason FROM events e
    WHERE e.account_id = r.account_id AND e.delivery_id = r.delivery_id
      AND e.recipient_key = r.recipient_key AND e.type = 'dropped' AND r.dropped_at IS NOT NULL
    ORDER BY e.occurred_at, e.event_id LIMIT 1
) first_drop ON true"""


def person(row: Any) -> dict[str, Any]:
    return {
        "contactId": row["contact_id"],
        "clientContactId": row["client_contact_id"],
        "firstName": row["first_name"],
        "surname": row["surname"],
        "email": row["email"],
    }


def sent_json(row: Any) -> dict[str, Any]:
    return {
        **person(row),
        "sentAt": iso(row["sent_at"]),
        "deliveredAt": iso(row["delivered_at"]),
        "bouncedAt": iso(row["bounced_at"]),
        "abVersion": row["ab_version"],
        "status": row["status"],
    }


def undelivered_json(row: Any) -> dict[str, Any]:
    if row["dropped_at"] is not None:
        reason, at, code, text = "dropped", row["dropped_at"], row["drop_code"], row["drop_reason"]
    else:
        reason = "hard_bounced" if row["bounce_class"] == "hard" else "soft_bounced"
        at, code, text = row["bounced_at"], row["bounce_code"], row["bounce_reason"]
    return {**person(row), "reason": reason, "at": iso(at), "code": code, "detail": text}


def list_sql(query: Query, columns: str, join: str = "") -> tuple[str, list[Any], str]:
    """(page statement, its arguments, count statement over query.args)."""
    where = " AND ".join(query.where)
    n = len(query.args)
    page = (
        f"SELECT {columns} FROM recipients r {join} WHERE {where} "
        f"ORDER BY {query.order} LIMIT ${n + 1} OFFSET ${n + 2}"
    )
    count = f"SELECT count(*) FROM recipients r WHERE {where}"
    return page, [*query.args, query.limit, query.offset], count


async def respond(request: Request, condition: str, columns: str, join: str, key: str) -> Response:
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    query = build(account, campaign, delivery, request.query_params, PARAMS)
    query.where.append(condition)
    page, args, count = list_sql(query, columns, join)
    to_json = sent_json if key == "sent" else undelivered_json
    async with svc.pool.acquire() as conn:
        await require_delivery(conn, account, campaign, delivery)
        rows = await conn.fetch(page, *args)
        total = await conn.fetchval(count, *query.args)
    return json(
        {
            key: [to_json(r) for r in rows],
            "paging": {"start": query.offset, "count": len(rows), "totalCount": total},
        }
    )


async def sent_endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/sent"""
    return await respond(request, SENT, SENT_COLUMNS, "", "sent")


async def undelivered_endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/undelivered"""
    return await respond(request, UNDELIVERED, UNDELIVERED_COLUMNS, FIRST_DROP, "undelivered")
