"""The activity log and the recent-activity feed through the real pipeline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.read.story import JOHN, TOTAL, event, post

pytestmark = pytest.mark.integration

URL = "/v1/activities"
DAYS = {"dateFrom": "2025-06-01", "dateTo": "2025-06-02"}


async def log(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get(URL, params={**DAYS, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_log_filters_by_dates_type_contact_and_campaign(told: httpx.AsyncClient) -> None:
    everything = await log(told, limit="1000")
    assert everything["paging"]["totalCount"] == TOTAL
    times = [a["occurredAt"] for a in everything["activities"]]
    assert times == sorted(times)
    assert (await log(told, type="opened,clicked"))["paging"]["totalCount"] == 7
    assert (await log(told, contact=JOHN.upper()))["paging"]["totalCount"] == 8
    assert (await log(told, campaignId="c1"))["paging"]["totalCount"] == TOTAL
    assert (await log(told, campaignId="c2"))["paging"]["totalCount"] == 0
    assert (await log(told, machine="true"))["paging"]["totalCount"] == 2
    second_day = await log(told, dateFrom="2025-06-02T00:00:00Z")
    assert [a["type"] for a in second_day["activities"]] == ["complained"]
    click = (await log(told, type="clicked", contact=JOHN))["activities"][0]
    assert (click["url"], click["deliveryId"], click["campaignId"]) == (
        "https://shop.test/a",
        "d1",
        "c1",
    )


async def test_the_log_pages_newest_first_when_asked(told: httpx.AsyncClient) -> None:
    page = await log(told, sort="-occurredAt", limit="2", offset="1")
    assert page["paging"] == {"start": 1, "count": 2, "totalCount": TOTAL}
    assert [a["type"] for a in page["activities"]] == ["opened", "converted"]


async def test_the_log_defaults_to_the_last_seven_days(told: httpx.AsyncClient) -> None:
    body = (await told.get(URL)).json()
    assert body["paging"]["totalCount"] == 0  # the story happened in 2025


async def read_feed(
    client: httpx.AsyncClient, cursor: str | None, limit: int
) -> tuple[list[str], str]:
    """Everything after `cursor`, page by page; (event ids, the last cursor)."""
    seen: list[str] = []
    while True:
        params = {"limit": str(limit), **({"since": cursor} if cursor else {})}
        body = (await client.get(f"{URL}/recent", params=params)).json()
        seen += [a["eventId"] for a in body["activities"]]
        cursor = body["cursor"]
        if not body["hasMore"]:
            return seen, body["cursor"]


async def test_the_feed_hands_out_every_event_once_and_then_only_news(
    told: httpx.AsyncClient,
) -> None:
    seen, cursor = await read_feed(told, None, 4)
    assert len(seen) == len(set(seen)) == TOTAL
    again, same = await read_feed(told, cursor, 4)
    assert (again, same) == ([], cursor)
    await post(told, [event("clicked", "2025-06-03T10:00:00Z", JOHN, url="https://shop.test/c")])
    for _ in range(100):
        news, cursor = await read_feed(told, cursor, 4)
        if news:
            break
    assert len(news) == 1


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"type": "opened,read"}, "type"),
        ({"dateFrom": "2025-06-02", "dateTo": "2025-06-01"}, "dateTo"),
        ({"dateFrom": "June"}, "dateFrom"),
        ({"sort": "type"}, "sort"),
        ({"limit": "1001"}, "limit"),
        ({"machine": "yes"}, "machine"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_log_parameters_are_named(
    told: httpx.AsyncClient, params: dict[str, str], name: str
) -> None:
    r = await told.get(URL, params=params)
    assert r.status_code == 400 and r.json()["details"][0]["parameter"] == name


@pytest.mark.parametrize("since", ["abc", "1-", "-1", "1-2-3", "99999999999999999999999-1"])
async def test_a_bad_cursor_is_named(told: httpx.AsyncClient, since: str) -> None:
    r = await told.get(f"{URL}/recent", params={"since": since})
    assert r.status_code == 400 and r.json()["details"][0]["parameter"] == "since"
