"""The campaign and delivery lists and the campaign summary, through the real pipeline: the
story's delivery c1/d1, a second delivery of c1 and one of c2."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import Harness
from tests.read.story import BASE, TOTAL, folded, post

pytestmark = pytest.mark.integration


def sent(campaign: str, delivery: str, at: str, email: str) -> dict[str, Any]:
    return {
        "type": "sent",
        "occurred_at": at,
        "campaign_id": campaign,
        "delivery_id": delivery,
        "recipient": {"email": email},
    }


MORE = [
    sent("c1", "d2", "2025-06-03T08:00:00Z", "zoe@example.com"),
    sent("c1", "d2", "2025-06-03T08:00:05Z", "yan@example.com"),
    {
        **sent("c1", "d2", "2025-06-03T09:00:00Z", "zoe@example.com"),
        "type": "converted",
        "conversion": {"amount": "10.5", "currency": "USD"},
    },
    sent("c2", "d3-autumn", "2025-09-01T10:00:00Z", "xia@example.com"),
]


@pytest.fixture
async def listed(running: Harness, told: httpx.AsyncClient) -> httpx.AsyncClient:
    await post(told, MORE)
    await folded(running, TOTAL + len(MORE))
    return told


def ids(body: dict[str, Any], key: str = "deliveries") -> list[str]:
    field = "deliveryId" if key == "deliveries" else "campaignId"
    return [row[field] for row in body[key]]


async def test_delivery_rows_carry_the_delivery_summarys_funnel_and_rates(
    listed: httpx.AsyncClient,
) -> None:
    body = (await listed.get("/v1/deliveries")).json()
    assert ids(body) == ["d3-autumn", "d2", "d1"]  # latest first send first
    assert body["paging"] == {"start": 0, "count": 3, "totalCount": 3}
    d1 = body["deliveries"][2]
    assert (d1["campaignId"], d1["firstSentAt"]) == ("c1", "2025-06-01T12:00:00+00:00")
    summary = (await listed.get(f"{BASE}/summary")).json()
    for name in ("campaignId", "deliveryId", "revenue"):
        summary.pop(name)
    assert {k: d1[k] for k in summary} == summary
    assert d1["rates"]["deliveryRate"] == 0.75 and d1["ratesHuman"]["openRate"] is not None


async def test_deliveries_filter_by_campaign_first_send_and_search(
    listed: httpx.AsyncClient,
) -> None:
    async def get(query: str) -> list[str]:
        response = await listed.get(f"/v1/deliveries?{query}")
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert await get("campaignId=c1") == ["d2", "d1"]
    assert await get("dateFrom=2025-06-02&dateTo=2025-06-03") == ["d2"]
    assert await get("dateTo=2025-06-01") == ["d1"]
    assert await get("q=AUTUMN") == ["d3-autumn"]
    assert await get("q=c1&sort=deliveryId") == ["d1", "d2"]
    assert await get("sort=-total,deliveryId") == ["d1", "d2", "d3-autumn"]
    page = (await listed.get("/v1/deliveries?sort=firstSentAt&limit=1&offset=1")).json()
    assert ids(page) == ["d2"]
    assert page["paging"] == {"start": 1, "count": 1, "totalCount": 3}


async def test_campaigns_sum_their_deliveries(listed: httpx.AsyncClient) -> None:
    body = (await listed.get("/v1/campaigns")).json()
    assert ids(body, "campaigns") == ["c2", "c1"]
    c1 = body["campaigns"][1]
    assert (c1["deliveries"], c1["firstSentAt"]) == (2, "2025-06-01T12:00:00+00:00")
    assert (c1["total"], c1["sent"], c1["conversions"], c1["conversionsUnique"]) == (7, 6, 2, 2)
    assert c1["rates"]["deliveryRate"] == 0.5  # d2's two sends report no delivery
    only = (await listed.get("/v1/campaigns?dateFrom=2025-08-01&sort=campaignId")).json()
    assert ids(only, "campaigns") == ["c2"]
    assert only["paging"]["totalCount"] == 1


async def test_campaign_summary_has_revenue_per_currency(listed: httpx.AsyncClient) -> None:
    s = (await listed.get("/v1/campaigns/c1")).json()
    assert (s["campaignId"], s["deliveries"], s["deliveryIds"]) == ("c1", 2, ["d1", "d2"])
    assert s["revenue"] == [
        {"currency": "EUR", "amount": 1287},
        {"currency": "USD", "amount": 10.5},
    ]
    assert (s["conversions"], s["bouncesUnique"], s["rates"]["bounceRate"]) == (2, 1, 1 / 6)
    assert (await listed.get("/v1/campaigns/nope")).status_code == 404


async def test_bad_list_parameters_are_400_naming_them(told: httpx.AsyncClient) -> None:
    for path, param in [
        ("/v1/deliveries?sort=email", "sort"),
        ("/v1/deliveries?sort=total,-total", "sort"),
        ("/v1/campaigns?limit=0", "limit"),
        ("/v1/campaigns?dateFrom=2025-06-02&dateTo=2025-06-01", "dateTo"),
        ("/v1/deliveries?since=1", "since"),
        ("/v1/campaigns/c1?x=1", "x"),
    ]:
        response = await told.get(path)
        assert response.status_code == 400, path
        assert response.json()["details"][0]["parameter"] == param, path


async def test_a_delivery_under_two_campaigns_is_summarised_per_campaign(
    running: Harness, told: httpx.AsyncClient
) -> None:
    await post(told, [sent("c2", "d1", "2025-06-05T10:00:00Z", "wan@example.com")])
    await folded(running, TOTAL + 1)
    c1 = (await told.get(f"{BASE}/summary")).json()
    c2 = (await told.get("/v1/deliveries/c2/d1/summary")).json()
    assert (c1["total"], c1["conversions"], c2["total"], c2["conversions"]) == (5, 1, 1, 0)
    assert c2["revenue"] == [] and c1["revenue"] == [{"currency": "EUR", "amount": 1287}]
    rows = (await told.get("/v1/deliveries?q=d1&sort=campaignId")).json()["deliveries"]
    assert [(r["campaignId"], r["total"]) for r in rows] == [("c1", 5), ("c2", 1)]
    assert (await told.get("/v1/deliveries/c3/d1/summary")).status_code == 404
