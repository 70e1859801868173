"""Every read endpoint: 401 without credentials, 404 for what the account does not own, 400
naming the bad parameter; an account sees only its own rows."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import Harness
from tests.read.story import BASE, JOHN

pytestmark = pytest.mark.integration

DELIVERY_PATHS = [
    f"{BASE}/recipients",
    f"{BASE}/recipients/{JOHN}/timeline",
    f"{BASE}/summary",
    f"{BASE}/histogram",
    f"{BASE}/links",
    f"{BASE}/sent",
    f"{BASE}/undelivered",
    f"{BASE}/export",
]
ACCOUNT_PATHS = [
    "/v1/activities",
    "/v1/activities/recent",
    "/v1/suppressions",
    "/v1/deliveries",
    "/v1/campaigns",
    "/v1/campaigns/c1",
]
BAD = [
    (f"{BASE}/recipients", {"is_opened": "yes"}, "is_opened"),
    (f"{BASE}/recipients", {"status": "read"}, "status"),
    (f"{BASE}/recipients", {"abVersion": ""}, "abVersion"),
    (f"{BASE}/recipients/{JOHN}/timeline", {"limit": "0"}, "limit"),
    (f"{BASE}/summary", {"x": "1"}, "x"),
    (f"{BASE}/histogram", {"interval": "weekly"}, "interval"),
    (f"{BASE}/histogram", {"timeZone": "Mars/Olympus"}, "timeZone"),
    (f"{BASE}/histogram", {"dateFrom": "2025-06-02", "dateTo": "2025-06-01"}, "dateTo"),
    (f"{BASE}/links", {"sort": "popularity"}, "sort"),
    (f"{BASE}/sent", {"signal": "opened"}, "signal"),
    (f"{BASE}/undelivered", {"offset": "-1"}, "offset"),
    (f"{BASE}/export", {"format": "xlsx"}, "format"),
    (f"{BASE}/export", {"limit": "10"}, "limit"),
    ("/v1/suppressions", {"since": "yesterday"}, "since"),
    ("/v1/deliveries", {"sort": "openRate"}, "sort"),
    ("/v1/deliveries", {"dateFrom": "June"}, "dateFrom"),
    ("/v1/campaigns", {"q": ""}, "q"),
    ("/v1/campaigns", {"offset": "-1"}, "offset"),
]


@pytest.mark.parametrize("path", DELIVERY_PATHS + ACCOUNT_PATHS)
async def test_no_credentials_is_401(harness: Harness, path: str) -> None:
    await harness.start_app()
    async with harness.client() as anonymous:
        r = await anonymous.get(path)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


async def test_another_account_gets_404_for_the_delivery_and_nothing_of_its_rows(
    running: Harness, told: httpx.AsyncClient
) -> None:
    other = await running.account("other")
    async with running.client(other) as client:
        for path in DELIVERY_PATHS:
            r = await client.get(path)
            assert r.status_code == 404, path
            assert r.json()["error"] == "not_found"
        log = await client.get("/v1/activities", params={"dateFrom": "2025-01-01"})
        assert log.json()["paging"]["totalCount"] == 0
        assert (await client.get("/v1/activities/recent")).json()["activities"] == []
        assert (await client.get("/v1/suppressions")).json()["suppressions"] == []
        assert (await client.get("/v1/deliveries")).json()["deliveries"] == []
        assert (await client.get("/v1/campaigns")).json()["campaigns"] == []
        assert (await client.get("/v1/campaigns/c1")).status_code == 404


async def test_another_campaign_or_delivery_is_404(told: httpx.AsyncClient) -> None:
    for path in DELIVERY_PATHS:
        assert (await told.get(path.replace("/c1/", "/c2/"))).status_code == 404, path
        assert (await told.get(path.replace("/d1/", "/d2/"))).status_code == 404, path


@pytest.mark.parametrize(("path", "params", "name"), BAD)
async def test_a_bad_parameter_is_400_naming_it(
    told: httpx.AsyncClient, path: str, params: dict[str, str], name: str
) -> None:
    r = await told.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["details"][0]["parameter"] == name
