"""Replay over existing state changes only what a fix changes: events re-derived with the same
id but different fields correct the ledger, and their recipients fold to exactly the rows the
corrected set gives when folded once, whole-set verdicts included, however the original events
were batched and whatever duplicates come with the corrections."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.fold import fold_rows, prepare, to_row
from service import db
from service.events import Bounce, Event
from tests.test_fold_property import OUTLOOK, POOL, TABLES, select

pytestmark = pytest.mark.integration
COLUMNS = {"events": "event_id, delivery_id, machine, machine_reason, agent_class, bounce_class"}


def find(who: str, kind: str, pick: int = 0) -> int:
    hits = [i for i, e in enumerate(POOL) if e.recipient.email == who and e.type.value == kind]
    return hits[pick]


def fixes() -> dict[int, Event]:
    """What an adapter fix might change, each with the event's id kept."""
    bob_bounce = find("bob@example.com", "bounced")
    eve_open = find("eve@example.com", "opened", 1)  # had no agent: too fast within 60 s
    dee_click = find("dee@example.com", "clicked", 1)  # one of a burst's three links
    ann_open = find("ann@example.com", "opened", 1)
    cy_open = find("cy@example.com", "opened")
    return {
        # a soft bounce that was really hard
        bob_bounce: replace(POOL[bob_bounce], bounce=Bounce("hard", "5.1.1", "no such user")),
        # the agent was there after all: no longer a machine by timing
        eve_open: replace(POOL[eve_open], user_agent=OUTLOOK, machine=False),
        # the address was misread: the burst falls apart, its clicks go back to their own verdict
        dee_click: replace(POOL[dee_click], ip="203.0.113.77"),
        # a person's open is now known to be a proxy's
        ann_open: replace(POOL[ann_open], machine=True, machine_reason="provider_flag"),
        # the delivery was misread
        cy_open: replace(POOL[cy_open], delivery_id="d3", campaign_id="c1"),
    }


async def fold(dsn: str, batches: list[tuple[list[Any], list[Any]]]) -> dict[str, list[Any]]:
    """Fold (rows, corrections) batches into a truncated database and read every table back."""
    conn = await db.connect(dsn)
    try:
        await conn.execute(
            "TRUNCATE events, recipients, delivery_stats, link_stats, messages, consumer_offsets"
        )
        await prepare(conn)
        for rows, corrections in batches:
            await fold_rows(conn, rows, "g", "t", {}, corrections)
        await fold_rows(conn, [], "g", "t", {})
        return {
            table: [dict(r) for r in await conn.fetch(select(table, order, COLUMNS))]
            for table, order in TABLES.items()
        }
    finally:
        await conn.close()


def without_empty_hours(tables: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Hour counters a correction emptied stay as zero rows; they read as nothing."""
    stats = [s for s in tables["delivery_stats"] if s["event_count"]]
    return {**tables, "delivery_stats": stats}


@pytest.fixture
def expected(database: str) -> dict[str, list[Any]]:
    corrected = [to_row(fixes().get(i, e)) for i, e in enumerate(POOL)]
    return asyncio.run(fold(database, [(corrected, [])]))


def test_the_fixes_change_what_they_should(expected: dict[str, list[Any]]) -> None:
    rows = {r["recipient_key"]: r for r in expected["recipients"]}
    assert rows["bob@example.com"]["bounce_class"] == "hard"
    assert rows["eve@example.com"]["open_human_count"] == 2
    assert rows["dee@example.com"]["click_machine_count"] == 0
    assert rows["ann@example.com"]["open_human_count"] == 0
    assert {r["delivery_id"] for r in expected["recipients"]} >= {"d3"}


@st.composite
def replays(draw: st.DrawFn) -> list[tuple[list[Any], list[Any]]]:
    """The original events in any batching, then the replay: every event again (corrected where
    a fix applies), in any order and batching, some twice."""
    indexes = list(range(len(POOL)))
    order = draw(st.permutations(indexes))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    bounds = [0, *cuts, len(order)]
    first = [
        ([to_row(POOL[i]) for i in order[a:b]], []) for a, b in itertools.pairwise(bounds) if b > a
    ]
    fixed = fixes()
    again = draw(st.permutations(indexes + draw(st.lists(st.sampled_from(indexes), max_size=6))))
    cuts = sorted(draw(st.lists(st.integers(0, len(again)), max_size=3)))
    bounds = [0, *cuts, len(again)]
    second = []
    for a, b in itertools.pairwise(bounds):
        if b > a:
            rows = [to_row(fixed.get(i, POOL[i])) for i in again[a:b]]
            second.append((rows, rows))
    return first + second


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=replays())
def test_a_replay_after_a_fix_folds_to_the_corrected_set(
    database: str, expected: dict[str, list[Any]], batches: list[tuple[list[Any], list[Any]]]
) -> None:
    got = asyncio.run(fold(database, batches))
    assert without_empty_hours(got) == without_empty_hours(expected)


def test_replaying_unchanged_events_changes_nothing(database: str) -> None:
    rows = [to_row(e) for e in POOL]
    once = asyncio.run(fold(database, [(rows, [])]))
    assert asyncio.run(fold(database, [(rows, []), (rows, rows)])) == once
