"""The account's campaigns (`GET /v1/campaigns`) and one campaign's summary across its deliveries.

A campaign is every delivery row of the delivery list (service/read/deliveries.py) under its
id: its funnel sums those deliveries' recipients, its first send is their earliest.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.errors import NotFound
from service.http import authenticate, json, service_of
from service.read.deliveries import COUNTED, DELIVERIES, funnels, listing, page
from service.read.params import known_only
from service.read.recipients import iso, number, path_id

_SUMS = ", ".join(f"sum({c})::bigint AS {c}" for c in COUNTED)
CAMPAIGNS = f"""{DELIVERIES}, campaigns AS (
    SELECT campaign_id, count(*) AS delivery_count, min(first_sent_at) AS first_sent_at,
           array_agg(delivery_id ORDER BY delivery_id) AS delivery_ids, {_SUMS}
    FROM deliveries WHERE campaign_id IS NOT NULL
    GROUP BY campaign_id
)"""

SORTS: dict[str, str] = {
    "firstSentAt": "first_sent_at",
    "campaignId": "campaign_id",
    "deliveries": "delivery_count",
    **{name: column for column, name in COUNTED.items()},
}
# `q`: a case-insensitive substring of the campaign id
SEARCH = "campaign_id ILIKE {q}"
PARAMS = {"campaignId", "dateFrom", "dateTo", "q", "sort", "limit", "offset"}


def pairs_of(rows: list[Any]) -> list[tuple[str, str | None, int]]:
    """Each campaign row's (delivery, campaign, row) pairs, for deliveries.funnels."""
    return [(d, r["campaign_id"], i) for i, r in enumerate(rows) for d in r["delivery_ids"]]


def head(row: Any) -> dict[str, Any]:
    return {
        "campaignId": row["campaign_id"],
        "deliveries": row["delivery_count"],
        "firstSentAt": iso(row["first_sent_at"]),
    }


async def list_endpoint(request: Request) -> Response:
    """GET /v1/campaigns"""
    svc = service_of(request)
    account = await authenticate(request)
    query = listing(request.query_params, PARAMS, SORTS, SEARCH, "campaign_id")
    async with svc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        rows, total = await page(conn, account, CAMPAIGNS, "campaigns", query)
        figures = await funnels(conn, account, pairs_of(rows), len(rows))
    items = [{**head(r), **f} for r, f in zip(rows, figures, strict=True)]
    paging = {"start": query.offset, "count": len(items), "totalCount": total}
    return json({"campaigns": items, "paging": paging})


async def summary_endpoint(request: Request) -> Response:
    """GET /v1/campaigns/{campaignId}"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign = path_id(request, "campaignId")
    known_only(request.query_params, set())
    async with svc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        row = await conn.fetchrow(
            f"{CAMPAIGNS} SELECT * FROM campaigns WHERE campaign_id = $2", account, campaign
        )
        if row is None:
            raise NotFound(f"campaign {campaign[:64]!r} not found")
        (figures,) = await funnels(conn, account, pairs_of([row]), 1)
        revenue = await conn.fetch(
            db.QUERIES["funnel_revenue"],
            account,
            row["delivery_ids"],
            [campaign] * len(row["delivery_ids"]),
        )
    return json(
        {
            **head(row),
            "deliveryIds": row["delivery_ids"],
            **{k: v for k, v in figures.items() if k not in ("rates", "ratesHuman")},
            "revenue": [
                {"currency": r["currency"], "amount": number(r["amount"])} for r in revenue
            ],
            "rates": figures["rates"],
            "ratesHuman": figures["ratesHuman"],
        }
    )
