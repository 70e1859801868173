"""The ledger's limits (service/ledger.py) are the database's: any record on mailfold.events,
however mangled, is either refused by `row_of` or folded by the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.fold import fold_rows, prepare, row_of
from service import db, ledger
from service.events import EventType, Recipient, encode
from service.webhooks.base import RawRecord, make_event

EVENT = make_event(
    RawRecord(account="acme", source="api", body=b"", received_at=datetime.now(UTC)),
    native_type="clicked",
    type=EventType.CLICKED,
    occurred_at=datetime(2025, 6, 1, tzinfo=UTC),
    recipient=Recipient(email="ann@example.com"),
    delivery_id="d1",
    url="https://example.com/a",
)
RECORD = orjson.loads(
    encode(
        make_event(
            RawRecord(account="acme", source="api", body=b"", received_at=datetime.now(UTC)),
            native_type="converted",
            type=EventType.CONVERTED,
            occurred_at=datetime(2025, 6, 1, tzinfo=UTC),
            recipient=Recipient(email="ann@example.com", first_name="Ann"),
            campaign_id="c1",
            delivery_id="d1",
            url="https://example.com/a",
            name="purchase",
            payload={"sku": "a1"},
        )
    )
)
RECORD["conversion"] = {"amount": "12.5", "currency": "EUR"}
RECORD["bounce"] = {"class": "hard", "code": "550", "reason": "gone"}
FIELDS = sorted({*RECORD, "recipient.email", "recipient.surname", "conversion.amount"})
REFUSALS = (ValueError, KeyError, TypeError, AttributeError)

# Each class of hostile value the issue names, cheap to draw.
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(2**63 - 2, 2**64 + 2),  # 64-bit edges: orjson reads past 2**64 as a float
    st.sampled_from([1e308, -1e308, 5e-324, 0.1, -0.0]),
    st.sampled_from(["1e-20000", "1e20", "9999999999999999.9999", "0.00001", "NaN", "-Infinity"]),
    st.sampled_from(["", "\x00", "a\x00b", "é" * 1500, "x" * 2100, "y" * 5000, "\U0001f600"]),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2025-13-01"]),
    st.sampled_from(["hard", "soft", "bogus", "sent", "custom"]),
    st.just({"a": 1}),
    st.just([1, [2, [3]]]),
    st.integers(0, 40).map(lambda n: orjson.loads("[" * n + "]" * n) if n else []),
    st.text("abcé\x00\t ", max_size=6),
)


def mangle(changes: dict[str, Any]) -> bytes:
    record = orjson.loads(orjson.dumps(RECORD))
    for path, value in changes.items():
        head, _, tail = path.partition(".")
        if tail and isinstance(record.get(head), dict):
            record[head][tail] = value
        else:
            record[head] = value
    return orjson.dumps(record)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def conn(database: str, loop: asyncio.AbstractEventLoop) -> Iterator[asyncpg.Connection[Any]]:
    conn = loop.run_until_complete(db.connect(database))
    loop.run_until_complete(prepare(conn))
    yield conn
    loop.run_until_complete(conn.close())


async def fold_and_roll_back(conn: asyncpg.Connection[Any], row: tuple[Any, ...]) -> None:
    tx = conn.transaction()
    await tx.start()
    try:
        await fold_rows(conn, [row], "g", "t", {0: 1})
    finally:
        await tx.rollback()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), HOSTILE, min_size=1, max_size=3))
def test_a_record_row_of_accepts_is_one_postgresql_stores(
    changes: dict[str, Any], conn: asyncpg.Connection[Any], loop: asyncio.AbstractEventLoop
) -> None:
    try:
        data = mangle(changes)
        row = row_of(data)
    except REFUSALS:
        return
    loop.run_until_complete(fold_and_roll_back(conn, row))


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        (Decimal("1e-20000"), "at most 4 decimal places"),
        (Decimal("0.00001"), "at most 4 decimal places"),
        (Decimal("1e16"), "less than"),
        (Decimal("NaN"), "finite"),
        (Decimal("-9999999999999999.9999"), None),
        (Decimal("1.50000"), None),
    ],
)
def test_amounts_fit_numeric_20_4(amount: Decimal, problem: str | None) -> None:
    found = ledger.amount_problem(amount)
    assert (found is None) if problem is None else (problem in (found or "")), found


def test_text_limits_count_characters_and_refuse_what_postgresql_cannot_hold() -> None:
    assert ledger.text_problem("é" * 256, 256) is None
    assert "at most 256 characters" in (ledger.text_problem("é" * 257, 256) or "")
    assert "NUL" in (ledger.text_problem("a\x00", 256) or "")
    assert "surrogates" in (ledger.text_problem("x\ud83d", 256) or "")
    assert "string" in (ledger.text_problem(5, 256) or "")


def test_the_link_key_is_bounded_in_bytes_whatever_the_characters() -> None:
    """Each of account, delivery, URL and recipient may be within its own limit while the four
    together overflow the btree entry link stats are keyed by."""
    base = list(ledger.to_row(EVENT))
    base[ledger.AT["delivery_id"]] = "ü" * 256
    base[ledger.AT["recipient_key"]] = base[ledger.AT["email"]] = "é" * 250 + "@x.io"
    base[ledger.AT["url"]] = "https://example.com/" + "a" * 1700  # 2741 bytes in all
    with pytest.raises(ledger.Unstorable, match="url: with the account, delivery and recipient"):
        ledger.check_row(tuple(base))
    base[ledger.AT["url"]] = "https://example.com/" + "a" * 1000
    ledger.check_row(tuple(base))


def test_depth_counts_without_walking_past_the_limit() -> None:
    assert ledger.depth("x") == 0
    assert ledger.depth({"a": [1, {"b": []}]}) == 4
    deep: Any = []
    for _ in range(10_000):  # deeper than Python's recursion limit
        deep = [deep]
    assert ledger.depth(deep) == ledger.MAX_DEPTH + 1
