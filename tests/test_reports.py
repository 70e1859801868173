"""The report builder: its parameters, and its defining property on the real database. Random
events, folded in any order with duplicates, late attribution and replayed corrections, give the
same report from the fold's rollups as a straight recomputation from the ledger, whatever the
grouping, filters and time zone."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from consumers.fold import fold_rows, prepare, to_row
from service import db
from service.errors import BadInput
from service.events import Bounce, EventType, Recipient
from service.read import reports
from service.webhooks.base import RawRecord, make_event

T0 = datetime(2025, 6, 1, 21, tzinfo=UTC)
AGENTS = [
    None,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.12026; Pro)",
]
ADDRESSES = [None, "8.8.8.8", "81.2.69.142", "2a00:1450:4001::1", "10.0.0.7"]
BOUNCES = [
    Bounce("hard", "5.1.1", "550 5.1.1 user unknown"),
    Bounce("soft", "4.2.2", "mailbox full"),
    Bounce("hard", "5.7.1", "rejected: listed on Spamhaus"),
    Bounce(None, None, "something else"),
]
DROPS = ["Bounced Address", "Unsubscribed Address", "Spam Reporting Address", "Invalid", "Other"]
KINDS = [
    EventType.SENT,
    EventType.DELIVERED,
    EventType.OPENED,
    EventType.OPENED,
    EventType.CLICKED,
    EventType.BOUNCED,
    EventType.DROPPED,
    EventType.UNSUBSCRIBED,
    EventType.COMPLAINED,
]


def parse(query: str, today: date = date(2025, 6, 5)) -> reports.Report:
    return reports.parse(QueryParams(query), today)


# -- parameters --------------------------------------------------------------------------------


def test_fields_the_events_cannot_answer_are_refused_by_name() -> None:
    for field, words in [
        ("sum_selected", "no recipient selection"),
        ("sum_stop_gdpr", "sending policy"),
        ("city_name", "country_name"),
        ("sum_delivered_human", "only opens and clicks"),
        ("sum_nothing", "unknown field"),
    ]:
        with pytest.raises(BadInput) as caught:
            parse(f"fields=date,{field}")
        assert field in str(caught.value) and words in str(caught.value)


def test_a_half_hour_zone_is_refused_and_whole_hour_zones_are_taken() -> None:
    with pytest.raises(BadInput, match="whole-hour"):
        parse("fields=sum_sended&timeZone=Asia/Kolkata")
    report = parse("fields=sum_sended&timeZone=America/New_York&date=ge:2025-06-01")
    assert report.start == datetime(2025, 6, 1, 4, tzinfo=UTC) and report.end is None


def test_without_dates_the_last_seven_days_apply() -> None:
    report = parse("fields=date,sum_sended")
    assert report.start == datetime(2025, 5, 29, tzinfo=UTC) and report.end is None


def test_filters_take_the_seed_modifiers_and_refuse_malformed_values() -> None:
    report = parse("fields=post,sum_sended&date=ge:2025-06-01&date=le:2025-06-30&post=in:a,b")
    assert report.end == datetime(2025, 7, 1, tzinfo=UTC)
    assert report.args[-1] == ["a", "b"] and "campaign_id = ANY" in report.where[-1]
    assert parse("fields=sum_sended&hour=ge:9").args[-1] == 9
    for query in ["hour=ge:nine", "date=le:2025-13-01", "date=ge:0001-01-01", "week=2025-23"]:
        with pytest.raises(BadInput):
            parse(f"fields=sum_sended&{query}")
    with pytest.raises(BadInput, match="unknown parameter"):
        parse("fields=sum_sended&limit=5")


def test_only_a_client_or_country_reads_the_audience_rollup() -> None:
    assert not parse("fields=date,post,sum_opened").audience
    assert parse("fields=client,sum_opened").audience
    assert parse("fields=date,sum_opened&country_name=Germany").audience
    for query in ["fields=client,sum_delivered", "fields=sum_opened_unique&country_name=Germany"]:
        with pytest.raises(BadInput, match="cannot be grouped or filtered by client"):
            parse(query)


def test_each_report_reads_the_coarsest_rollup_that_answers_it() -> None:
    june = "date=ge:2025-06-01&date=le:2025-06-30"
    assert parse(f"fields=date,post,sum_sended&{june}").rollup == "days"
    assert parse(f"fields=hour,sum_sended&{june}").rollup == "hours"
    assert parse(f"fields=sum_sended&hour=ge:9&{june}").rollup == "hours"
    assert parse(f"fields=date,sum_sended&{june}&timeZone=America/New_York").rollup == "hours"
    assert parse(f"fields=date,client,sum_opened&{june}").rollup == "audience"
    # London is UTC in winter only
    winter = "date=ge:2025-01-01&date=le:2025-01-31&timeZone=Europe/London"
    assert parse(f"fields=date,sum_sended&{winter}").rollup == "days"
    assert parse(f"fields=date,sum_sended&{june}&timeZone=Europe/London").rollup == "hours"


# -- reports equal the ledger recomputation ------------------------------------------------------


@st.composite
def events(draw: st.DrawFn) -> list[Any]:
    """A few recipients' funnels over two campaigns, three deliveries and three days."""
    out = []
    for who in range(draw(st.integers(1, 8))):
        delivery = draw(st.sampled_from(["d1", "d2", "d3"]))
        campaign = {"d1": "c1", "d2": "c1", "d3": "c2"}[delivery]
        version = draw(st.sampled_from([None, "A", "B"]))
        source = draw(st.sampled_from(["api", "sendgrid"]))
        for _ in range(draw(st.integers(1, 6))):
            kind = draw(st.sampled_from(KINDS))
            # some events come without their delivery and are attributed through their message
            attributed = kind is EventType.SENT or draw(st.integers(0, 4)) > 0
            engaged = kind in (EventType.OPENED, EventType.CLICKED)
            bounce = None
            if kind is EventType.BOUNCED:
                bounce = draw(st.sampled_from(BOUNCES))
            elif kind is EventType.DROPPED:
                bounce = Bounce(None, None, draw(st.sampled_from(DROPS)))
            out.append(
                make_event(
                    RawRecord(account="acme", source=source, body=b""),
                    native_type=kind.value,
                    type=kind,
                    occurred_at=T0 + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60))),
                    recipient=Recipient(email=f"r{who}@example.com"),
                    campaign_id=campaign if attributed else None,
                    delivery_id=delivery if attributed else None,
                    message_id=f"m{who}",
                    ab_version=version,
                    user_agent=draw(st.sampled_from(AGENTS)) if engaged else None,
                    ip=draw(st.sampled_from(ADDRESSES)) if engaged else None,
                    machine=draw(st.sampled_from([None, True, False])) if engaged else None,
                    bounce=bounce,
                    url=f"https://x.test/{draw(st.integers(0, 3))}"
                    if kind is EventType.CLICKED
                    else None,
                )
            )
    return out


