"""The fold's whole-set machine rules (MACHINE.md e3), pinned to cases with their expected verdicts,
each folded in arrival order, reversed, and one event per batch: the verdict never depends on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.fold import fold_rows, prepare, to_row
from service import db
from service.events import EventType, Recipient
from service.webhooks.base import RawRecord, make_event

pytestmark = pytest.mark.integration
RECORD = RawRecord(account="acme", source="api", body=b"")
DELIVERED = datetime(2025, 6, 1, 12, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/57.0.2987.133 Safari/537.36"
)


def ev(kind: EventType, seconds: float, **kw: Any) -> Any:
    return make_event(
        RECORD,
        native_type=kind.value,
        type=kind,
        occurred_at=DELIVERED + timedelta(seconds=seconds),
        recipient=Recipient(email="ann@example.com"),
        delivery_id="d1",
        **kw,
    )


def click(seconds: float, link: int, ip: str = "40.1.2.3", **kw: Any) -> Any:
    return ev(EventType.CLICKED, seconds, url=f"https://shop.test/{link}", ip=ip, **kw)


async def verdicts(dsn: str, events: list[Any], batch: int) -> list[tuple[str | None, Any]]:
    """Fold `events` in batches of `batch`; each event's (machine_reason, machine), in order."""
    conn = await db.connect(dsn)
    try:
        await conn.execute("TRUNCATE events, recipients, delivery_stats, link_stats, messages")
        await prepare(conn)
        rows = [to_row(e) for e in events]
        for i in range(0, len(rows), batch):
            await fold_rows(conn, rows[i : i + batch], "g", "t", {})
        found = {
            r["event_id"].hex: (r["machine_reason"], r["machine"])
            for r in await conn.fetch("SELECT event_id, machine_reason, machine FROM events")
        }
        return [found[e.event_id] for e in events]
    finally:
        await conn.close()


async def in_every_order(dsn: str, events: list[Any]) -> list[tuple[str | None, Any]]:
    forward = await verdicts(dsn, events, len(events))
    backward = await verdicts(dsn, events[::-1], len(events))
    one_by_one = await verdicts(dsn, events[::-1], 1)
    assert backward[::-1] == forward and one_by_one[::-1] == forward
    return forward


async def test_a_scanner_sweeping_nine_links_is_one_burst(database: str) -> None:
    # craft-campaign#546: 9 distinct links within 0.8 s from one address, 43 s after delivery
    burst = [click(43 + i * 0.1, i, user_agent=CHROME, machine=False) for i in range(9)]
    person = click(600, 0, ip="198.51.100.4", user_agent=CHROME, machine=False)
    got = await in_every_order(database, [ev(EventType.DELIVERED, 0), *burst, person])
    assert got[1:10] == [("click_burst", True)] * 9
    assert got[10] == (None, False)  # the person's click later on stays a person's


async def test_two_links_or_two_addresses_are_no_burst(database: str) -> None:
    two = [click(100, 0), click(100.5, 1), click(101, 1)]
    spread = [click(200, 2, ip="192.0.2.1"), click(200.2, 3, ip="192.0.2.2"), click(200.4, 4)]
    got = await in_every_order(database, two + spread)
    assert all(reason is None for reason, _ in got)


async def test_too_fast_after_delivery(database: str) -> None:
    events = [
        ev(EventType.SENT, -5),
        ev(EventType.DELIVERED, 0),
        ev(EventType.OPENED, 1.5, user_agent=CHROME, machine=False),  # a client, 1.5 s: machine
        ev(EventType.OPENED, 2.5, user_agent=CHROME, machine=False),  # a client, 2.5 s: person
        ev(EventType.OPENED, 59),  # no agent, 59 s: the second signal, machine
        ev(EventType.OPENED, 61),  # no agent, 61 s: undecided
        ev(EventType.OPENED, 1, machine=True, machine_reason="provider_flag"),  # the flag stays
    ]
    got = await in_every_order(database, events)
    assert got[2:] == [
        ("too_fast", True),
        (None, False),
        ("too_fast", True),
        (None, None),
        ("provider_flag", True),
    ]


async def test_too_fast_falls_back_to_the_send_when_no_delivery_is_reported(
    database: str,
) -> None:
    events = [ev(EventType.SENT, 0), ev(EventType.OPENED, 1, user_agent=CHROME, machine=False)]
    assert (await in_every_order(database, events))[1] == ("too_fast", True)


async def test_a_burst_outranks_too_fast(database: str) -> None:
    events = [ev(EventType.DELIVERED, 0), *[click(0.5 + i * 0.2, i) for i in range(3)]]
    assert (await in_every_order(database, events))[1:] == [("click_burst", True)] * 3
