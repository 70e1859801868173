"""A recipient's activity timeline in one delivery (seed 000): every event from the ledger.

Events come in event-time order, whatever order they arrived in; each carries its type, time,
URL, IP, user agent, the machine verdict with its reason, and bounce details. The timeline is
an offset list: `limit` and `offset` pick the page, `paging.totalCount` says how many events
there are in all, so a long timeline is read page by page, never cut short.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.errors import NotFound
from service.http import authenticate, json, service_of
from service.read.params import integer, known_only
from service.read.recipients import delivery_ids, iso, number, path_id

PARAMS = {"limit", "offset"}
MAX_EVENTS = 10_000  # on one page
MAX_OFFSET = 1_000_000


def hex_id(value: UUID) -> str:
    """An event id as the API and mailfold.events write it: 32 lower-case hex digits (the
    ledger keeps it as a uuid, the same 128 bits)."""
    return value.hex


def event_json(row: Any) -> dict[str, Any]:
    """One ledger event in the API's field names."""
    return {
        "eventId": hex_id(row["event_id"]),
        "type": row["type"],
        "occurredAt": iso(row["occurred_at"]),
        "receivedAt": iso(row["received_at"]),
        "source": row["source"],
        "nativeType": row["native_type"],
        "messageId": row["message_id"],
        "url": row["url"],
        "ip": row["ip"],
        "userAgent": row["user_agent"],
        "machine": row["machine"],
        "machineReason": row["machine_reason"],
        "agentClass": row["agent_class"],
        "bounceClass": row["bounce_class"],
        "bounceCode": row["bounce_code"],
        "bounceReason": row["bounce_reason"],
        "abVersion": row["ab_version"],
        "conversionsAmount": number(row["amount"]),
        "conversionsCurrency": row["currency"],
        "name": row["name"],
        "payload": row["payload"],
    }


def recipient_json(row: Any) -> dict[str, Any]:
    return {
        "recipientKey": row["recipient_key"],
        "email": row["email"],
        "contactId": row["contact_id"],
        "clientContactId": row["client_contact_id"],
        "firstName": row["first_name"],
        "surname": row["surname"],
        "abVersion": row["ab_version"],
        "status": row["status"],
    }


async def endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/recipients/{recipient}/timeline"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    recipient = path_id(request, "recipient")
    if "@" in recipient:  # addresses are keyed lower-cased
        recipient = recipient.lower()
    known_only(request.query_params, PARAMS)
    limit = integer(request.query_params, "limit", 1000, 1, MAX_EVENTS)
    offset = integer(request.query_params, "offset", 0, 0, MAX_OFFSET)
    async with svc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        who = await conn.fetchrow(
            db.QUERIES["find_recipient"], account, campaign, delivery, recipient
        )
        if who is None:
            raise NotFound(f"recipient {recipient!r} not found in delivery {campaign}/{delivery}")
        key = who["recipient_key"]
        rows = await conn.fetch(
            db.QUERIES["recipient_timeline"], account, delivery, key, limit, offset
        )
        total = await conn.fetchval(db.QUERIES["count_recipient_timeline"], account, delivery, key)
    return json(
        {
            "recipient": recipient_json(who),
            "events": [event_json(r) for r in rows],
            "paging": {"start": offset, "count": len(rows), "totalCount": total},
        }
    )
