"""Reads: the recipient list of one delivery of a million recipients (generated in SQL,
bench/recipients.sql) through the read API, against the same SQL issued directly (the
statements the endpoint runs: delivery_scope, the page, the count), samples alternating; then
the API again while the fold consumer folds opens and clicks into that same delivery.

The recipient indexes are built after the rows are loaded (schema.sql applied again), which
gives the same indexes as loading row by row, in a fraction of the time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlencode

import asyncpg

from bench import corpus, generator
from bench.context import Context, Phase
from bench.http import Connection, basic, request
from bench.instance import Account
from bench.phases.fold import stored
from bench.phases.ingest import free_port
from bench.procs import PYTHON, ROOT, Process
from bench.stats import latency_ms, percentile
from service import db, kafka
from service.events import encode
from service.read.recipients import SIGNALS, build, count_sql, delivery_scope, narrow, page_sql

CAMPAIGN, DELIVERY = "c-big", "d-big"
OFFSETS = (0, 500, 10_000)
RECIPIENTS_SQL = ROOT / "bench" / "recipients.sql"
TARGET_P50_EXTRA_MS = 1.5
TARGET_P99_FACTOR = 2.0
TARGET_PAGE_P99_MS = 15.0
TARGET_SEARCH_P99_MS = 30.0
TARGET_FOLDING_FACTOR = 2.0


def kinds() -> list[tuple[str, dict[str, str], str]]:
    """(label, query parameters, page or search) for every combination the issue names."""
    lists: list[tuple[str, dict[str, str], str]] = [("no filter", {}, "page")]
    lists += [(f"signal={s}", {"signal": s}, "page") for s in SIGNALS]
    lists += [("sort=-openedAt,surname", {"sort": "-openedAt,surname"}, "page")]
    # A common surname (a few % of rows) and a selective e-mail fragment (about a hundred).
    lists += [("q=schmidt", {"q": "schmidt"}, "search"), ("q=r4242", {"q": "r4242"}, "search")]
    return [
        (f"{label}, offset {o}", {**params, "offset": str(o)} if o else params, group)
        for label, params, group in lists
        for o in OFFSETS
    ]


async def load_recipients(ctx: Context, dsn: str, account: str) -> float:
    """Generate the delivery; returns the seconds it took (rows, indexes, analyze)."""
    began = time.monotonic()
    conn = await db.connect(dsn)
    try:
        await conn.execute(
            f"ALTER DATABASE \"{dsn.rsplit('/', 1)[1]}\" SET maintenance_work_mem = '512MB'"
        )
        names = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename IN ('recipients', "
            "'recipient_search') AND indexname NOT IN ('recipients_pkey', 'recipient_search_pkey')"
        )
        for row in names:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        await conn.execute("SELECT setseed(0.42)")
        await conn.execute(
            RECIPIENTS_SQL.read_text(),
            account,
            CAMPAIGN,
            DELIVERY,
            ctx.sizes.recipients,
            list(generator.FIRST_NAMES),
            list(generator.SURNAMES),
            list(generator.DOMAINS),
        )
        await db.apply_schema(dsn)  # puts the dropped indexes back
        await conn.execute("VACUUM ANALYZE recipients, recipient_search, delivery_counts")
    finally:
        await conn.close()
    return time.monotonic() - began


class Reader:
    """Times one list request both ways: through the API and as the endpoint's SQL."""

    def __init__(self, conn: asyncpg.Connection[Any], api: Connection, account: Account) -> None:
        self.conn, self.api, self.account = conn, api, account
        self.headers = basic(account.login, account.secret)
        self.path = f"/v1/deliveries/{CAMPAIGN}/{DELIVERY}/recipients"

    async def via_api(self, params: dict[str, str]) -> float:
        query = f"?{urlencode(params)}" if params else ""
        data = request("GET", self.path + query, "127.0.0.1", headers=self.headers)
        began = time.perf_counter()
        status, _ = await self.api.exchange(data)
        spent = time.perf_counter() - began
        if status != 200:
            raise RuntimeError(f"read API answered {status} for {params}")
        return spent

    async def via_sql(self, params: dict[str, str]) -> tuple[float, float, float]:
        """Total, page and count seconds of the statements the endpoint runs."""
        query = build(self.account.account, CAMPAIGN, DELIVERY, params)
        began = time.perf_counter()
        narrow(query, await delivery_scope(self.conn, self.account.account, CAMPAIGN, DELIVERY))
        page, page_args = page_sql(query)
        count, count_args = count_sql(query)
        paged = time.perf_counter()
        await self.conn.fetch(page, *page_args)
        counted = time.perf_counter()
        await self.conn.fetchval(count, *count_args)
        done = time.perf_counter()
        return done - began, counted - paged, done - counted


