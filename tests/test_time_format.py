"""`format_time`, the one time format on the stream (and part of every event id), reads the same
for every instant and zone as `strftime("%Y-%m-%dT%H:%M:%S.%fZ")` in UTC; `parse_time` reads it
back, and its fast path for that format agrees with the general one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from service.events import format_time, parse_time

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(0)), timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]
)


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)), ZONES)
def test_format_time_is_utc_strftime(naive: datetime, zone: timezone) -> None:
    value = naive.replace(tzinfo=zone)
    assert format_time(value) == value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_equal_instants_in_other_zones_read_the_same() -> None:
    utc = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert format_time(utc.astimezone(timezone(timedelta(hours=2)))) == format_time(utc)
    assert format_time(utc) == "2025-06-01T12:00:00.000000Z"


@given(st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 31)), ZONES)
def test_parse_time_reads_format_time_back(naive: datetime, zone: timezone) -> None:
    value = naive.replace(tzinfo=zone)
    parsed = parse_time(format_time(value))
    assert parsed == value and parsed.tzinfo is UTC


@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%MZ"]),
)
def test_the_fast_path_agrees_with_the_general_one(naive: datetime, pattern: str) -> None:
    text = naive.strftime(pattern)
    general = parse_time(" " + text)  # a leading space takes the general path
    assert parse_time(text) == general and parse_time(text).tzinfo is UTC
