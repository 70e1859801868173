"""The account's deliveries (`GET /v1/deliveries`), each with its funnel and seed 003's rates.

Rows, filters, sorting and paging come from delivery_counts (one row per delivery and campaign,
kept by the fold's triggers), so a page costs no scan of the recipients of unlisted deliveries;
the funnel of the rows on the page is summary_recipients', grouped by row. Recipients not yet
attributed to a campaign count with the delivery's campaign, as on the per-delivery endpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.http import authenticate, json, service_of
from service.read import summary
from service.read.params import bad, integer, known_only, moment, order_by, text
from service.read.recipients import escape_like, iso

# delivery_counts' counters that are exactly a funnel figure -> that figure's name
COUNTED: dict[str, str] = {
    "recipient_count": "total",
    "dropped_count": "dropped",
    "opened_count": "opensUnique",
    "human_opened_count": "opensUniqueHuman",
    "clicked_count": "clicksUnique",
    "human_clicked_count": "clicksUniqueHuman",
    "unsubscribed_count": "unsubscribesUnique",
    "complained_count": "complaintsUnique",
    "converted_count": "conversionsUnique",
}
_MERGED = ", ".join(f"n.{c} + coalesce(u.{c}, 0) AS {c}" for c in COUNTED)
_PLAIN = ", ".join(f"u.{c}" for c in COUNTED)
# One row per delivery and campaign; a delivery's unattributed recipients (campaign NULL) join
# each of its campaigns, or make a row of their own when it has none.
DELIVERIES = f"""WITH named AS (
    SELECT * FROM delivery_counts WHERE account_id = $1 AND campaign_id IS NOT NULL
), unnamed AS (
    SELECT * FROM delivery_counts WHERE account_id = $1 AND campaign_id IS NULL
), deliveries AS (
    SELECT n.delivery_id, n.campaign_id, least(n.first_sent_at, u.first_sent_at) AS first_sent_at,
           {_MERGED}
    FROM named n LEFT JOIN unnamed u USING (delivery_id)
    UNION ALL
    SELECT u.delivery_id, NULL, u.first_sent_at, {_PLAIN}
    FROM unnamed u WHERE NOT EXISTS (SELECT FROM named n WHERE n.delivery_id = u.delivery_id)
)"""

# The funnel of summary_recipients (one delivery) over the recipients of each row's pairs.
_HEAD, _FROM, _ = db.QUERIES["summary_recipients"].partition("\nFROM recipients\n")
assert _FROM, "summary_recipients no longer reads FROM recipients"
FUNNEL = f"""{_HEAD}, p.pair_row
FROM unnest($2::text[], $3::text[], $4::int[]) AS p(pair_delivery, pair_campaign, pair_row)
JOIN recipients r ON r.account_id = $1 AND r.delivery_id = p.pair_delivery
                 AND (r.campaign_id = p.pair_campaign OR r.campaign_id IS NULL)
GROUP BY p.pair_row"""
FUNNEL_FIELDS = re.findall(r"\bAS (\w+)", _HEAD)

SORTS: dict[str, str] = {
    "firstSentAt": "first_sent_at",
    "deliveryId": "delivery_id",
    "campaignId": "campaign_id",
    **{name: column for column, name in COUNTED.items()},
}
# `q`: a case-insensitive substring of the delivery or campaign id
SEARCH = "(delivery_id ILIKE {q} OR campaign_id ILIKE {q})"
PARAMS = {"campaignId", "dateFrom", "dateTo", "q", "sort", "limit", "offset"}
MAX_OFFSET = 1_000_000


@dataclass
class Listing:
    """A list's SQL pieces: WHERE conditions and their $n values, order and page."""

    where: list[str] = field(default_factory=lambda: ["true"])
    args: list[Any] = field(default_factory=list)
    order: str = ""
    limit: int = 100
    offset: int = 0

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args) + 1}"  # $1 is the account


