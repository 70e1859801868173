"""The fold's defining property, on the real database: any permutation of a set of events, with
any duplicates, in any batching, folds to exactly the rows of the set folded once in order."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.fold import fold_rows, prepare, to_row
from service import db
from service.events import Bounce, Conversion, EventType, Recipient
from service.read import reports
from service.webhooks.base import RawRecord, make_event
from tests import oracle

pytestmark = pytest.mark.integration
T0 = datetime(2025, 6, 1, 12, tzinfo=UTC)
RECORD = RawRecord(account="acme", source="api", body=b"")


OUTLOOK = "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; Microsoft Outlook 16.0; ms-office)"


def ev(
    kind: EventType,
    minutes: int,
    who: str,
    delivery: str | None = "d1",
    seconds: float = 0,
    **kw: Any,
) -> Any:
    return make_event(
        RECORD,
        native_type=kind.value,
        type=kind,
        occurred_at=T0 + timedelta(minutes=minutes, seconds=seconds),
        recipient=Recipient(email=f"{who}@example.com", first_name=who.title()),
        campaign_id="c1" if delivery else None,
        delivery_id=delivery,
        message_id=kw.pop("message_id", f"m-{who}"),
        **kw,
    )


POOL = [
    ev(EventType.SENT, 0, "ann"),
    ev(EventType.DELIVERED, 1, "ann"),
    ev(EventType.OPENED, 5, "ann", machine=True),
    ev(EventType.OPENED, 9, "ann", machine=False, ip="1.2.3.4"),
    ev(EventType.CLICKED, 10, "ann", url="https://x.test/a"),
    ev(EventType.CLICKED, 11, "ann", url="https://x.test/b", machine=True),
    ev(EventType.CLICKED, 70, "ann", url="https://x.test/a"),
    ev(EventType.CONVERTED, 80, "ann", conversion=Conversion(Decimal("10.25"), "EUR")),
    ev(EventType.CONVERTED, 90, "ann", conversion=Conversion(Decimal("5"), "EUR")),
    ev(EventType.UNSUBSCRIBED, 95, "ann"),
    ev(EventType.SENT, 0, "bob"),
    ev(EventType.BOUNCED, 3, "bob", bounce=Bounce("soft", "4.2.2", "full")),
    ev(EventType.BOUNCED, 300, "bob", delivery=None, bounce=Bounce("hard", "5.1.1", "gone")),
    ev(EventType.DEFERRED, 2, "bob"),
    ev(EventType.SENT, 0, "cy", delivery="d2"),
    ev(EventType.COMPLAINED, 600, "cy", delivery=None),
    ev(EventType.OPENED, 30, "cy", delivery="d2"),
    # a scanner's burst: three links within two seconds from one address, one the provider
    # called human; the click a minute later stays a person's
    *[
        make_event(
            RECORD,
            native_type="clicked",
            type=EventType.CLICKED,
            occurred_at=T0 + timedelta(minutes=40, milliseconds=600 * i),
            recipient=Recipient(email="dee@example.com"),
            delivery_id="d1",
            url=f"https://x.test/{i}",
            ip="40.1.1.1",
            machine=False if i == 0 else None,
        )
        for i in range(3)
    ],
    ev(EventType.CLICKED, 41, "dee", url="https://x.test/0", ip="198.51.100.1", machine=False),
    # the timing rule: a real-looking client 1 s after delivery, no user agent 30 s after it, both
    # machines; a client 30 s after it, a person; a click both fast and in a burst is a burst's
    ev(EventType.SENT, 0, "eve"),
    ev(EventType.DELIVERED, 2, "eve"),
    ev(EventType.OPENED, 2, "eve", seconds=1, machine=False, user_agent=OUTLOOK),
    ev(EventType.OPENED, 2, "eve", seconds=30),
    ev(EventType.OPENED, 2, "eve", seconds=31, machine=False, user_agent=OUTLOOK),
    *[
        ev(EventType.CLICKED, 2, "eve", seconds=1 + i / 2, url=f"https://x.test/{i}", ip="9.9.9.9")
        for i in range(3)
    ],
    # a delivery reported late, before an open already folded: the window opens backwards
    ev(EventType.OPENED, 50, "fay", seconds=40, user_agent=OUTLOOK, machine=False),
    ev(EventType.DELIVERED, 50, "fay", seconds=39),
    # gus's only human click turns out to open a burst: gus leaves the clicked_human count
    ev(EventType.CLICKED, 50, "gus", url="https://x.test/0", ip="40.1.1.2", machine=False),
    *[
        make_event(
            RECORD,
            native_type="clicked",
            type=EventType.CLICKED,
            occurred_at=T0 + timedelta(minutes=50, milliseconds=500 * i),
            recipient=Recipient(email="gus@example.com", first_name="Gus"),
            campaign_id="c1",
            delivery_id="d1",
            url=f"https://x.test/{i}",
            ip="40.1.1.2",
        )
        for i in range(1, 3)
    ],
]
ROWS = [to_row(e) for e in POOL]
TABLES = {
    "recipients": "account_id, delivery_id, recipient_key",
    "delivery_stats": "account_id, delivery_id, hour, type",
    "link_stats": "account_id, delivery_id, url, recipient_key",
    "messages": "account_id, message_id, recipient_key",
    "events": "event_id",
    "delivery_counts": "account_id, delivery_id, campaign_id",
    "recipient_search": "account_id, delivery_id, recipient_key",
    "report_hours": "account_id, hour, campaign_id, delivery_id, source, ab_version",
    "report_days": "account_id, hour, campaign_id, delivery_id, source, ab_version",
    "report_audience": "account_id, hour, campaign_id, delivery_id, source, ab_version, client, "
    "country",
}
COLUMNS = {"events": "event_id, delivery_id, machine, machine_reason, agent_class"}
# Report rollup rows whose counts a later, earlier-dated event moved away stay behind as zeros
# (not live); they read as nothing, so only live rows are compared.
WHERE = {"report_hours": "live", "report_days": "live", "report_audience": "live"}


def select(table: str, order: str, columns: dict[str, str] = COLUMNS) -> str:
    """The statement that reads `table` back for comparison."""
    where = f"WHERE {WHERE[table]}" if table in WHERE else ""
    return f"SELECT {columns.get(table, '*')} FROM {table} {where} ORDER BY {order}"


async def fold_in_batches(dsn: str, batches: list[list[int]]) -> dict[str, list[Any]]:
    conn = await db.connect(dsn)
    try:
        await conn.execute(
            "TRUNCATE events, recipients, delivery_stats, link_stats, messages, consumer_offsets"
        )
        await prepare(conn)
        for batch in batches:
            await fold_rows(conn, [ROWS[i] for i in batch], "g", "t", {})
        # The idle sweep: attribution committed by the last batch is picked up at the latest here.
        await fold_rows(conn, [], "g", "t", {})
        return {
            table: [dict(r) for r in await conn.fetch(select(table, order))]
            for table, order in TABLES.items()
        }
    finally:
        await conn.close()


def counts_of(recipients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """delivery_counts as the recipient rows give it (NULL campaigns sort last, as in SQL)."""
    groups: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for r in recipients:
        key = (r["account_id"], r["delivery_id"], r["campaign_id"])
        row = groups.setdefault(
            key,
            {"account_id": key[0], "delivery_id": key[1], "campaign_id": key[2]}
            | dict.fromkeys(oracle.COUNT_FIELDS, 0),
        )
        row["recipient_count"] += 1
        for name, column in oracle.SIGNAL_COUNTS.items():
            row[name] += r[column] is not None
        sends = [s for s in (row.get("first_sent_at"), r["sent_at"]) if s is not None]
        row["first_sent_at"] = min(sends, default=None)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1], k[2] is None, k[2]))]


@st.composite
def shuffled_batches(draw: st.DrawFn) -> list[list[int]]:
    indexes = list(range(len(POOL)))
    extra = draw(st.lists(st.sampled_from(indexes), max_size=12))
    order = draw(st.permutations(indexes + extra))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=5)))
    bounds = [0, *cuts, len(order)]
    return [order[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@pytest.fixture
def database_dsn(database: str) -> str:
    return database


@pytest.fixture
def expected(database_dsn: str) -> dict[str, list[Any]]:
    return asyncio.run(fold_in_batches(database_dsn, [list(range(len(POOL)))]))


def test_folding_the_set_once_gives_the_expected_story(expected: dict[str, list[Any]]) -> None:
    ann = next(r for r in expected["recipients"] if r["recipient_key"] == "ann@example.com")
    assert (ann["open_count"], ann["open_human_count"], ann["open_machine_count"]) == (2, 1, 1)
    assert ann["click_count"] == 3 and ann["conversions_amount"] == Decimal("15.25")
    bob = next(r for r in expected["recipients"] if r["recipient_key"] == "bob@example.com")
    assert (bob["bounce_class"], bob["bounce_reason"]) == ("hard", "gone")  # hard outranks soft
    dee = next(r for r in expected["recipients"] if r["recipient_key"] == "dee@example.com")
    assert (dee["click_count"], dee["click_machine_count"], dee["click_human_count"]) == (4, 3, 1)
    assert dee["human_clicked_at"] == T0 + timedelta(minutes=41)
    clicks = [s for s in expected["delivery_stats"] if s["type"] == "clicked"]
    assert sum(s["machine_count"] for s in clicks) == 10  # ann's flagged click, three bursts
    eve = next(r for r in expected["recipients"] if r["recipient_key"] == "eve@example.com")
    assert (eve["open_count"], eve["open_human_count"], eve["open_machine_count"]) == (3, 1, 2)
    assert eve["human_opened_at"] == T0 + timedelta(minutes=2, seconds=31)
    assert (eve["click_count"], eve["click_machine_count"]) == (3, 3)
    fay = next(r for r in expected["recipients"] if r["recipient_key"] == "fay@example.com")
    assert (fay["open_machine_count"], fay["human_opened_at"]) == (1, None)
    reasons = Counter(e["machine_reason"] for e in expected["events"])
    assert (reasons["too_fast"], reasons["click_burst"]) == (3, 9)
    cy = next(r for r in expected["recipients"] if r["recipient_key"] == "cy@example.com")
    assert cy["delivery_id"] == "d2" and cy["complained_at"] is not None  # attributed late
    gus = next(r for r in expected["recipients"] if r["recipient_key"] == "gus@example.com")
    assert gus["clicked_at"] is not None and gus["human_clicked_at"] is None
    # the per-delivery counts are those of the rows, whatever statement changed them
    assert expected["delivery_counts"] == counts_of(expected["recipients"])
    d1 = next(r for r in expected["delivery_counts"] if r["delivery_id"] == "d1")
    assert d1["clicked_count"] > d1["human_clicked_count"] > 0
    search = {r["recipient_key"]: r["search_text"] for r in expected["recipient_search"]}
    assert search["ann@example.com"] == "ann@example.com\nAnn"
    # the report rollups add up to the rows: opens and clicks per event, the rest per recipient
    recipients, hours = expected["recipients"], expected["report_hours"]
    for counter, figure in [
        ("opened", sum(r["open_count"] for r in recipients)),
        ("opened_human", sum(r["open_human_count"] for r in recipients)),
        ("clicked_human", sum(r["click_human_count"] for r in recipients)),
        ("recipients", len(recipients)),
        ("opened_unique", sum(r["opened_at"] is not None for r in recipients)),
        ("clicked_unique_human", sum(r["human_clicked_at"] is not None for r in recipients)),
        ("complained", sum(r["complained_at"] is not None for r in recipients)),
    ]:
        assert sum(h[counter] for h in hours) == figure > 0, counter
        assert sum(d[counter] for d in expected["report_days"]) == figure, counter
        if counter in reports.PER_EVENT:
            assert sum(a[counter] for a in expected["report_audience"]) == figure, counter


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=shuffled_batches())
def test_any_order_duplicates_and_batching_fold_to_the_same_rows(
    database_dsn: str, expected: dict[str, list[Any]], batches: list[list[int]]
) -> None:
    assert asyncio.run(fold_in_batches(database_dsn, batches)) == expected
