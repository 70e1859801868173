"""One vocabulary across the read API, through the real pipeline: seed 000's older names answer
exactly as the new ones, every endpoint sorts with one syntax, event ids have one form, and
timelines page instead of stopping short."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.harness import Harness
from tests.read.story import ANN, BASE, BOB, JOHN, TOTAL

pytestmark = pytest.mark.integration

DAYS = {"dateFrom": "2025-06-01", "dateTo": "2025-06-02"}
HEX_ID = re.compile("[0-9a-f]{32}")


async def get(client: httpx.AsyncClient, url: str, **params: str) -> Any:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("path", ["recipients", "export"])
async def test_signal_spam_answers_as_signal_complained(told: httpx.AsyncClient, path: str) -> None:
    fmt = {"format": "jsonl"} if path == "export" else {}
    old = await told.get(f"{BASE}/{path}", params={**fmt, "signal": "spam"})
    new = await told.get(f"{BASE}/{path}", params={**fmt, "signal": "complained"})
    assert old.status_code == new.status_code == 200
    assert old.content == new.content
    if path == "recipients":
        (ann,) = new.json()["recipients"]
        assert (ann["email"], ann["complainedAt"]) == (ANN, "2025-06-02T09:00:00+00:00")
        assert "spamAt" not in ann and new.json()["paging"]["totalCount"] == 1


@pytest.mark.parametrize("path", ["recipients", "sent", "undelivered", "export"])
async def test_sort_spam_at_answers_as_sort_complained_at(
    told: httpx.AsyncClient, path: str
) -> None:
    old = await told.get(f"{BASE}/{path}", params={"sort": "-spamAt,email"})
    new = await told.get(f"{BASE}/{path}", params={"sort": "-complainedAt,email"})
    assert old.status_code == new.status_code == 200
    assert old.content == new.content
    if path == "recipients":
        assert new.json()["recipients"][0]["email"] == ANN  # the one complaint first


async def test_an_alias_and_its_name_together_are_one_field_given_twice(
    told: httpx.AsyncClient,
) -> None:
    response = await told.get(f"{BASE}/recipients", params={"sort": "spamAt,-complainedAt"})
    assert response.status_code == 400
    assert response.json()["details"][0]["parameter"] == "sort"


async def test_complaints_are_named_complained_in_every_answer(told: httpx.AsyncClient) -> None:
    summary = await get(told, f"{BASE}/summary")
    assert (summary["complaints"], summary["complaintsUnique"]) == (1, 1)
    assert summary["rates"]["complaintRate"] == pytest.approx(1 / 3)
    (row,) = (await get(told, "/v1/deliveries"))["deliveries"]
    assert row["complaintsUnique"] == 1
    hours = (await get(told, f"{BASE}/histogram"))["buckets"]
    assert sum(b["complained"] for b in hours) == 1
    (ann,) = (await get(told, f"{BASE}/recipients", status="complained"))["recipients"]
    assert ann["email"] == ANN
    (event,) = (await get(told, "/v1/activities", **DAYS, type="complained"))["activities"]
    assert event["recipientKey"] == ANN
    reasons = {
        s["email"]: s["reason"] for s in (await get(told, "/v1/suppressions"))["suppressions"]
    }
    assert reasons[ANN] == "complained"


async def test_bounce_kinds_are_spelled_as_the_statuses(told: httpx.AsyncClient) -> None:
    (bob,) = (await get(told, f"{BASE}/recipients", status="hard_bounced"))["recipients"]
    assert bob["email"] == BOB
    undelivered = (await get(told, f"{BASE}/undelivered", email=BOB))["undelivered"]
    assert [u["reason"] for u in undelivered] == [bob["status"]] == ["hard_bounced"]
    reasons = {
        s["email"]: s["reason"] for s in (await get(told, "/v1/suppressions"))["suppressions"]
    }
    assert reasons[BOB] == "hard_bounced"


async def test_conversion_fields_have_one_name_on_recipients_and_events(
    told: httpx.AsyncClient,
) -> None:
    (john,) = (await get(told, f"{BASE}/recipients", email=JOHN))["recipients"]
    (sale,) = [
        e for e in (await get(told, f"{BASE}/recipients/{JOHN}/timeline"))["events"]
        if e["type"] == "converted"
    ]  # fmt: skip
    (logged,) = (await get(told, "/v1/activities", **DAYS, type="converted"))["activities"]
    for fields in (john, sale, logged):
        assert (fields["conversionsAmount"], fields["conversionsCurrency"]) == (1287, "EUR")


async def test_event_ids_are_the_ledgers_uuids_as_32_hex_digits_everywhere(
    running: Harness, told: httpx.AsyncClient
) -> None:
    ledger = await running.fetch("SELECT event_id FROM events WHERE recipient_key = $1", JOHN)
    expected = sorted(row["event_id"].hex for row in ledger)
    timeline = (await get(told, f"{BASE}/recipients/{JOHN}/timeline"))["events"]
    contact = (await get(told, f"/v1/contacts/{JOHN}/timeline"))["events"]
    logged = (await get(told, "/v1/activities", **DAYS, contact=JOHN))["activities"]
    recent = (await get(told, "/v1/activities/recent", limit="1000"))["activities"]
    for events in (timeline, contact, logged, [e for e in recent if e["recipientKey"] == JOHN]):
        ids = sorted(e["eventId"] for e in events)
        assert ids == expected and all(HEX_ID.fullmatch(i) for i in ids)


async def test_links_sort_with_the_comma_list(told: httpx.AsyncClient) -> None:
    urls = ["https://shop.test/a", "https://shop.test/b"]
    links = await get(told, f"{BASE}/links", sort="-uniqueClickers,-url")
    assert [x["url"] for x in links["links"]] == urls[::-1]  # one clicker each: by url, descending
    links = await get(told, f"{BASE}/links", sort="+clicks")
    assert [x["url"] for x in links["links"]] == urls[::-1]
    refused = await told.get(f"{BASE}/links", params={"sort": "clicks,-clicks"})
    assert refused.status_code == 400
    assert refused.json()["details"][0]["parameter"] == "sort"
    assert "comma list" in refused.json()["details"][0]["message"]


async def test_activities_sort_with_the_comma_list(told: httpx.AsyncClient) -> None:
    newest = await get(told, "/v1/activities", **DAYS, sort="-occurredAt", limit="1000")
    oldest = await get(told, "/v1/activities", **DAYS, sort="occurredAt", limit="1000")
    assert newest["activities"] == oldest["activities"][::-1]
    assert newest["activities"][0]["type"] == "complained"
    refused = await told.get("/v1/activities", params={"sort": "occurredAt,-occurredAt"})
    assert refused.status_code == 400 and "comma list" in refused.text


async def page_through(client: httpx.AsyncClient, url: str, size: int) -> list[Any]:
    """Every event of a timeline, `size` at a time, checking each page's paging."""
    events: list[Any] = []
    while True:
        body = await get(client, url, limit=str(size), offset=str(len(events)))
        assert body["paging"]["start"] == len(events)
        assert body["paging"]["count"] == len(body["events"]) <= size
        events += body["events"]
        if len(events) >= body["paging"]["totalCount"]:
            assert len(events) == body["paging"]["totalCount"]
            return events


@pytest.mark.parametrize(
    "url", [f"{BASE}/recipients/{JOHN}/timeline", f"/v1/contacts/{JOHN}/timeline"]
)
async def test_a_timeline_pages_through_every_event(told: httpx.AsyncClient, url: str) -> None:
    whole = await get(told, url)
    assert whole["paging"] == {"start": 0, "count": 8, "totalCount": 8}
    assert await page_through(told, url, 3) == whole["events"]
    past = await get(told, url, offset="8")
    assert past["events"] == [] and past["paging"] == {"start": 8, "count": 0, "totalCount": 8}


async def test_every_story_event_has_one_id(told: httpx.AsyncClient) -> None:
    logged = (await get(told, "/v1/activities", **DAYS, limit="1000"))["activities"]
    assert len({e["eventId"] for e in logged}) == TOTAL
