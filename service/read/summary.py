"""A delivery's funnel (seed 001 activitiesSummary) with seed 003's rates, human and machine apart.

Counts ("unique" = recipients, otherwise events), from the recipient rows and hourly counters:

- `total`: recipients with any event. `dropped`: recipients the sender dropped (never sent).
- `sent`: recipients not dropped (seed 001: "sent via SMTP, excluding those dropped, including
  those that later bounced").
- `delivered`: sent, not hard-bounced, and delivered, opened or clicked (an open proves delivery
  even when the provider reports no delivery event).
- `undelivered`: dropped, plus sent recipients that hard-bounced or soft-bounced with no
  delivery; `failed` is the sent part of it.
- `bounces` (events), `bouncesUnique`, `hardBouncesUnique`, `softBouncesUnique` (sent
  recipients with a bounce; soft = no hard one).
- `opens`/`clicks` (events), `*Unique` (recipients), each also `*Human` (the event's `machine`
  is false) and `*Machine` (true); events nobody could classify count in the totals only.
- `unsubscribes`, `complaints` (events) and `*Unique`; `conversions`, `conversionsUnique` and
  `revenue` per currency (a recipient's revenue counts under its conversion currency).
- `churn`: sent recipients who unsubscribed, complained or were not delivered (seed 003:
  "unsubscribed + marked as spam + undelivered", each recipient once).

Rates are fractions (0.25 = 25 %), null when their denominator is 0:

| rate | numerator / denominator |
|---|---|
| `openRate` | opens / delivered |
| `openRateUnique` | opensUnique / delivered |
| `clickRate` | clicks / delivered |
| `clickRateUnique` | clicksUnique / delivered |
| `ctor` | recipients who opened and clicked / opensUnique |
| `deliveryRate` | delivered / sent |
| `bounceRate` | bouncesUnique / sent |
| `unsubRate` | unsubscribesUnique / delivered |
| `complaintRate` | complaintsUnique / delivered |
| `churnRate` | churn / sent |

`ratesHuman` repeats the open and click rates with the human figures (opensHuman,
opensUniqueHuman, clicksHuman, clicksUniqueHuman; ctor: recipients with a human open and a
human click / opensUniqueHuman).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.http import authenticate, json, service_of
from service.read.params import known_only
from service.read.recipients import delivery_ids, number, require_delivery


def rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def counts(r: Any, events: dict[str, Any]) -> dict[str, int]:
    """The funnel's counts from the recipient aggregate `r` and event totals by type."""

    def total(kind: str) -> int:
        return int(events[kind]["events"]) if kind in events else 0

    return {
        "total": r["total"],
        "sent": r["sent"],
        "dropped": r["dropped"],
        "delivered": r["delivered"],
        "failed": r["failed"],
        "undelivered": r["dropped"] + r["failed"],
        "bounces": total("bounced"),
        "bouncesUnique": r["bounces_unique"],
        "hardBouncesUnique": r["hard_bounces_unique"],
        "softBouncesUnique": r["soft_bounces_unique"],
        "opens": int(r["opens"]),
        "opensHuman": int(r["opens_human"]),
        "opensMachine": int(r["opens_machine"]),
        "opensUnique": r["opens_unique"],
        "opensUniqueHuman": r["opens_unique_human"],
        "opensUniqueMachine": r["opens_unique_machine"],
        "clicks": int(r["clicks"]),
        "clicksHuman": int(r["clicks_human"]),
        "clicksMachine": int(r["clicks_machine"]),
        "clicksUnique": r["clicks_unique"],
        "clicksUniqueHuman": r["clicks_unique_human"],
        "clicksUniqueMachine": r["clicks_unique_machine"],
        "unsubscribes": total("unsubscribed"),
        "unsubscribesUnique": r["unsubscribes_unique"],
        "complaints": total("complained"),
        "complaintsUnique": r["spam_reports_unique"],
        "churn": r["churn"],
        "conversions": int(r["conversions"]),
        "conversionsUnique": r["conversions_unique"],
    }


def rates(c: dict[str, int], clicked_opened: int) -> dict[str, float | None]:
    """Seed 003's rates over the denominators in the module docstring."""
    return {
        "openRate": rate(c["opens"], c["delivered"]),
        "openRateUnique": rate(c["opensUnique"], c["delivered"]),
        "clickRate": rate(c["clicks"], c["delivered"]),
        "clickRateUnique": rate(c["clicksUnique"], c["delivered"]),
        "ctor": rate(clicked_opened, c["opensUnique"]),
        "deliveryRate": rate(c["delivered"], c["sent"]),
        "bounceRate": rate(c["bouncesUnique"], c["sent"]),
        "unsubRate": rate(c["unsubscribesUnique"], c["delivered"]),
        "complaintRate": rate(c["complaintsUnique"], c["delivered"]),
        "churnRate": rate(c["churn"], c["sent"]),
    }


def human_rates(c: dict[str, int], clicked_opened: int) -> dict[str, float | None]:
    return {
        "openRate": rate(c["opensHuman"], c["delivered"]),
        "openRateUnique": rate(c["opensUniqueHuman"], c["delivered"]),
        "clickRate": rate(c["clicksHuman"], c["delivered"]),
        "clickRateUnique": rate(c["clicksUniqueHuman"], c["delivered"]),
        "ctor": rate(clicked_opened, c["opensUniqueHuman"]),
    }


async def endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/summary"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    known_only(request.query_params, set())
    async with svc.pool.acquire() as conn:
        await require_delivery(conn, account, campaign, delivery)
        r: Any = await conn.fetchrow(db.QUERIES["summary_recipients"], account, delivery, campaign)
        by_type = await conn.fetch(db.QUERIES["summary_events"], account, delivery)
        revenue = await conn.fetch(db.QUERIES["summary_revenue"], account, delivery, campaign)
    c = counts(r, {row["type"]: row for row in by_type})
    return json(
        {
            "campaignId": campaign,
            "deliveryId": delivery,
            **c,
            "revenue": [
                {"currency": row["currency"], "amount": number(row["amount"])} for row in revenue
            ],
            "rates": rates(c, r["clicks_unique_opened"]),
            "ratesHuman": human_rates(c, r["clicks_unique_human_opened"]),
        }
    )
