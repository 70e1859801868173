"""Recipient-list parameter parsing and SQL composition (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.errors import BadInput
from service.read import recipients


def build(**params: str) -> recipients.Query:
    return recipients.build("acme", "c1", "d1", params)


def test_defaults_page_100_from_0_in_recipient_order() -> None:
    q = build()
    assert (q.limit, q.offset, q.order) == (100, 0, "recipient_key")


def test_sort_is_whitelisted_with_nulls_last_and_a_tie_break() -> None:
    assert recipients.parse_sort("-openedAt,surname") == (
        "opened_at DESC NULLS LAST, surname ASC NULLS LAST, recipient_key"
    )


@pytest.mark.parametrize("sort", ["password", "-openedAt;drop table x", "openedAt,openedAt", ""])
def test_bad_sorts_are_refused_naming_sort(sort: str) -> None:
    if sort == "":
        assert recipients.parse_sort(sort) == "recipient_key"
        return
    with pytest.raises(BadInput) as info:
        build(sort=sort)
    assert info.value.details[0]["parameter"] == "sort"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "ten"),
        ("offset", "-1"),
        ("signal", "read"),
        ("dateFrom", "yesterday"),
        ("q", ""),
        ("colour", "red"),
    ],
)
def test_each_bad_parameter_is_named(param: str, value: str) -> None:
    with pytest.raises(BadInput) as info:
        build(**{param: value})
    assert info.value.details[0]["parameter"] == param


def test_date_to_before_date_from_is_refused() -> None:
    with pytest.raises(BadInput, match="dateTo"):
        build(dateFrom="2025-06-02", dateTo="2025-06-01")


def test_signal_filters_on_its_column_and_dates_apply_to_it() -> None:
    q = build(signal="opened", dateFrom="2025-06-01", dateTo="2025-06-30")
    assert "opened_at IS NOT NULL" in q.where
    assert datetime(2025, 6, 1, tzinfo=UTC) in q.args
    assert datetime(2025, 6, 30, 23, 59, 59, 999999, tzinfo=UTC) in q.args


def test_without_a_signal_dates_apply_to_the_delivery_time() -> None:
    q = build(dateFrom="2025-06-01T10:00:00+02:00")
    assert any(recipients.DELIVERY_TIME in w for w in q.where)
    assert datetime(2025, 6, 1, 8, tzinfo=UTC) in q.args


def test_search_is_a_parameter_with_like_wildcards_escaped() -> None:
    q = build(q="50%_off")
    assert "%50\\%\\_off%" in q.args
    assert not any("50%" in w for w in q.where)


def test_page_sql_puts_every_value_in_parameters() -> None:
    sql, args = recipients.page_sql(build(q="o'brien", limit="5", offset="10"))
    assert "o'brien" not in sql
    assert args[-2:] == [5, 10]


def test_seed_000s_older_names_build_the_same_query_as_the_new_ones() -> None:
    old, new = (
        build(signal="spam", sort="-spamAt"),
        build(signal="complained", sort="-complainedAt"),
    )
    assert (old.where, old.args, old.order, old.counted) == (
        new.where,
        new.args,
        new.order,
        new.counted,
    )
    assert new.counted == "complained_count"
