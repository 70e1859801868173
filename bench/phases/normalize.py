"""Normalize: events/s of the normalize consumer (one process) over raw SendGrid batches, against
a pass-through consumer/producer moving the same output records (bench.passthrough).

Both read the same prefilled raw topic with a fresh group and write a fresh topic; the rate is
taken from that topic's end offsets, between 5 % and 100 % of the expected events, so process
start and group join are not counted.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from datetime import UTC, datetime
from typing import Any

from bench.context import Context, Phase, alternate
from bench.procs import PYTHON, Process
from service import kafka
from service.adapters import derive
from service.events import encode
from service.raw import from_kafka, to_headers
from service.settings import Settings
from service.webhooks.base import RawRecord

TARGET_RATIO = 0.50
TARGET_RATE = 60_000


def raw_records(ctx: Context, account: str) -> list[tuple[bytes, kafka.Headers]]:
    """The bodies as ingest lands them on mailfold.raw, numbered for the pass-through."""
    out = []
    for seq, body in enumerate(ctx.bodies[: ctx.sizes.normalize_bodies]):
        record = RawRecord(
            account=account,
            source="sendgrid",
            body=body,
            content_type="application/json",
            received_at=datetime.now(UTC),
            request_id=f"bench-{seq}",
        )
        headers = [*to_headers(record, "127.0.0.1"), ("bench-seq", str(seq).encode())]
        out.append((body, headers))
    return out


def outputs(records: list[tuple[bytes, kafka.Headers]]) -> list[list[tuple[bytes, bytes]]]:
    """What the normalizer produces per raw record, by the same code path it takes."""
    table = []
    for body, headers in records:
        events = derive(from_kafka(body, dict(headers)))
        table.append([(e.key(), encode(e)) for e in events])
    return table


async def prefill(settings: Settings, records: list[tuple[bytes, kafka.Headers]]) -> None:
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        for i in range(0, len(records), 20):
            chunk = records[i : i + 20]
            await producer.send_many([(settings.raw_topic, None, b, h) for b, h in chunk])
    finally:
        await producer.stop()


async def watch(settings: Settings, expected: int, proc: Process, timeout: float) -> float:
    """Events/s written to the run's output topic, from 5 % of `expected` to all of it."""
    reader = kafka.Reader(settings, settings.events_topic)
    partitions = await reader.start()
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout
    try:
        while True:
            total = sum((await reader.ends(partitions)).values())
            now = time.monotonic()
            if first is None and total >= expected * 0.05:
                first = (now, total)
            if total >= expected and first is not None:
                return (total - first[1]) / (now - first[0]) if now > first[0] else float("nan")
            if now > deadline or not proc.alive():
                raise RuntimeError(f"{proc.role}: {total} of {expected} events; see {proc.log}")
            await asyncio.sleep(0.05)
    finally:
        await reader.stop()


async def one_run(
    ctx: Context, base: Settings, side: str, k: int, expected: int, table_file: str
) -> dict[str, Any]:
    settings = await ctx.inst.settings(
        f"norm-{side}{k}", base.database_url, raw_topic=base.raw_topic
    )
    if side == "system":
        argv = [PYTHON, "-m", "mailfold", "normalizer"]
    else:
        argv = [PYTHON, "-m", "bench.passthrough", table_file]
    log = ctx.folder("normalize") / f"{side}{k}.log"
    proc = await Process("normalize", argv, ctx.inst.env(settings), log).start()
    meter = ctx.meter()
    meter.watch_pid("normalize", proc.pid)
    meter.start()
    try:
        rate = await watch(settings, expected, proc, timeout=600)
        cpu = meter.stop()
    finally:
        await proc.stop()
    return {"events_per_s": rate, "events": expected, "cpu_s": cpu}


async def run(ctx: Context) -> list[Phase]:
    phase = Phase("normalize")
    base = await ctx.inst.settings("norm", ctx.inst.dsn("bench_template"))
    records = raw_records(ctx, "bench")
    table = outputs(records)
    expected = sum(map(len, table))
    table_file = ctx.folder("normalize") / "outputs.pickle"
    table_file.write_bytes(pickle.dumps(table))
    await prefill(base, records)
    b, s = await alternate(
        phase,
        ctx.sizes.pairs,
        lambda k: one_run(ctx, base, "baseline", k, expected, str(table_file)),
        lambda k: one_run(ctx, base, "system", k, expected, str(table_file)),
    )
    what = f"{len(records)} raw batches, {expected:,} events"
    r = phase.compare(
        what,
        "events/s",
        [x["events_per_s"] for x in b],
        [x["events_per_s"] for x in s],
        "pass-through consumer/producer",
    )
    phase.check("events/s vs pass-through", r, ">=", TARGET_RATIO)
    phase.check("events/s, one process", phase.throughput[0]["system_median"], ">=", TARGET_RATE)
    phase.cpu = {"baseline run": b[len(b) // 2]["cpu_s"], "system run": s[len(s) // 2]["cpu_s"]}
    return [phase]