@st.composite
def foldings(draw: st.DrawFn) -> tuple[list[Any], list[list[tuple[Any, bool]]]]:
    """Events, and batches of (row, replayed?) that hold each of them at least once: any order,
    duplicates, and some replays that correct an event's user agent or bounce."""
    pool = draw(events())
    rows = [to_row(e) for e in pool]
    extra = draw(st.lists(st.sampled_from(range(len(rows))), max_size=6))
    order = draw(st.permutations(list(range(len(rows))) + extra))
    items: list[tuple[Any, bool]] = [(rows[i], False) for i in order]
    for i in draw(st.lists(st.sampled_from(range(len(pool))), max_size=3)):
        fixed = replace(pool[i], user_agent=AGENTS[1], ip=ADDRESSES[2])
        items.append((to_row(fixed), True))
        pool[i] = fixed
    cuts = sorted(draw(st.lists(st.integers(0, len(items)), max_size=4)))
    bounds = [0, *cuts, len(items)]
    return pool, [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


QUERIES = st.builds(
    lambda groups, sums, zone, since, until, post: "&".join(
        p
        for p in [
            "fields=" + ",".join([*groups, *sums]),
            f"timeZone={zone}",
            f"date=ge:{since}",
            f"date=le:{until}" if until else "",
            f"post={post}" if post else "",
        ]
        if p
    ),
    st.lists(st.sampled_from(sorted(reports.GROUPS)), max_size=3, unique=True),
    st.lists(st.sampled_from(sorted(reports.AGGREGATES)), min_size=1, max_size=6, unique=True),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
    st.sampled_from(["2025-05-30", "2025-06-02", "2025-06-03"]),
    st.sampled_from([None, "2025-06-02", "2025-06-10"]),
    st.sampled_from([None, "c1", "in:c1,c2"]),
)


async def fold_and_compare(
    dsn: str, batches: list[list[tuple[Any, bool]]], queries: list[str]
) -> None:
    conn = await db.connect(dsn)
    try:
        await conn.execute(
            "TRUNCATE events, recipients, delivery_stats, link_stats, messages, consumer_offsets"
        )
        await prepare(conn)
        for batch in batches:
            rows = [row for row, _ in batch]
            await fold_rows(conn, rows, "g", "t", {}, [row for row, again in batch if again])
        await fold_rows(conn, [], "g", "t", {})
        folded = await conn.fetchval("SELECT count(*) FROM events WHERE delivery_id IS NOT NULL")
        live = await conn.fetchval("SELECT count(*) FROM report_hours WHERE live")
        assert (folded > 0) == (live > 0)
        for query in queries:
            try:
                report = parse(query)
            except BadInput as refused:
                # a client or country with a count that has neither
                assert "client" in query or "country_name" in query, query
                assert "client or country_name" in str(refused)
                continue
            got = await reports.run(conn, "acme", report)
            want = await reports.run(conn, "acme", report, ledger=True)
            assert got == want, query
    finally:
        await conn.close()


@pytest.mark.integration
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(folding=foldings(), queries=st.lists(QUERIES, min_size=1, max_size=4))
def test_reports_from_the_rollups_equal_the_ledger_recomputed(
    database: str, folding: tuple[list[Any], list[list[tuple[Any, bool]]]], queries: list[str]
) -> None:
    _, batches = folding
    asyncio.run(fold_and_compare(database, batches, queries))


@pytest.mark.integration
def test_a_story_reads_as_expected(database: str) -> None:
    """One known set: the figures themselves, not only their agreement with the ledger."""
    rec = RawRecord(account="acme", source="sendgrid", body=b"")

    def at(kind: EventType, hours: int, who: str, **kw: Any) -> Any:
        return make_event(
            rec,
            native_type=kind.value,
            type=kind,
            occurred_at=T0 + timedelta(hours=hours),
            recipient=Recipient(email=f"{who}@example.com"),
            campaign_id="c1",
            delivery_id="d1",
            **kw,
        )

    pool = [
        at(EventType.SENT, 0, "ann"),
        at(EventType.DELIVERED, 0, "ann"),
        at(EventType.OPENED, 2, "ann", user_agent=AGENTS[1], ip="8.8.8.8", machine=False),
        at(EventType.OPENED, 30, "ann", user_agent=AGENTS[3], ip="81.2.69.142", machine=False),
        at(EventType.SENT, 0, "bob"),
        at(EventType.BOUNCED, 1, "bob", bounce=BOUNCES[0]),
    ]

    async def check(*queries: str) -> list[dict[str, Any]]:
        conn = await db.connect(database)
        try:
            await prepare(conn)
            await fold_rows(conn, [to_row(e) for e in reversed(pool)], "g", "t", {})
            return [await reports.run(conn, "acme", parse(q)) for q in queries]
        finally:
            await conn.close()

    by_date, by_client = asyncio.run(
        check(
            "fields=date,sum_sended,sum_delivered,sum_opened,sum_opened_unique,"
            "sum_bounce_xistent,delivery_rate,open_rate_unique&date=ge:2025-06-01",
            "fields=client,country_name,sum_opened,sum_opened_human&date=ge:2025-06-01",
        )
    )
    days = {r["date"]: r for r in by_date["result"][:-1]}
    assert days["2025-06-01"]["sum_sended"] == 2 and days["2025-06-01"]["sum_delivered"] == 1
    assert days["2025-06-01"]["sum_bounce_xistent"] == 1
    assert days["2025-06-01"]["sum_opened_unique"] == 1
    # ann's second open, a day later: an open, not a new unique opener
    assert (days["2025-06-03"]["sum_opened"], days["2025-06-03"]["sum_opened_unique"]) == (1, 0)
    totals = by_date["result"][-1]
    assert totals["date"] == "1970-01-01"
    assert (totals["sum_sended"], totals["sum_delivered"], totals["sum_opened"]) == (2, 1, 2)
    assert totals["delivery_rate"] == 0.5 and totals["open_rate_unique"] == 1.0
    clients = {(r["client"], r["country_name"]): r["sum_opened"] for r in by_client["result"]}
    assert clients == {
        ("Apple Mail", "United States"): 1,
        ("Outlook", "United Kingdom"): 1,
        ("", ""): 2,
    }