async def measure(reader: Reader, samples: int, with_sql: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for label, params, group in kinds():
        api, sql, page, count = [], [], [], []
        for _ in range(samples):
            if with_sql:
                total, p, c = await reader.via_sql(params)
                sql.append(total)
                page.append(p)
                count.append(c)
            api.append(await reader.via_api(params))
        out[label] = {"group": group, "api": api, "sql": sql, "sql_page": page, "sql_count": count}
    return out


def pooled(result: dict[str, dict[str, Any]], group: str | None = None) -> list[float]:
    return [v for r in result.values() if group in (None, r["group"]) for v in r["api"]]


async def engagement_topic(ctx: Context, dsn: str, account: str) -> tuple[Any, int]:
    """A topic of opens and clicks on the big delivery, for the fold to work on meanwhile."""
    settings = await ctx.inst.settings("reads-fold", dsn)
    count = max(2000, ctx.sizes.fold_events)
    events = generator.engagement(7, ctx.sizes.recipients, count, CAMPAIGN, DELIVERY)
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        for batch in generator.batches(events, 1000):
            canonical = corpus.events_of(generator.body(batch), account)
            await producer.send_many(
                [(settings.events_topic, e.key(), encode(e), []) for e in canonical]
            )
    finally:
        await producer.stop()
    return settings, count


def summarise(
    phase: Phase, alone: dict[str, dict[str, Any]], busy: dict[str, dict[str, Any]]
) -> None:
    """Per kind: API against SQL (p50 plus 1.5 ms, p99 doubled); pooled page and search p99."""
    table = {}
    p50_missed, p99_missed = [], []
    for label, r in alone.items():
        api50, sql50 = percentile(r["api"], 50) * 1000, percentile(r["sql"], 50) * 1000
        api99, sql99 = percentile(r["api"], 99) * 1000, percentile(r["sql"], 99) * 1000
        if api50 > sql50 + TARGET_P50_EXTRA_MS:
            p50_missed.append(f"{label} (API {api50:.1f} ms, SQL {sql50:.1f} ms)")
        if api99 > TARGET_P99_FACTOR * sql99:
            p99_missed.append(f"{label} (API {api99:.1f} ms, SQL {sql99:.1f} ms)")
        table[label] = {
            "api": latency_ms(r["api"]),
            "sql": latency_ms(r["sql"]),
            "sql_page_p50_ms": round(percentile(r["sql_page"], 50) * 1000, 2),
            "sql_count_p50_ms": round(percentile(r["sql_count"], 50) * 1000, 2),
            "api_folding": latency_ms(busy[label]["api"]) if label in busy else None,
        }
    n = len(alone)
    page99 = percentile(pooled(alone, "page"), 99) * 1000
    search99 = percentile(pooled(alone, "search"), 99) * 1000
    all99 = percentile(pooled(alone), 99) * 1000
    busy99 = percentile(pooled(busy), 99) * 1000
    # What the page statement alone costs: the list without its totalCount.
    pages = [v for r in alone.values() if r["group"] == "page" for v in r["sql_page"]]
    page_only99 = percentile(pages, 99) * 1000
    phase.check("kinds with API p50 <= SQL p50 + 1.5 ms", n - len(p50_missed), ">=", n)
    phase.check("kinds with API p99 <= 2 x SQL p99", n - len(p99_missed), ">=", n)
    phase.check("page p99 (API, every page kind)", page99, "<=", TARGET_PAGE_P99_MS, "ms")
    phase.check("search p99 (API, q kinds)", search99, "<=", TARGET_SEARCH_P99_MS, "ms")
    phase.check("p99 while the fold runs / p99 alone", busy99 / all99, "<=", TARGET_FOLDING_FACTOR)
    if p50_missed:
        phase.notes.append("API p50 over SQL p50 + 1.5 ms: " + "; ".join(p50_missed))
    if p99_missed:
        phase.notes.append("API p99 over 2 x SQL p99: " + "; ".join(p99_missed))
    phase.notes.append(
        f"page statement alone (no totalCount), p99 over every page kind: {page_only99:.1f} ms"
    )
    phase.summary = {
        "kinds": table,
        "pooled_p99_ms": {
            "page": round(page99, 2),
            "search": round(search99, 2),
            "all": round(all99, 2),
            "all_while_folding": round(busy99, 2),
            "page_statement_only": round(page_only99, 2),
        },
    }


async def run(ctx: Context) -> list[Phase]:
    phase = Phase("reads")
    inst = ctx.inst
    dsn = await inst.fresh_database("reads")
    account = await inst.account(dsn)
    seconds = await load_recipients(ctx, dsn, account.account)
    phase.notes.append(
        f"{ctx.sizes.recipients:,} recipients generated and indexed in {seconds:.0f} s"
    )
    fold_settings, fold_events = await engagement_topic(ctx, dsn, account.account)
    port = free_port()
    logs = ctx.folder("reads")
    server = await Process(
        "server",
        [PYTHON, "-m", "mailfold", "serve", "--port", str(port)],
        inst.env(fold_settings),
        logs / "server.log",
    ).start()
    conn = await db.connect(dsn)
    api = None
    fold = None
    try:
        await server.wait_http(f"http://127.0.0.1:{port}/readyz")
        api = await Connection.open("127.0.0.1", port)
        reader = Reader(conn, api, account)
        await measure(reader, 1, with_sql=True)  # warm: plans, caches, connections
        meter = ctx.meter()
        meter.watch_pid("server", server.pid)
        meter.start()
        alone = await measure(reader, ctx.sizes.read_samples, with_sql=True)
        phase.cpu["API and SQL alternating"] = meter.stop()
        fold = await Process(
            "fold",
            [PYTHON, "-m", "mailfold", "fold"],
            inst.env(fold_settings),
            logs / "fold.log",
        ).start()
        while await stored(conn, fold_settings.fold_group) == 0:
            await asyncio.sleep(0.05)
        meter = ctx.meter()
        meter.watch_pid("server", server.pid)
        meter.watch_pid("fold", fold.pid)
        meter.start()
        busy = await measure(reader, ctx.sizes.read_samples_folding, with_sql=False)
        phase.cpu["API while the fold runs"] = meter.stop()
        progress = await stored(conn, fold_settings.fold_group)
        if progress >= fold_events:
            phase.notes.append(
                "the fold finished its events before the read pass ended: part of that pass "
                "ran without folding"
            )
        else:
            phase.notes.append(
                f"the fold was still running at the end ({progress:,} of {fold_events:,} events)"
            )
    finally:
        if api is not None:
            api.close()
        await conn.close()
        if fold is not None:
            await fold.stop()
        await server.stop()
        await inst.drop_database(dsn)
    summarise(phase, alone, busy)
    phase.runs = [
        {"side": "alone", "samples": ctx.sizes.read_samples},
        {"side": "folding", "samples": ctx.sizes.read_samples_folding},
    ]
    return [phase]
