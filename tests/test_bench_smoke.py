"""The benchmark harness (scripts/bench): its generator's mix, and a smoke run of every phase.

The smoke run starts a broker and a database of its own and takes about a minute, so it runs
only with MAILFOLD_BENCH_SMOKE=1. It checks that every phase ran and reported its targets; it
never asserts a timing target (smoke sizes say nothing about speed).
"""

from __future__ import annotations

import collections
import itertools
import os
import subprocess
from pathlib import Path

import orjson
import pytest

from bench import generator
from bench.stats import Check, percentile

ROOT = Path(__file__).resolve().parent.parent
SMALL = generator.Mix(deliveries=2, recipients=3000)


def test_generator_is_deterministic_for_a_seed() -> None:
    assert generator.send_events(3, SMALL) == generator.send_events(3, SMALL)
    assert generator.send_events(3, SMALL) != generator.send_events(4, SMALL)


def test_generator_mix_looks_like_a_send() -> None:
    events = generator.send_events(11, SMALL)
    recipients = SMALL.deliveries * SMALL.recipients
    kinds = collections.Counter(e["event"] for e in events)
    openers = {e["email"] for e in events if e["event"] == "open"}
    clickers = {e["email"] for e in events if e["event"] == "click"}
    assert 0.20 <= len(openers) / recipients <= 0.40
    assert 0.01 <= len(clickers) / recipients <= 0.06
    assert 0.01 <= kinds["bounce"] / recipients <= 0.02
    assert kinds["spamreport"] < kinds["bounce"]
    copies = len(events) - len({orjson.dumps(e) for e in events})
    assert 0.005 <= copies / len(events) <= 0.02
    times = [e["timestamp"] for e in events]
    assert any(later < earlier for earlier, later in itertools.pairwise(times))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert Check("p", "m", 0.5, ">=", 0.4).met
    assert not Check("p", "m", 60.0, "<=", 50.0).met


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    os.environ.get("MAILFOLD_BENCH_SMOKE") != "1",
    reason="starts its own Kafka and PostgreSQL (about a minute); MAILFOLD_BENCH_SMOKE=1 runs it",
)
def test_smoke_run_reports_every_phase(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = orjson.loads((tmp_path / "smoke.json").read_bytes())
    names = [p["name"] for p in result["phases"]]
    assert names == ["ingest_webhooks", "ingest_single", "normalize", "fold", "e2e", "reads"]
    assert all(p["checks"] for p in result["phases"])
    assert "| Phase | Measure | Target | Result |" in (tmp_path / "smoke.md").read_text()
