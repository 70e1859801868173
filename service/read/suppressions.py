"""The account's suppressions: addresses not to mail again, as a feed (`since` a cursor).

The fold records hard bounces, spam complaints and unsubscribes per account and address
(queries/read.sql, upsert_suppressions). A row that changes (a stronger reason, an earlier
event) comes again later in the feed; cursors work as in the recent-activity feed.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.http import authenticate, json, service_of
from service.read.params import feed_position, format_position, integer, known_only
from service.read.recipients import iso

PARAMS = {"since", "limit"}
# The stored reason -> its name in the API and on mailfold.suppressions: bounce kinds are
# spelled as the recipient statuses (`hard_bounced`) everywhere the API shows them.
REASONS = {
    "unsubscribed": "unsubscribed",
    "hard_bounce": "hard_bounced",
    "complained": "complained",
}


def reason(stored: str) -> str:
    return REASONS.get(stored, stored)


def suppression_json(row: Any) -> dict[str, Any]:
    return {
        "email": row["email"],
        "reason": reason(row["reason"]),
        "reasonAt": iso(row["reason_at"]),
        "firstAt": iso(row["first_at"]),
        "campaignId": row["campaign_id"],
        "deliveryId": row["delivery_id"],
        "updatedAt": iso(row["updated_at"]),
    }


async def endpoint(request: Request) -> Response:
    """GET /v1/suppressions"""
    svc = service_of(request)
    account = await authenticate(request)
    params = request.query_params
    known_only(params, PARAMS)
    xact, seq = feed_position(params, "since")
    limit = integer(params, "limit", 1000, 1, 10_000)
    rows = await svc.pool.fetch(db.QUERIES["suppressions_since"], account, xact, seq, limit)
    if rows:
        xact, seq = rows[-1]["feed_xact"], rows[-1]["feed_seq"]
    return json(
        {
            "suppressions": [suppression_json(r) for r in rows],
            "cursor": format_position(xact, seq),
            "hasMore": len(rows) == limit,
        }
    )
