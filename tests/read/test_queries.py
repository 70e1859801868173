"""Parameter parsing and SQL composition of the read endpoints (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from service.errors import BadInput
from service.read import activities, export, histograms, links, params, recipients, summary

NOW = datetime(2025, 6, 10, 12, tzinfo=UTC)


def named(exc: pytest.ExceptionInfo[BadInput]) -> str:
    name: str = exc.value.details[0]["parameter"]
    return name


@pytest.mark.parametrize(
    ("flags", "clauses"),
    [
        ({"is_opened": "true"}, ["opened_at IS NOT NULL"]),
        ({"is_clicked": "false"}, ["clicked_at IS NULL"]),
        (
            {"is_bounced": "true", "is_complained": "false"},
            ["bounced_at IS NOT NULL", "complained_at IS NULL"],
        ),
    ],
)
def test_flags_become_null_tests_on_their_columns(
    flags: dict[str, str], clauses: list[str]
) -> None:
    q = recipients.build("acme", "c1", "d1", flags)
    assert all(c in q.where for c in clauses)


def test_version_and_status_are_parameters() -> None:
    q = recipients.build("acme", "c1", "d1", {"abVersion": "B", "status": "opened,clicked"})
    assert "B" in q.args and [6, 7] in q.args
    assert not any("'B'" in w for w in q.where)


def test_search_uses_the_indexed_search_table() -> None:
    q = recipients.build("acme", "c1", "d1", {"q": " smith "})
    assert any("recipient_search" in w and "search_text ILIKE" in w for w in q.where)
    assert "%smith%" in q.args


@pytest.mark.parametrize(
    ("name", "value"),
    [("is_opened", "1"), ("status", "opened,"), ("abVersion", "a\x00"), ("q", "x" * 201)],
)
def test_bad_recipient_filters_are_named(name: str, value: str) -> None:
    with pytest.raises(BadInput) as info:
        recipients.build("acme", "c1", "d1", {name: value})
    assert named(info) == name


def test_the_log_defaults_to_seven_days_up_to_now() -> None:
    q = activities.build_log("acme", {}, NOW)
    assert q.args[1:3] == [NOW - timedelta(days=7), NOW]
    assert q.order == "occurred_at ASC, event_id ASC" and (q.limit, q.offset) == (100, 0)


def test_the_log_with_only_a_start_runs_to_the_end_of_time() -> None:
    q = activities.build_log("acme", {"dateFrom": "2025-01-01"}, NOW)
    assert q.args[1] == datetime(2025, 1, 1, tzinfo=UTC) and q.args[2].year == 9999


def test_the_log_composes_only_whitelisted_sql() -> None:
    p = {
        "type": "opened,clicked",
        "contact": "John@X.test",
        "deliveryId": "d'1",
        "machine": "false",
    }
    q = activities.build_log("acme", p, NOW)
    page, args, count = activities.log_sql(q)
    assert "d'1" not in page and "john@x.test" in args and ["opened", "clicked"] in args
    assert "machine IS NOT TRUE" in page and count.startswith("SELECT count(*) FROM events WHERE")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=UTC)),
        ("2025-06-01T10:00:00+02:00", datetime(2025, 6, 1, 8, tzinfo=UTC)),
        ("2025-06-01t10:00:00.5z", datetime(2025, 6, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("0001-01-01T00:00:00+01:00", datetime.min.replace(tzinfo=UTC)),
    ],
)
def test_moments_are_rfc3339(value: str, expected: datetime) -> None:
    assert params.moment({"t": value}, "t", end=False) == expected


@pytest.mark.parametrize("value", ["2025-06-01T10:00", "2025-6-1", "2025-06-01T25:00:00Z", "now"])
def test_other_moments_are_refused(value: str) -> None:
    with pytest.raises(BadInput):
        params.moment({"t": value}, "t", end=False)


def test_feed_positions_round_trip() -> None:
    assert params.feed_position({}, "since") == (0, 0)
    cursor = params.format_position(812, 44)
    assert params.feed_position({"since": cursor}, "since") == (812, 44)


@pytest.mark.parametrize("value", ["+5", " 5", "5.0", "\u0665", "1_0"])
def test_integers_are_plain_ascii_digits(value: str) -> None:
    with pytest.raises(BadInput):
        params.integer({"n": value}, "n", 1, 0, 10)


def test_time_zones_are_iana_names() -> None:
    assert params.time_zone({"tz": "Asia/Kolkata"}, "tz", "UTC") == "Asia/Kolkata"
    assert params.time_zone({}, "tz", "Europe/Prague") == "Europe/Prague"
    with pytest.raises(BadInput):
        params.time_zone({"tz": "CEST"}, "tz", "UTC")


def test_link_sorts_are_whitelisted() -> None:
    assert links.parse_sort(None) == "clicks DESC NULLS LAST, url ASC"
    assert links.parse_sort("-uniqueClickers,firstClickedAt") == (
        "unique_clickers DESC NULLS LAST, first_clicked_at ASC NULLS LAST, url ASC"
    )
    with pytest.raises(BadInput):
        links.parse_sort("clicks; drop table link_stats")


def test_rates_are_null_without_a_denominator() -> None:
    zero: dict[str, Any] = {k: 0 for k in ("opens", "delivered", "opensUnique", "clicks")}
    zero.update(clicksUnique=0, sent=0, bouncesUnique=0, unsubscribesUnique=0)
    zero.update(complaintsUnique=0, churn=0)
    assert set(summary.rates(zero, 0).values()) == {None}


def test_histogram_rows_become_one_bucket_per_start_in_the_zone() -> None:
    start = datetime(2025, 6, 1, 11, tzinfo=UTC)
    rows = [
        {
            "bucket": start,
            "type": "opened",
            "events": 3,
            "machine": 1,
            "human": 1,
            "hard": 0,
            "amount": 0,
        },
        {
            "bucket": start,
            "type": "converted",
            "events": 1,
            "machine": 0,
            "human": 0,
            "hard": 0,
            "amount": Decimal("9.5"),
        },
    ]
    (bucket,) = histograms.buckets(rows, ZoneInfo("Europe/Prague"))
    assert bucket["start"] == "2025-06-01T13:00:00+02:00"
    assert (bucket["opened"], bucket["openedHuman"], bucket["openedMachine"]) == (3, 1, 1)
    assert bucket["converted"] == 1
    assert bucket["conversionsAmount"] == 9.5


def test_csv_export_header_is_the_json_field_names() -> None:
    header, _ = export.encoder("csv")
    assert header.decode().strip().split(",") == list(recipients.FIELD_NAMES)
    assert export.encoder("jsonl")[0] == b""
