"""Fold: events/s of the fold consumer against the same SQL (`fold_rows`) run from a tight loop
without Kafka, and that bare SQL against a COPY of the same rows into the ledger; every run on
a fresh database with the production schema and indexes, fsync on. WAL per event from
pg_current_wal_lsn().

Runs alternate COPY, bare SQL, consumer, COPY, ... The batches are those a reader of the topic
gets (fold_batch_size records), so all three see the same batching.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from bench import corpus
from bench.context import Context, Phase
from bench.procs import PYTHON, Process
from bench.stats import median
from consumers.fold import fold_rows, next_offsets, prepare
from service import db, kafka
from service.events import encode
from service.ledger import COLUMNS, row_of
from service.settings import Settings

TARGET_VS_BARE = 0.80
TARGET_BARE_VS_COPY = 0.15
TARGET_RATE = 20_000
TARGET_WAL_BYTES = 1536
Batch = tuple[list[tuple[Any, ...]], dict[int, int]]  # ledger rows, next offsets


async def prefill(settings: Settings, ctx: Context, n: int) -> int:
    """The first `n` events of the send, as the normalizer would have produced them."""
    producer = kafka.Producer(settings)
    await producer.start()
    count = 0
    try:
        for body in ctx.bodies:
            events = corpus.events_of(body, "bench")[: n - count]
            await producer.send_many(
                [(settings.events_topic, e.key(), encode(e), []) for e in events]
            )
            count += len(events)
            if count >= n:
                break
    finally:
        await producer.stop()
    return count


async def read_batches(settings: Settings, total: int) -> list[Batch]:
    """The topic read back in the consumer's batch size, decoded into ledger rows."""
    reader = kafka.Reader(settings, settings.events_topic, max_records=settings.fold_batch_size)
    await reader.start()
    batches: list[Batch] = []
    seen = 0
    try:
        while seen < total:
            records = await reader.batch(1000)
            if records:
                rows = [row_of(r.value) for r in records]
                batches.append((rows, next_offsets(records)))
                seen += len(records)
    finally:
        await reader.stop()
    return batches


async def stored(conn: asyncpg.Connection[Any], group: str) -> int:
    """Events the fold consumer group has committed (its stored offsets, summed)."""
    sql = "SELECT coalesce(sum(next_offset), 0)::bigint FROM consumer_offsets WHERE group_id = $1"
    return int(await conn.fetchval(sql, group))


async def wal_lsn(conn: asyncpg.Connection[Any]) -> str:
    return str(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))


async def wal_bytes(conn: asyncpg.Connection[Any], since: str) -> int:
    return int(
        await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", since)
    )


def rate(batches: list[Batch], seconds: list[float]) -> float:
    """Events/s over all batches but the first (which warms caches, as the consumer's does)."""
    events = sum(len(rows) for rows, _ in batches[1:])
    spent = sum(seconds[1:])
    return events / spent if spent else float("nan")


async def bare(
    ctx: Context, settings: Settings, batches: list[Batch], *, reports: bool = True
) -> dict[str, Any]:
    """fold_rows over every batch from one connection, nothing else; `reports=False` leaves the
    report rollups out (the session setting the fold's statements and trigger honour)."""
    dsn = await ctx.inst.fresh_database("fold-bare")
    conn = await db.connect(dsn)
    try:
        await prepare(conn)
        if not reports:
            await conn.execute("SET mailfold.reports = 'off'")
        start = await wal_lsn(conn)
        meter = ctx.meter()
        meter.start()
        seconds = []
        for rows, offsets in batches:
            began = time.perf_counter()
            await fold_rows(conn, rows, settings.fold_group, settings.events_topic, offsets)
            seconds.append(time.perf_counter() - began)
        cpu = meter.stop()
        wal = await wal_bytes(conn, start)
    finally:
        await conn.close()
        await ctx.inst.drop_database(dsn)
    n = sum(len(rows) for rows, _ in batches)
    return {"events_per_s": rate(batches, seconds), "wal_per_event": wal / n, "cpu_s": cpu}


