"""Reports: the report builder over a month of 10 million events in 1,000 deliveries (generated
in SQL, bench/reports.sql), through the read API, against the same report computed straight from
the ledger (queries/reports.sql, the SQL baseline); and what keeping the rollups costs the fold:
the fold's SQL over the fold phase's batches with the rollups on and off, alternating.

The rollups of the generated month are filled from the ledger recomputation, which a property
test (tests/test_reports.py) holds equal to what the fold keeps; the ledger's secondary indexes
are left out of the load, which no statement measured here reads.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import asyncpg
from starlette.datastructures import QueryParams

from bench.context import Context, Phase
from bench.http import Connection, basic, request
from bench.instance import Account
from bench.phases import fold
from bench.phases.ingest import free_port
from bench.procs import PYTHON, ROOT, Process
from bench.stats import latency_ms, median, percentile
from service import db
from service.read import reports

GENERATOR = ROOT / "bench" / "reports.sql"
MONTH = ("2026-11-01", "2026-11-30")
TARGET_MONTH_P99_MS = 50.0
TARGET_ROLLUP_COST = 0.90  # fold events/s with rollups / without
LABELS = {
    "a month by date,post": "date,post,sum_sended,sum_delivered,sum_opened_unique,"
    "sum_clicked_unique,open_rate_unique,click_rate_unique,ctor",
    "a month by message (100 of 1,000)": "message,sum_delivered,sum_opened,open_rate,bounce_rate",
    "a month by week,ab_version": "week,ab_version,sum_opened_unique_human,open_rate_unique_human",
    "a month by date,client": "date,client,sum_opened,sum_clicked_human",
    "a month by hour, New York": "hour,sum_clicked,click_rate",
}
ZONES = {"a month by hour, New York": "America/New_York"}


async def load(ctx: Context, dsn: str, account: str) -> tuple[int, float]:
    """Generate the month and its rollups; returns (events, seconds)."""
    began = time.monotonic()
    conn = await db.connect(dsn)
    try:
        await conn.execute(f"ALTER DATABASE \"{dsn.rsplit('/', 1)[1]}\" SET work_mem = '256MB'")
        names = await conn.fetch(
            "SELECT DISTINCT indexname FROM pg_indexes WHERE tablename = 'events' "
            "AND indexname <> 'events_pkey'"
        )
        for row in names:
            await conn.execute(f'DROP INDEX IF EXISTS "{row["indexname"]}"')
        await conn.execute("SELECT setseed(0.42)")
        await conn.execute(
            GENERATOR.read_text(),
            account,
            ctx.sizes.report_deliveries,
            ctx.sizes.report_recipients,
            datetime.fromisoformat(f"{MONTH[0]}T00:00:00+00:00"),
        )
        await reports.rebuild(conn, account)
        await conn.execute("VACUUM ANALYZE events, report_hours, report_audience")
        events = int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()
    return events, time.monotonic() - began


def path(fields: str, zone: str = "UTC") -> str:
    query = [("fields", fields), ("timeZone", zone)]
    query += [("date", f"ge:{MONTH[0]}"), ("date", f"le:{MONTH[1]}")]
    return f"/v1/reports?{urlencode(query)}"


async def via_api(api: Connection, account: Account, target: str) -> float:
    data = request("GET", target, "127.0.0.1", headers=basic(account.login, account.secret))
    began = time.perf_counter()
    status, body = await api.exchange(data)
    spent = time.perf_counter() - began
    if status != 200:
        raise RuntimeError(f"report builder answered {status}: {body[:200]!r}")
    return spent


async def via_ledger(conn: asyncpg.Connection[Any], account: str, target: str) -> float:
    """The same report straight from the ledger, as a statement."""
    report = reports.parse(QueryParams(target.split("?", 1)[1]))
    began = time.perf_counter()
    await reports.run(conn, account, report, ledger=True)
    return time.perf_counter() - began


async def reads(ctx: Context, phase: Phase) -> None:
    inst = ctx.inst
    dsn = await inst.fresh_database("reports")
    account = await inst.account(dsn)
    events, seconds = await load(ctx, dsn, account.account)
    phase.notes.append(f"{events:,} events generated, rolled up and analyzed in {seconds:.0f} s")
    settings = await inst.settings("reports", dsn)
    port = free_port()
    server = await Process(
        "server",
        [PYTHON, "-m", "mailfold", "serve", "--port", str(port)],
        inst.env(settings),
        ctx.folder("reports") / "server.log",
    ).start()
    conn = await db.connect(dsn)
    api = None
    table: dict[str, Any] = {}
    try:
        await server.wait_http(f"http://127.0.0.1:{port}/readyz")
        api = await Connection.open("127.0.0.1", port)
        targets = {label: path(fields, ZONES.get(label, "UTC")) for label, fields in LABELS.items()}
        for target in targets.values():  # warm: plans, caches, the pool
            await via_api(api, account, target)
        for label, target in targets.items():
            samples = [await via_api(api, account, target) for _ in range(ctx.sizes.report_samples)]
            table[label] = {"api": latency_ms(samples)}
        month = targets["a month by date,post"]
        ledger = [
            await via_ledger(conn, account.account, month)
            for _ in range(ctx.sizes.report_baseline_samples)
        ]
        table["a month by date,post"]["ledger_sql"] = latency_ms(ledger)
    finally:
        if api is not None:
            api.close()
        await conn.close()
        await server.stop()
        await inst.drop_database(dsn)
    p99 = table["a month by date,post"]["api"]["p99"]
    phase.check("a month by date,post, API p99", p99, "<=", TARGET_MONTH_P99_MS, "ms")
    base = table["a month by date,post"]["ledger_sql"]["p50"]
    api50 = table["a month by date,post"]["api"]["p50"]
    phase.notes.append(
        f"the same month straight from the ledger (SQL baseline): p50 {base:,.0f} ms over "
        f"{len(ledger)} runs, against the API's p50 {api50} ms"
    )
    phase.summary["reports"] = table
    phase.summary["events"] = events


async def rollup_cost(ctx: Context, phase: Phase) -> None:
    """The fold's SQL over the same batches, rollups on and off, alternating."""
    settings = await ctx.inst.settings("reports-fold", ctx.inst.dsn("bench_template"))
    total = await fold.prefill(settings, ctx, ctx.sizes.fold_events)
    batches = await fold.read_batches(settings, total)
    runs: dict[str, list[float]] = {"without": [], "with": []}
    # The first fold on a fresh instance runs at a third of the speed of the next ones (caches,
    # the template's first copies): one run of each side is thrown away first, and with a
    # difference of a few percent to tell, there are five pairs rather than three.
    await fold.bare(ctx, settings, batches)
    await fold.bare(ctx, settings, batches, reports=False)
    for k in range(max(ctx.sizes.pairs, 5) if not ctx.smoke else 1):
        for side in runs:
            if side == "without":
                # no rollups, and no client or country read for them
                with mock.patch("consumers.fold.audience", lambda *_: (None, None)):
                    result = await fold.bare(ctx, settings, batches, reports=False)
            else:
                result = await fold.bare(ctx, settings, batches)
            runs[side].append(result["events_per_s"])
            phase.runs.append({"side": f"fold {side} rollups", "pair": k, **result})
    what = f"{total:,} events in batches of {settings.fold_batch_size}"
    cost = phase.compare(
        what, "events/s", runs["without"], runs["with"], "the fold without rollups"
    )
    phase.check("fold events/s with rollups / without", cost, ">=", TARGET_ROLLUP_COST)
    phase.summary["fold_events_per_s"] = {side: round(median(v)) for side, v in runs.items()} | {
        "p50_ratio": round(percentile([cost], 50), 3)
    }


async def run(ctx: Context) -> list[Phase]:
    phase = Phase("reports")
    await rollup_cost(ctx, phase)
    await reads(ctx, phase)
    return [phase]


async def run_rollups(ctx: Context) -> list[Phase]:
    """The rollups' cost to the fold alone (`--phases rollups`), without the month of reads."""
    phase = Phase("reports")
    await rollup_cost(ctx, phase)
    return [phase]
