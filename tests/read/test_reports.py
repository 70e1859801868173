"""The report builder through the real pipeline: the story posted to the Event API, folded, and
read back through `GET /v1/reports`, agreeing with the delivery summary."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.read.story import BASE

pytestmark = pytest.mark.integration
JUNE = "date=ge:2025-06-01&date=le:2025-06-30"


async def report(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await client.get(f"/v1/reports?{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_totals_row_agrees_with_the_delivery_summary(told: httpx.AsyncClient) -> None:
    fields = (
        "message,sum_total,sum_sended,sum_delivered,sum_opened,sum_opened_unique,"
        "sum_opened_unique_human,sum_clicked,sum_clicked_unique,sum_unsubscribed,"
        "sum_spam_reports,sum_churn,sum_bounce_total,sum_stop_total,delivery_rate,"
        "open_rate_unique,ctor,churn_rate"
    )
    body = await report(told, f"fields={fields}&{JUNE}")
    (d1, totals) = body["result"]
    assert d1["message"] == "d1" and totals["message"] == ""
    assert {k: v for k, v in d1.items() if k != "message"} == {
        k: v for k, v in totals.items() if k != "message"
    }
    summary = (await told.get(f"{BASE}/summary")).json()
    for field, name in [
        ("sum_total", "total"),
        ("sum_sended", "sent"),
        ("sum_delivered", "delivered"),
        ("sum_opened", "opens"),
        ("sum_opened_unique", "opensUnique"),
        ("sum_opened_unique_human", "opensUniqueHuman"),
        ("sum_clicked", "clicks"),
        ("sum_clicked_unique", "clicksUnique"),
        ("sum_unsubscribed", "unsubscribesUnique"),
        ("sum_spam_reports", "complaintsUnique"),
        ("sum_churn", "churn"),
        ("sum_bounce_total", "bouncesUnique"),
        ("sum_stop_total", "dropped"),
    ]:
        assert totals[field] == summary[name], field
    for field, rate in [
        ("delivery_rate", "deliveryRate"),
        ("open_rate_unique", "openRateUnique"),
        ("ctor", "ctor"),
        ("churn_rate", "churnRate"),
    ]:
        assert totals[field] == pytest.approx(summary["rates"][rate]), field
    assert body["metadata"] == {
        "ready": True,
        "timeZone": "UTC",
        "dateFrom": "2025-06-01",
        "dateTo": "2025-06-30",
        "groups": 1,
        "truncated": False,
    }


async def test_days_follow_the_time_zone_asked_for(told: httpx.AsyncClient) -> None:
    fields = "fields=date,sum_opened,sum_opened_unique,sum_spam_reports"
    utc = (await report(told, f"{fields}&{JUNE}"))["result"]
    tokyo = (await report(told, f"{fields}&{JUNE}&timeZone=Asia/Tokyo"))["result"]
    # ann's open at 23:30 UTC on June 1 is June 2 in Tokyo
    assert [(r["date"], r["sum_opened"], r["sum_spam_reports"]) for r in utc] == [
        ("2025-06-01", 4, 0),
        ("2025-06-02", 0, 1),
        ("1970-01-01", 4, 1),
    ]
    assert [(r["date"], r["sum_opened"], r["sum_spam_reports"]) for r in tokyo] == [
        ("2025-06-01", 3, 0),
        ("2025-06-02", 1, 1),
        ("1970-01-01", 4, 1),
    ]


async def test_filters_take_the_seeds_modifiers(told: httpx.AsyncClient) -> None:
    fields = "fields=post,ab_version,sum_sended"
    both = await report(told, f"{fields}&{JUNE}&post=in:c1,c2")
    assert [(r["post"], r["ab_version"], r["sum_sended"]) for r in both["result"]] == [
        ("c1", "", 0),  # eve was dropped, never sent, and had no version
        ("c1", "A", 2),
        ("c1", "B", 2),
        ("", "", 4),
    ]
    none = await report(told, f"{fields}&{JUNE}&post=c2")
    assert none["result"] == [{"post": "", "ab_version": "", "sum_sended": 0}]
    later = await report(told, "fields=sum_opened&date=ge:2025-06-02&date=le:2025-06-02")
    assert later["result"] == [{"sum_opened": 0}]
    hours = await report(told, f"fields=hour,sum_clicked&{JUNE}&hour=in:12,13")
    assert [(r["hour"], r["sum_clicked"]) for r in hours["result"]] == [(12, 0), (13, 3), (None, 3)]


async def test_what_no_event_can_answer_is_a_400_naming_it(told: httpx.AsyncClient) -> None:
    for query, words in [
        ("fields=date,sum_selected", "sum_selected cannot be answered"),
        ("fields=city_name,sum_opened", "city_name cannot be answered"),
        ("fields=client,sum_delivered", "cannot be grouped or filtered by client"),
        ("fields=sum_opened&timeZone=Asia/Kolkata", "whole-hour"),
        ("fields=sum_opened&date=ge:2025-02-30", "not a date"),
        ("fields=sum_opened&limit=5", "unknown parameter"),
    ]:
        response = await told.get(f"/v1/reports?{query}")
        assert response.status_code == 400, query
        assert words in response.text, (query, response.text)
