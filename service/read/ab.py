"""A/B results: the delivery summary's funnel per version (`ab_version`), for a delivery or a
campaign, with each version's unique open and click rates tested against the best version's.

Counts and rates are the summary's own (service/read/summary.py: `counts`, `rates`,
`human_rates`, over the same per-recipient figures), so a version's row reads like a summary.
The tests are two-proportion z-tests (service/read/significance.py) of `openRateUnique` and
`clickRateUnique` (recipients over delivered recipients), in `tests` on all opens and clicks
and in `testsHuman` on the human ones. Recipients without a version are in `unversioned`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.errors import NotFound
from service.http import authenticate, json, service_of
from service.read.params import known_only
from service.read.recipients import delivery_ids, path_id, require_delivery
from service.read.significance import two_proportion
from service.read.summary import counts, human_rates, rates

# The summary's per-recipient figures (queries/read.sql, summary_recipients) per version: one
# definition of the funnel, so the report and the summary cannot disagree.
_SUMMARY = db.QUERIES["summary_recipients"]
FIGURES = _SUMMARY[_SUMMARY.index("SELECT") + len("SELECT") : _SUMMARY.rindex("FROM recipients")]
VERSIONS_SQL = f"""SELECT ab_version, {FIGURES.strip()}
FROM recipients
WHERE account_id = $1 AND delivery_id = ANY($2::text[])
  AND (campaign_id = $3 OR campaign_id IS NULL)
GROUP BY ab_version
ORDER BY ab_version NULLS LAST"""
# Rate -> (numerator count, human numerator count); the denominator is `delivered`.
TESTED = {"openRateUnique": ("opensUnique", "opensUniqueHuman"),
          "clickRateUnique": ("clicksUnique", "clicksUniqueHuman")}  # fmt: skip
METHOD = (
    "Two-proportion z-test with the pooled rate, two-sided p-value (erfc(|z|/sqrt 2)); null "
    "hypothesis: the version and the best version share one true rate. Only made when each "
    "expects at least 5 successes and 5 failures; not corrected for multiple comparisons."
)


def funnel(r: Any, events: dict[str, Any]) -> dict[str, Any]:
    """One version's counts, rates and human rates, as the summary gives them."""
    c = counts(r, events)
    return {
        **c,
        "rates": rates(c, r["clicks_unique_opened"]),
        "ratesHuman": human_rates(c, r["clicks_unique_human_opened"]),
    }


def best_of(versions: list[dict[str, Any]], count: str) -> dict[str, Any] | None:
    """The version with the highest count/delivered (the first one on a tie), or None."""
    rated = [v for v in versions if v["delivered"]]
    return max(rated, key=lambda v: v[count] / v["delivered"], default=None)


def compare_with_best(versions: list[dict[str, Any]], count: str) -> None:
    """Set each version's test of `count`/delivered against the best version's."""
    key = "testsHuman" if count.endswith("Human") else "tests"
    rate = next(r for r, pair in TESTED.items() if count in pair)
    best = best_of(versions, count)
    for v in versions:
        result: dict[str, Any] = {"best": best["abVersion"] if best else None, "z": None}
        if best is None or not v["delivered"]:
            result |= {"pValue": None, "reason": "no delivered recipients"}
        elif v is best:
            result |= {"pValue": None, "reason": "the best version"}
        else:
            test = two_proportion(v[count], v["delivered"], best[count], best["delivered"])
            result |= {"z": test.z, "pValue": test.p_value, "reason": test.reason}
        v.setdefault(key, {})[rate] = result


def report(rows: list[Any], events: list[Any]) -> dict[str, Any]:
    """The versions' funnels and tests from the per-version figures and event totals."""
    by_version: dict[str | None, dict[str, Any]] = {}
    for row in events:
        by_version.setdefault(row["ab_version"], {})[row["type"]] = row
    versions = [
        {"abVersion": r["ab_version"], **funnel(r, by_version.get(r["ab_version"], {}))}
        for r in rows
        if r["ab_version"] is not None
    ]
    for pair in TESTED.values():
        for count in pair:
            compare_with_best(versions, count)
    unversioned = [funnel(r, by_version.get(None, {})) for r in rows if r["ab_version"] is None]
    return {
        "versions": versions,
        "unversioned": unversioned[0] if unversioned else None,
        "method": METHOD,
    }


async def figures(conn: Any, account: str, deliveries: list[str], campaign: str) -> Any:
    rows = await conn.fetch(VERSIONS_SQL, account, deliveries, campaign)
    events = await conn.fetch(db.QUERIES["ab_version_events"], account, deliveries, campaign)
    return report(list(rows), list(events))


async def delivery_endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/ab"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    known_only(request.query_params, set())
    async with svc.pool.acquire() as conn:
        await require_delivery(conn, account, campaign, delivery)
        body = await figures(conn, account, [delivery], campaign)
    return json({"campaignId": campaign, "deliveryId": delivery, **body})


async def campaign_endpoint(request: Request) -> Response:
    """GET /v1/campaigns/{campaignId}/ab"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign = path_id(request, "campaignId")
    known_only(request.query_params, set())
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch(db.QUERIES["ab_campaign_deliveries"], account, campaign)
        deliveries = [r["delivery_id"] for r in rows]
        if not deliveries:
            raise NotFound(f"campaign {campaign!r} not found")
        body = await figures(conn, account, deliveries, campaign)
    return json({"campaignId": campaign, "deliveryIds": deliveries, **body})