async def copy(ctx: Context, batches: list[Batch]) -> dict[str, Any]:
    """COPY of the same rows into the ledger, one transaction per batch (duplicates left out)."""
    dsn = await ctx.inst.fresh_database("fold-copy")
    conn = await db.connect(dsn)
    seen: set[Any] = set()
    unique: list[list[tuple[Any, ...]]] = []
    for rows, _ in batches:
        fresh = []
        for row in rows:
            if row[0] not in seen:
                seen.add(row[0])
                fresh.append(row)
        unique.append(fresh)
    try:
        start = await wal_lsn(conn)
        meter = ctx.meter()
        meter.start()
        seconds = []
        for rows in unique:
            began = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table("events", records=rows, columns=COLUMNS)
            seconds.append(time.perf_counter() - began)
        cpu = meter.stop()
        wal = await wal_bytes(conn, start)
    finally:
        await conn.close()
        await ctx.inst.drop_database(dsn)
    n = sum(len(rows) for rows, _ in batches)
    return {"events_per_s": rate(batches, seconds), "wal_per_event": wal / n, "cpu_s": cpu}


async def consumer(ctx: Context, settings: Settings, total: int, k: int) -> dict[str, Any]:
    """The fold consumer process over the prefilled topic, from the first stored offsets on."""
    dsn = await ctx.inst.fresh_database("fold-consumer")
    env = ctx.inst.env(settings)
    env["MAILFOLD_DATABASE_URL"] = dsn
    env["MAILFOLD_FOLD_GROUP"] = f"{settings.fold_group}-{k}"
    log = ctx.folder("fold") / f"consumer{k}.log"
    proc = await Process("fold", [PYTHON, "-m", "mailfold", "fold"], env, log).start()
    conn = await db.connect(dsn)
    try:
        start = await wal_lsn(conn)
        meter = ctx.meter()
        meter.watch_pid("fold", proc.pid)
        first: tuple[float, int] | None = None
        while True:
            done = await stored(conn, env["MAILFOLD_FOLD_GROUP"])
            now = time.monotonic()
            if first is None and done > 0:
                first = (now, done)
                meter.start()
            if done >= total and first is not None:
                break
            if not proc.alive():
                raise RuntimeError(f"fold consumer exited; see {log}")
            await asyncio.sleep(0.02)
        cpu = meter.stop()
        wal = await wal_bytes(conn, start)
    finally:
        await conn.close()
        await proc.stop()
        await ctx.inst.drop_database(dsn)
    speed = (total - first[1]) / (now - first[0]) if now > first[0] else float("nan")
    return {"events_per_s": speed, "wal_per_event": wal / total, "cpu_s": cpu}


async def run(ctx: Context) -> list[Phase]:
    phase = Phase("fold")
    settings = await ctx.inst.settings("fold", ctx.inst.dsn("bench_template"))
    total = await prefill(settings, ctx, ctx.sizes.fold_events)
    batches = await read_batches(settings, total)
    runs: dict[str, list[dict[str, Any]]] = {"copy": [], "bare": [], "consumer": []}
    for k in range(ctx.sizes.pairs):
        for side in runs:
            if side == "copy":
                result = await copy(ctx, batches)
            elif side == "bare":
                result = await bare(ctx, settings, batches)
            else:
                result = await consumer(ctx, settings, total, k)
            result = {"side": side, "pair": k, **result}
            runs[side].append(result)
            phase.runs.append(result)
    speed = {side: [r["events_per_s"] for r in rs] for side, rs in runs.items()}
    what = f"{total:,} events in batches of {settings.fold_batch_size}"
    r1 = phase.compare(what, "events/s", speed["bare"], speed["consumer"], "same SQL, no Kafka")
    r2 = phase.compare(what, "events/s", speed["copy"], speed["bare"], "COPY into the ledger")
    wal = median([r["wal_per_event"] for r in runs["consumer"]])
    phase.check("consumer events/s vs bare SQL", r1, ">=", TARGET_VS_BARE)
    phase.check("bare SQL events/s vs COPY", r2, ">=", TARGET_BARE_VS_COPY)
    phase.check("consumer events/s", median(speed["consumer"]), ">=", TARGET_RATE, "events/s")
    phase.check("WAL per event (consumer)", wal, "<=", TARGET_WAL_BYTES, "bytes")
    phase.summary = {
        "wal_per_event": {s: [round(r["wal_per_event"]) for r in rs] for s, rs in runs.items()},
        "events": total,
    }
    phase.cpu = {f"{side} run": rs[len(rs) // 2]["cpu_s"] for side, rs in runs.items()}
    return [phase]
