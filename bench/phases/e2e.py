"""End to end: signed SendGrid batches at a fixed event rate through the service, the normalizer
and the fold (each its own process), with the lag and the freshness a marketer would see.

1. Offer the target rate; the lag (events answered 2xx minus events the fold has stored) must
   stay bounded: its growth over the run under 5 % of the offered rate.
2. If it does not, search for the highest rate the pipeline sustains: start at 90 % of the rate
   the fold kept up during step 1, go up after a rate that holds and down after one that does not.
3. Freshness at half the target rate (or half the sustained rate, when lower): each batch
   carries a probe recipient, and the read API is polled until the probe shows.
Between steps the pipeline drains, so every step starts with no lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import orjson

from bench.context import Context, Phase
from bench.corpus import EVENTS_PER_BODY
from bench.instance import Account
from bench.phases.fold import stored
from bench.phases.ingest import free_port
from bench.procs import PYTHON, Process, run_child
from bench.stats import latency_ms
from service import db, kafka
from service.settings import Settings

TARGET_RATE = 15_000
TARGET_P50_S = 0.5
TARGET_P99_S = 2.0
PROBE_CAMPAIGN = "bench-probe"
SEARCH_STEPS = 3
BOUNDED_GROWTH = 0.05  # lag may grow by at most this share of the offered rate


class Pipeline:
    """The three processes on one database and one set of topics, and the fold's progress."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.port = free_port()
        self.metrics_port = free_port()
        self.procs: list[Process] = []
        # (monotonic time, events normalized, events folded), every 100 ms
        self.samples: list[tuple[float, int, int]] = []
        self.next_body = 0
        self.settings: Settings
        self.account: Account
        self.conn: asyncpg.Connection[Any]
        self._sampling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        inst = self.ctx.inst
        dsn = await inst.fresh_database("e2e")
        self.settings = await inst.settings("e2e", dsn)
        self.account = await inst.account(dsn)
        env = inst.env(self.settings)
        logs = self.ctx.folder("e2e")
        cli = [PYTHON, "-m", "mailfold"]
        fold_env = {**env, "MAILFOLD_METRICS_PORT": str(self.metrics_port)}
        for role, argv, role_env in (
            ("server", [*cli, "serve", "--port", str(self.port)], env),
            ("normalize", [*cli, "normalizer"], env),
            ("fold", [*cli, "fold"], fold_env),
        ):
            self.procs.append(await Process(role, argv, role_env, logs / f"{role}.log").start())
        await self.procs[0].wait_http(f"http://127.0.0.1:{self.port}/readyz")
        self.conn = await db.connect(dsn)
        self.events = kafka.Reader(self.settings, self.settings.events_topic)
        self.partitions = await self.events.start()
        await self.sample_once()
        self._sampling = asyncio.create_task(self.sample())

    async def sample_once(self) -> None:
        normalized = sum((await self.events.ends(self.partitions)).values())
        folded = await stored(self.conn, self.settings.fold_group)
        self.samples.append((time.monotonic(), normalized, folded))

    async def sample(self) -> None:
        """The only user of the connection and the reader while the pipeline runs."""
        while True:
            await asyncio.sleep(0.1)
            await self.sample_once()

    def folded(self) -> int:
        return self.samples[-1][2]

    async def fold_batches(self) -> tuple[float, float, float]:
        """The fold's transactions so far: count, records and seconds (its /metrics)."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
        return (
            float(values.get("mailfold_fold_batch_records_count", 0)),
            float(values.get("mailfold_fold_batch_records_sum", 0)),
            float(values.get("mailfold_fold_batch_seconds_sum", 0)),
        )

    async def stop(self) -> None:
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampling
        await self.events.stop()
        for proc in reversed(self.procs):
            await proc.stop()
        await self.conn.close()
        await self.ctx.inst.drop_database(self.settings.database_url)

    def meter_start(self) -> Any:
        meter = self.ctx.meter()
        for proc in self.procs:
            meter.watch_pid(proc.role, proc.pid)
        meter.start()
        return meter

    async def drive(
        self, rate: float, duration: float, name: str, probe_wait: float
    ) -> dict[str, Any]:
        """Offer `rate` events/s for `duration` s from the load process; returns its record."""
        folder = self.ctx.folder("e2e")
        spec, out = folder / f"{name}.json", folder / f"{name}-out.json"
        spec.write_bytes(
            orjson.dumps(
                {
                    "mode": "drive",
                    "host": "127.0.0.1",
                    "port": self.port,
                    "bodies_file": str(self.ctx.bodies_file),
                    "first_body": self.next_body,
                    "events_per_body": EVENTS_PER_BODY,
                    "rate_events": rate,
                    "duration": duration,
                    "key_file": str(self.ctx.inst.key_file),
                    "account": self.account.account,
                    "login": self.account.login,
                    "secret": self.account.secret,
                    "campaign": PROBE_CAMPAIGN,
                    "probe_delivery": f"probe-{name}",
                    "poll_ms": 25,
                    "probe_wait_s": probe_wait,
                    "max_connections": 64,
                }
            )
        )
        await run_child([PYTHON, "-m", "bench.load", str(spec), str(out)])
        result: dict[str, Any] = orjson.loads(out.read_bytes())
        self.next_body += result["bodies_sent"]
        return result

    async def drain(self, acked: int, timeout: float) -> float:
        """Wait until the fold has stored every acknowledged event; returns seconds waited."""
        began = time.monotonic()
        while self.folded() < acked and time.monotonic() - began < timeout:
            if self._sampling is not None and self._sampling.done():
                self._sampling.result()  # raises what stopped the sampling
            await asyncio.sleep(0.1)
        return time.monotonic() - began


def lag_profile(
    records: list[list[Any]], samples: list[tuple[float, int, int]], rate: float
) -> dict[str, Any]:
    """Lag over the run (events answered 2xx but not yet folded): its growth and maximum, and
    the rates at which the normalizer and the fold made progress meanwhile."""
    acks = sorted((r[1], r[3]) for r in records if 200 <= r[2] < 300)
    if not acks:
        return {"bounded": False, "growth_per_s": float("nan"), "fold_rate": 0.0}
    start, end = records[0][0], acks[-1][0]
    _, norm0, fold0 = max((s for s in samples if s[0] <= start), default=samples[0])
    window = [(t, n - norm0, f - fold0) for t, n, f in samples if start + 2.0 <= t <= end]
    points, acked, i = [], 0, 0
    for t, _, folded in window:
        while i < len(acks) and acks[i][0] <= t:
            acked += acks[i][1]
            i += 1
        points.append((t, float(acked - folded)))
    growth = slope(points)
    return {
        "bounded": growth <= BOUNDED_GROWTH * rate,
        "growth_per_s": round(growth, 1),
        "max_lag": max((lag for _, lag in points), default=0.0),
        "ingest_rate": round(sum(n for _, n in acks) / (end - start), 1) if end > start else 0.0,
        "normalize_rate": round(slope([(t, float(n)) for t, n, _ in window]), 1),
        "fold_rate": round(slope([(t, float(f)) for t, _, f in window]), 1),
    }


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x; 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


async def step(
    pipe: Pipeline, phase: Phase, name: str, rate: float, duration: float, probe_wait: float = 0
) -> dict[str, Any]:
    """One offered rate: drive, measure the lag, drain; recorded as one run of the phase."""
    base = pipe.folded()
    batches_before = await pipe.fold_batches()
    meter = pipe.meter_start()
    result = await pipe.drive(rate, duration, name, probe_wait)
    cpu = meter.stop()
    count, records, seconds = (
        a - b for a, b in zip(await pipe.fold_batches(), batches_before, strict=True)
    )
    acked = sum(r[3] for r in result["records"] if 200 <= r[2] < 300)
    lag = lag_profile(result["records"], pipe.samples, rate)
    at_end = pipe.folded()
    drained = await pipe.drain(base + acked, pipe.ctx.sizes.e2e_drain_s)
    # With the load gone, the fold works through the backlog as fast as it can.
    drain_rate = (pipe.folded() - at_end) / drained if drained >= 2 else math.nan
    statuses: dict[str, int] = {}
    for r in result["records"]:
        statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    # A probe that never showed counts as infinitely late: a percentile it reaches is n/a.
    fresh = [
        max(0.0, seen - acked_at) if seen is not None else math.inf
        for _, acked_at, seen in result["probes"]
    ]
    run = {
        "side": name,
        "offered_events_per_s": round(result["offered_events_per_s"], 1),
        "seconds": round(result["duration_s"], 1),
        "acked_events": acked,
        "statuses": statuses,
        **lag,
        "drain_s": round(drained, 1),
        "drain_rate": round(drain_rate, 1),
        "fold_transactions": {
            "count": int(count),
            "mean_records": round(records / count, 1) if count else 0,
            "mean_ms": round(seconds / count * 1000, 1) if count else 0,
        },
        "bodies_reused": result["bodies_reused"],
        "freshness": {
            **{k: (v if math.isfinite(v) else math.nan) for k, v in latency_ms(fresh).items()},
            "unseen": sum(1 for *_, seen in result["probes"] if seen is None),
        },
        "cpu_s": cpu,
    }
    if drained >= pipe.ctx.sizes.e2e_drain_s:
        phase.notes.append(f"{name}: the lag had not drained {drained:.0f} s after the load")
    if result["bodies_reused"]:
        phase.notes.append(
            f"{name}: the corpus ran out; {result['bodies_reused']} bodies were sent a second "
            "time (their events fold as duplicates, which is cheaper)"
        )
    phase.runs.append(run)
    phase.cpu[f"{name} at {rate:,.0f} events/s"] = cpu
    return run


async def search(pipe: Pipeline, phase: Phase, first: dict[str, Any], seconds: float) -> float:
    """The highest rate found whose lag stays bounded in SEARCH_STEPS tries.

    The first try is a little under what the fold managed while overloaded or while draining
    (the larger); both understate it, since the normalizer and the service still took CPU then.
    After a rate that holds, the next try is higher (half as much again, or halfway to the
    lowest rate that did not hold); after one that does not, 90 % of what the fold managed.
    """
    drained = float(first["drain_rate"]) if math.isfinite(first["drain_rate"]) else 0.0
    rate: float = max(500.0, 0.9 * max(float(first["fold_rate"]), drained))
    best: float | None = None
    failed = float(TARGET_RATE)
    for attempt in range(1, SEARCH_STEPS + 1):
        held = await step(pipe, phase, f"sustain-{attempt}", rate, seconds)
        if held["bounded"]:
            best = rate
            rate = min(rate * 1.5, (rate + failed) / 2)
        else:
            failed = min(failed, rate)
            below = max(500.0, 0.9 * held["fold_rate"])
            rate = below if best is None else max(best, (best + failed) / 2)
        if best is not None and failed - best < 0.05 * best:
            break  # within 5 %: near enough
    if best is not None:
        return best
    phase.notes.append(
        f"lag still grew after {SEARCH_STEPS} tries; the sustained figure is the fold's rate "
        "during the last one"
    )
    return float(held["fold_rate"])


async def run(ctx: Context) -> list[Phase]:
    phase = Phase("e2e")
    at_target, confirm, fresh = ctx.sizes.e2e_seconds
    pipe = Pipeline(ctx)
    await pipe.start()
    try:
        first = await step(pipe, phase, "target", TARGET_RATE, at_target)
        sustained = float(TARGET_RATE)
        if not first["bounded"]:
            sustained = await search(pipe, phase, first, confirm)
        half = TARGET_RATE / 2
        fresh_rate = half if sustained >= half else sustained / 2
        if fresh_rate < half:
            phase.notes.append(
                f"freshness measured at {fresh_rate:,.0f} events/s, half the sustained rate: "
                f"the target's {half:,.0f} events/s is more than the pipeline sustains here"
            )
        last = await step(pipe, phase, "freshness", fresh_rate, fresh, probe_wait=30.0)
    finally:
        await pipe.stop()
    f = last["freshness"]
    phase.check("sustained events/s, lag bounded", sustained, ">=", TARGET_RATE, "events/s")
    phase.check(
        f"freshness p50 at {fresh_rate:,.0f} events/s", f["p50"] / 1000, "<=", TARGET_P50_S, "s"
    )
    phase.check(
        f"freshness p99 at {fresh_rate:,.0f} events/s", f["p99"] / 1000, "<=", TARGET_P99_S, "s"
    )
    phase.summary = {"sustained_events_per_s": round(sustained), "freshness_rate": fresh_rate}
    if f["unseen"]:
        phase.notes.append(f"{f['unseen']} probes never showed within the wait")
    return [phase]
