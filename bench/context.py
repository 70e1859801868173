"""What every phase shares: the instance, the sizes of this run, the generated bodies, the CPU
meter, and the two ways to drive HTTP load (closed loop for throughput, open loop for latency).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import generator
from bench.corpus import read_blobs, write_blobs
from bench.instance import Instance
from bench.procs import PYTHON, Meter, postgres_seconds, run_child
from bench.stats import Check, latency_ms, median, ratio


@dataclass(frozen=True)
class Sizes:
    """How big and how long each phase is; `SMOKE` runs every phase in seconds."""

    pairs: int = 3
    mix: generator.Mix = field(default_factory=generator.Mix)
    http_seconds: int = 8  # each closed-loop throughput run
    latency_seconds: float = 10.0  # each open-loop latency run
    webhook_connections: int = 8
    single_connections: int = 32
    webhook_rate: float = 100.0
    single_rate: float = 2000.0
    normalize_bodies: int = 60
    fold_events: int = 120_000
    e2e_seconds: tuple[float, float, float] = (10.0, 20.0, 30.0)  # at target, confirm, freshness
    e2e_drain_s: float = 120.0
    recipients: int = 1_000_000
    read_samples: int = 20  # per query kind and side
    read_samples_folding: int = 10
    report_deliveries: int = 1000
    report_recipients: int = 3300  # per delivery: about 10 million events in all
    report_samples: int = 200  # per report kind, through the API
    report_baseline_samples: int = 3  # the same month straight from the ledger


FULL = Sizes()
SMOKE = Sizes(
    pairs=1,
    mix=generator.Mix(deliveries=4, recipients=4000),
    http_seconds=1,
    latency_seconds=1.0,
    webhook_rate=20.0,
    single_rate=200.0,
    normalize_bodies=3,
    fold_events=4000,
    e2e_seconds=(1.0, 1.0, 2.0),
    e2e_drain_s=30.0,
    recipients=20_000,
    read_samples=2,
    read_samples_folding=1,
    report_deliveries=20,
    report_recipients=200,
    report_samples=5,
    report_baseline_samples=1,
)


@dataclass
class Context:
    inst: Instance
    sizes: Sizes
    bodies_file: Path
    smoke: bool
    _bodies: list[bytes] | None = None

    @property
    def bodies(self) -> list[bytes]:
        if self._bodies is None:
            self._bodies = read_blobs(self.bodies_file)
        return self._bodies

    def meter(self) -> Meter:
        """A meter already watching the broker and the database."""
        meter = Meter()
        meter.watch_pid("kafka", self.inst.kafka_pid())
        postmaster = self.inst.postmaster_pid()
        meter.watch("postgres", lambda: postgres_seconds(postmaster))
        return meter

    def folder(self, name: str) -> Path:
        path = self.inst.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Phase:
    """A phase's outcome: its runs, summary figures, target checks and CPU per process."""

    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Rows of the throughput table: what, unit, baseline runs, system runs, ratio of medians.
    throughput: list[dict[str, Any]] = field(default_factory=list)
    # CPU seconds per process of a representative run, by the run's label.
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def check(self, measure: str, value: float, op: str, limit: float, unit: str = "") -> None:
        self.checks.append(Check(self.name, measure, value, op, limit, unit))

    def compare(
        self, what: str, unit: str, baseline: list[float], system: list[float], against: str
    ) -> float:
        """Record a system-vs-baseline row; returns the ratio of medians."""
        r = ratio(system, baseline)
        self.throughput.append(
            {
                "what": what,
                "against": against,
                "unit": unit,
                "baseline": [round(v, 1) for v in baseline],
                "system": [round(v, 1) for v in system],
                "baseline_median": round(median(baseline), 1),
                "system_median": round(median(system), 1),
                "ratio": round(r, 3),
            }
        )
        return r

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 1),
            "summary": self.summary,
            "checks": [c.as_dict() for c in self.checks],
            "throughput": self.throughput,
            "cpu": self.cpu,
            "notes": self.notes,
            "runs": self.runs,
        }


async def alternate(
    phase: Phase,
    pairs: int,
    baseline: Callable[[int], Awaitable[dict[str, Any]]],
    system: Callable[[int], Awaitable[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run baseline, system, baseline, system, ... `pairs` times; every run is kept."""
    base: list[dict[str, Any]] = []
    sys_: list[dict[str, Any]] = []
    for k in range(pairs):
        for side, fn, out in (("baseline", baseline, base), ("system", system, sys_)):
            result = await fn(k)
            result = {"side": side, "pair": k, **result}
            out.append(result)
            phase.runs.append(result)
    return base, sys_


async def open_loop(
    ctx: Context, port: int, requests: list[bytes], rate: float, duration: float, name: str
) -> dict[str, Any]:
    """Offer `rate` requests/s for `duration` s from a separate process; latencies from 2xx."""
    folder = ctx.folder(name)
    requests_file, spec, out = folder / "requests.bin", folder / "spec.json", folder / "out.json"
    write_blobs(requests_file, requests)
    spec.write_bytes(
        orjson.dumps(
            {
                "mode": "rate",
                "host": "127.0.0.1",
                "port": port,
                "requests_file": str(requests_file),
                "rate": rate,
                "duration": duration,
                "max_connections": 512,
            }
        )
    )
    await run_child([PYTHON, "-m", "bench.load", str(spec), str(out)])
    result = orjson.loads(out.read_bytes())
    latencies = result.pop("latencies_s")
    ok = sum(n for s, n in result["statuses"].items() if s.startswith("2"))
    return {**result, "ok": ok, "latency_ms": latency_ms(latencies)}


def stamp() -> float:
    return time.monotonic()
