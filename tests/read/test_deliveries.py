"""The per-delivery reads through the real pipeline: timeline, summary, histograms, links,
sent and undelivered lists, flag filters and the export."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import orjson
import pytest

from tests.read.story import ANN, BASE, BOB, EVE, JANE, JOHN

pytestmark = pytest.mark.integration


def emails(rows: list[dict[str, Any]]) -> list[str]:
    return [r["email"] for r in rows]


async def test_timeline_lists_a_recipients_events_in_event_time_order(
    told: httpx.AsyncClient,
) -> None:
    body = (await told.get(f"{BASE}/recipients/{JOHN}/timeline")).json()
    assert body["recipient"]["email"] == JOHN and body["recipient"]["status"] == "clicked"
    events = body["events"]
    assert [e["type"] for e in events] == [
        "sent", "delivered", "opened", "clicked", "clicked", "clicked", "opened", "converted",
    ]  # fmt: skip
    times = [e["occurredAt"] for e in events]
    assert times == sorted(times)
    first_open, scanner_click = events[2], events[5]
    assert (first_open["ip"], first_open["machine"]) == ("198.51.100.7", False)
    assert (scanner_click["url"], scanner_click["machine"]) == ("https://shop.test/a", True)
    assert events[6]["userAgent"] == "Mozilla/5.0"
    assert (events[7]["conversionsAmount"], events[7]["conversionsCurrency"]) == (1287, "EUR")
    assert body["paging"] == {"start": 0, "count": 8, "totalCount": 8}
    limited = (await told.get(f"{BASE}/recipients/{JOHN.upper()}/timeline?limit=2")).json()
    assert [e["type"] for e in limited["events"]] == ["sent", "delivered"]
    assert limited["paging"] == {"start": 0, "count": 2, "totalCount": 8}


async def test_timeline_shows_bounce_details_and_404s_for_strangers(
    told: httpx.AsyncClient,
) -> None:
    body = (await told.get(f"{BASE}/recipients/{BOB}/timeline")).json()
    bounce = body["events"][-1]
    assert (bounce["type"], bounce["bounceClass"], bounce["bounceCode"]) == (
        "bounced",
        "hard",
        "5.1.1",
    )
    assert bounce["bounceReason"] == "no such user"
    assert (await told.get(f"{BASE}/recipients/nobody@x.test/timeline")).status_code == 404


async def test_summary_counts_the_funnel_and_its_rates(told: httpx.AsyncClient) -> None:
    s = (await told.get(f"{BASE}/summary")).json()
    assert (s["total"], s["sent"], s["dropped"], s["delivered"]) == (5, 4, 1, 3)
    assert (s["failed"], s["undelivered"]) == (1, 2)
    assert (s["bounces"], s["bouncesUnique"], s["hardBouncesUnique"]) == (1, 1, 1)
    assert (s["opens"], s["opensHuman"], s["opensMachine"]) == (4, 2, 1)
    assert (s["opensUnique"], s["opensUniqueHuman"], s["opensUniqueMachine"]) == (3, 2, 1)
    assert (s["clicks"], s["clicksHuman"], s["clicksMachine"]) == (3, 1, 1)
    assert (s["clicksUnique"], s["clicksUniqueHuman"], s["clicksUniqueMachine"]) == (1, 1, 1)
    assert (s["unsubscribes"], s["complaints"], s["churn"]) == (1, 1, 3)
    assert (s["conversions"], s["revenue"]) == (1, [{"currency": "EUR", "amount": 1287}])
    assert s["rates"] == pytest.approx(
        {
            "openRate": 4 / 3,
            "openRateUnique": 1.0,
            "clickRate": 1.0,
            "clickRateUnique": 1 / 3,
            "ctor": 1 / 3,
            "deliveryRate": 3 / 4,
            "bounceRate": 1 / 4,
            "unsubRate": 1 / 3,
            "complaintRate": 1 / 3,
            "churnRate": 3 / 4,
        }
    )
    assert s["ratesHuman"] == pytest.approx(
        {
            "openRate": 2 / 3,
            "openRateUnique": 2 / 3,
            "clickRate": 1 / 3,
            "clickRateUnique": 1 / 3,
            "ctor": 1 / 2,
        }
    )


def by_start(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["start"]: b for b in body["buckets"]}


async def test_hourly_histogram_counts_each_signal_in_its_event_hour(
    told: httpx.AsyncClient,
) -> None:
    body = (await told.get(f"{BASE}/histogram", params={"interval": "hourly"})).json()
    assert body["timeZone"] == "UTC"
    hours = by_start(body)
    noon = hours["2025-06-01T12:00:00+00:00"]
    assert (noon["sent"], noon["dropped"], noon["delivered"]) == (4, 1, 3)
    assert (noon["bounced"], noon["bouncedHard"]) == (1, 1)
    one = hours["2025-06-01T13:00:00+00:00"]
    assert (one["opened"], one["openedHuman"], one["openedMachine"]) == (2, 1, 1)
    # one click a person's, one a machine's, one undecided (no agent, no flag)
    assert (one["clicked"], one["clickedHuman"], one["clickedMachine"]) == (3, 1, 1)
    assert hours["2025-06-01T15:00:00+00:00"]["conversionsAmount"] == 1287
    assert hours["2025-06-01T23:00:00+00:00"]["opened"] == 1  # the late open, in its own hour
    assert hours["2025-06-02T09:00:00+00:00"]["complained"] == 1


async def test_daily_histogram_follows_the_time_zone(told: httpx.AsyncClient) -> None:
    utc = by_start((await told.get(f"{BASE}/histogram", params={"interval": "daily"})).json())
    assert utc["2025-06-01T00:00:00+00:00"]["opened"] == 4
    params = {"interval": "daily", "timeZone": "Europe/Prague"}
    prague = by_start((await told.get(f"{BASE}/histogram", params=params)).json())
    # 23:30 UTC is 01:30 the next day in Prague
    assert prague["2025-06-01T00:00:00+02:00"]["opened"] == 3
    assert prague["2025-06-02T00:00:00+02:00"]["opened"] == 1
    monthly = (await told.get(f"{BASE}/histogram", params={"interval": "monthly"})).json()
    assert [b["start"] for b in monthly["buckets"]] == ["2025-06-01T00:00:00+00:00"]


async def test_hourly_histogram_in_a_half_hour_zone_counts_from_the_ledger(
    told: httpx.AsyncClient,
) -> None:
    params = {"interval": "hourly", "timeZone": "Asia/Kolkata"}
    hours = by_start((await told.get(f"{BASE}/histogram", params=params)).json())
    # 12:00 UTC is 17:30 in India: the local hour 17:00-18:00 holds the sends
    assert hours["2025-06-01T17:00:00+05:30"]["sent"] == 4
    assert hours["2025-06-01T18:00:00+05:30"]["delivered"] == 3  # 12:58-12:59 UTC


async def test_link_stats_count_clicks_and_clickers_machine_apart(told: httpx.AsyncClient) -> None:
    body = (await told.get(f"{BASE}/links")).json()
    assert body["paging"] == {"start": 0, "count": 2, "totalCount": 2}
    a, b = body["links"]
    assert (a["url"], a["clicks"], a["clicksMachine"], a["clicksNotMachine"]) == (
        "https://shop.test/a",
        2,
        1,
        1,
    )
    assert (a["uniqueClickers"], a["uniqueClickersNotMachine"]) == (1, 1)
    assert (b["url"], b["clicks"], b["firstClickedAt"]) == (
        "https://shop.test/b",
        1,
        "2025-06-01T13:02:30+00:00",
    )
    by_url = (await told.get(f"{BASE}/links", params={"sort": "-url", "limit": "1"})).json()
    assert [x["url"] for x in by_url["links"]] == ["https://shop.test/b"]


async def test_sent_and_undelivered_lists(told: httpx.AsyncClient) -> None:
    sent = (await told.get(f"{BASE}/sent", params={"sort": "email"})).json()
    assert emails(sent["sent"]) == [ANN, BOB, JANE, JOHN]
    assert sent["paging"]["totalCount"] == 4
    undelivered = (await told.get(f"{BASE}/undelivered", params={"sort": "email"})).json()
    bob, eve = undelivered["undelivered"]
    assert (bob["email"], bob["reason"], bob["code"], bob["detail"]) == (
        BOB,
        "hard_bounced",
        "5.1.1",
        "no such user",
    )
    assert (eve["email"], eve["reason"], eve["detail"]) == (EVE, "dropped", "unsubscribed")
    assert eve["at"] == "2025-06-01T12:00:00+00:00"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"is_opened": "true"}, [ANN, JANE, JOHN]),
        ({"is_opened": "false"}, [BOB, EVE]),
        ({"is_clicked": "true", "abVersion": "A"}, [JOHN]),
        ({"abVersion": "B"}, [ANN, JANE]),
        ({"is_bounced": "true"}, [BOB]),
        ({"is_unsubscribed": "true"}, [JANE]),
        ({"is_complained": "true"}, [ANN]),
        (
            {"is_complained": "false", "is_unsubscribed": "false", "is_bounced": "false"},
            [EVE, JOHN],
        ),
        ({"status": "clicked,unsubscribed"}, [JANE, JOHN]),
        ({"status": "dropped"}, [EVE]),
        ({"signal": "delivered", "is_clicked": "false"}, [ANN, JANE]),
        ({"signal": "opened", "q": "smith", "is_unsubscribed": "true"}, [JANE]),
        (
            {"is_opened": "true", "dateFrom": "2025-06-01", "dateTo": "2025-06-01"},
            [ANN, JANE, JOHN],
        ),
    ],
)
async def test_flag_version_and_status_filters_combine(
    told: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    body = (await told.get(f"{BASE}/recipients", params={**params, "sort": "email"})).json()
    assert emails(body["recipients"]) == expected
    assert body["paging"]["totalCount"] == len(expected)


async def test_export_streams_the_filtered_list_as_csv_and_json_lines(
    told: httpx.AsyncClient,
) -> None:
    r = await told.get(f"{BASE}/export", params={"sort": "email"})
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["email"] for row in rows] == [ANN, BOB, EVE, JANE, JOHN]
    assert rows[-1]["openCount"] == "2" and rows[0]["openedAt"] == "2025-06-01T23:30:00+00:00"
    params = {"format": "jsonl", "is_opened": "true", "sort": "-openCount,email"}
    r = await told.get(f"{BASE}/export", params=params)
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert [x["email"] for x in lines] == [JOHN, ANN, JANE]
    assert lines[0]["clickCount"] == 3