def listing(
    params: Any, allowed: set[str], sorts: dict[str, str], searched: str, tie: str
) -> Listing:
    """Filters (campaign, first-send range, `q` as `searched` puts it), sort (`tie` breaking
    ties) and page; BadInput names the first bad parameter."""
    known_only(params, allowed)
    out = Listing()
    campaign = text(params, "campaignId")
    if campaign is not None:
        out.where.append(f"campaign_id = {out.arg(campaign)}")
    date_from = moment(params, "dateFrom", end=False)
    date_to = moment(params, "dateTo", end=True)
    if date_from and date_to and date_from > date_to:
        raise bad("dateTo", "is before dateFrom")
    if date_from:
        out.where.append(f"first_sent_at >= {out.arg(date_from)}")
    if date_to:
        out.where.append(f"first_sent_at <= {out.arg(date_to)}")
    q = text(params, "q", 200)
    if q is not None:
        out.where.append(searched.format(q=out.arg(f"%{escape_like(q)}%")))
    out.order = order_by(params.get("sort"), sorts, tie, default="-firstSentAt")
    out.limit = integer(params, "limit", 100, 1, 1000)
    out.offset = integer(params, "offset", 0, 0, MAX_OFFSET)
    return out


async def page(conn: Any, account: str, cte: str, table: str, q: Listing) -> tuple[list[Any], int]:
    """The page's rows of `table` (defined by `cte`) and how many rows match in all."""
    where = " AND ".join(q.where)
    n = len(q.args) + 1
    rows = await conn.fetch(
        f"{cte} SELECT * FROM {table} WHERE {where} ORDER BY {q.order} "
        f"LIMIT ${n + 1} OFFSET ${n + 2}",
        account,
        *q.args,
        q.limit,
        q.offset,
    )
    total = await conn.fetchval(
        f"{cte} SELECT count(*) FROM {table} WHERE {where}", account, *q.args
    )
    return rows, int(total)


async def funnels(
    conn: Any, account: str, pairs: list[tuple[str, str | None, int]], rows: int
) -> list[dict[str, Any]]:
    """For rows 0..rows-1, each made of the (delivery, campaign, row) pairs naming it: the
    funnel counts and both sets of rates."""
    deliveries = [d for d, _, _ in pairs]
    figures = {
        r["pair_row"]: r
        for r in await conn.fetch(
            FUNNEL, account, deliveries, [c for _, c, _ in pairs], [k for _, _, k in pairs]
        )
    }
    by_delivery: dict[str, dict[str, int]] = {}
    for r in await conn.fetch(db.QUERIES["funnel_events"], account, sorted(set(deliveries))):
        by_delivery.setdefault(r["delivery_id"], {})[r["type"]] = int(r["events"])
    out = []
    for row in range(rows):
        events: dict[str, dict[str, int]] = {}
        for delivery in {d for d, _, k in pairs if k == row}:
            for kind, n in by_delivery.get(delivery, {}).items():
                events.setdefault(kind, {"events": 0})["events"] += n
        out.append(funnel(figures.get(row) or dict.fromkeys(FUNNEL_FIELDS, 0), events))
    return out


def funnel(r: Any, events: dict[str, Any]) -> dict[str, Any]:
    """The summary's counts and rates (service/read/summary.py) of one row's figures."""
    c = summary.counts(r, events)
    return {
        **c,
        "rates": summary.rates(c, r["clicks_unique_opened"]),
        "ratesHuman": summary.human_rates(c, r["clicks_unique_human_opened"]),
    }


async def endpoint(request: Request) -> Response:
    """GET /v1/deliveries"""
    svc = service_of(request)
    account = await authenticate(request)
    query = listing(request.query_params, PARAMS, SORTS, SEARCH, "delivery_id, campaign_id")
    async with svc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        rows, total = await page(conn, account, DELIVERIES, "deliveries", query)
        pairs = [(r["delivery_id"], r["campaign_id"], i) for i, r in enumerate(rows)]
        figures = await funnels(conn, account, pairs, len(rows))
    items = [
        {
            "deliveryId": r["delivery_id"],
            "campaignId": r["campaign_id"],
            "firstSentAt": iso(r["first_sent_at"]),
            **f,
        }
        for r, f in zip(rows, figures, strict=True)
    ]
    paging = {"start": query.offset, "count": len(items), "totalCount": total}
    return json({"deliveries": items, "paging": paging})
