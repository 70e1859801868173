"""Link click stats of a delivery (seed 000): per URL, clicks and unique clickers, machine apart.

The per-link counters keep machine clicks (the event's `machine` is true) apart from all others,
so the split here is machine / not machine: `clicksNotMachine` includes clicks nobody could
classify, unlike the recipient list's `clickCountHuman`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.http import authenticate, json, service_of
from service.read.params import integer, known_only, order_by
from service.read.recipients import delivery_ids, iso, require_delivery

# sort key -> aggregate expression (url breaks ties)
SORTS = {
    "clicks": "clicks",
    "uniqueClickers": "unique_clickers",
    "clicksMachine": "clicks_machine",
    "firstClickedAt": "first_clicked_at",
    "url": "url",
}
PARAMS = {"sort", "limit", "offset"}

PAGE = """SELECT url, sum(click_count) AS clicks, sum(machine_count) AS clicks_machine,
       count(*) AS unique_clickers,
       count(*) FILTER (WHERE click_count > machine_count) AS unique_clickers_not_machine,
       min(first_at) AS first_clicked_at, count(*) OVER () AS total
FROM link_stats
WHERE account_id = $1 AND delivery_id = $2
GROUP BY url
ORDER BY {order}
LIMIT $3 OFFSET $4"""


def parse_sort(raw: str | None) -> str:
    """A comma list of SORTS (`-` for descending; default `-clicks`); the URL breaks ties."""
    return order_by(raw, SORTS, "url ASC", default="-clicks")


def link_json(row: Any) -> dict[str, Any]:
    clicks, machine = int(row["clicks"]), int(row["clicks_machine"])
    return {
        "url": row["url"],
        "clicks": clicks,
        "clicksMachine": machine,
        "clicksNotMachine": clicks - machine,
        "uniqueClickers": row["unique_clickers"],
        "uniqueClickersNotMachine": row["unique_clickers_not_machine"],
        "firstClickedAt": iso(row["first_clicked_at"]),
    }


async def endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/links"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    params = request.query_params
    known_only(params, PARAMS)
    order = parse_sort(params.get("sort"))
    limit = integer(params, "limit", 100, 1, 1000)
    offset = integer(params, "offset", 0, 0, 1_000_000)
    async with svc.pool.acquire() as conn:
        await require_delivery(conn, account, campaign, delivery)
        rows = await conn.fetch(PAGE.format(order=order), account, delivery, limit, offset)
        total = rows[0]["total"] if rows else await count_links(conn, account, delivery)
    return json(
        {
            "links": [link_json(r) for r in rows],
            "paging": {"start": offset, "count": len(rows), "totalCount": total},
        }
    )


async def count_links(conn: Any, account: str, delivery: str) -> int:
    return int(await conn.fetchval(db.QUERIES["count_links"], account, delivery))
