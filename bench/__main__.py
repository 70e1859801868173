"""Mailfold's benchmark harness (issue #7): `scripts/bench [--smoke] [--phases ingest,fold]`.

Every phase runs next to a baseline doing the same I/O without Mailfold's logic, alternating on
the same machine; the result goes to bench/results/latest.json and latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import corpus, machine, report
from bench.context import FULL, SMOKE, Context, Phase
from bench.instance import Instance
from bench.phases import e2e, fold, ingest, normalize, reads, reports
from bench.procs import ROOT

PHASES: dict[str, Callable[[Context], Awaitable[list[Phase]]]] = {
    "ingest": ingest.run,
    "normalize": normalize.run,
    "fold": fold.run,
    "e2e": e2e.run,
    "reads": reads.run,
    "reports": reports.run,
    "rollups": reports.run_rollups,
}
SEED = 20250601
RESULTS = ROOT / "bench" / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="every phase at tiny sizes, in seconds")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}")
    p.add_argument(
        "--out",
        type=Path,
        help="where results go (default: bench/results; .mailfold/bench/results with --smoke)",
    )
    p.add_argument("--keep", action="store_true", help="keep the run's databases and files")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [n.strip() for n in args.phases.split(",") if n.strip()]
    unknown = [n for n in names if n not in PHASES]
    if unknown:
        raise SystemExit(f"unknown phase(s): {', '.join(unknown)} (one of {', '.join(PHASES)})")
    sizes = SMOKE if args.smoke else FULL
    started, clock = datetime.now(UTC), time.monotonic()
    load_before = os.getloadavg()
    others = machine.busy_processes({os.getpid()})
    inst = Instance.from_env(started.strftime("%m%d%H%M%S"))
    await inst.prepare_template()
    bodies = corpus.bodies(inst.state / "corpus", SEED, sizes.mix)
    ctx = Context(inst, sizes, bodies, args.smoke)
    phases: list[Phase] = []
    try:
        for name in names:
            began = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            done = await PHASES[name](ctx)
            for phase in done:
                phase.seconds = (time.monotonic() - began) / len(done)
            phases += done
            print(f"bench: {name} done in {time.monotonic() - began:.0f} s", file=sys.stderr)
    finally:
        if not args.keep:
            await inst.drop_all()
            shutil.rmtree(inst.scratch, ignore_errors=True)
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "command": shlex.join(["scripts/bench", *sys.argv[1:]]),
        "seconds": round(time.monotonic() - clock, 1),
        "seed": SEED,
        "pairs": sizes.pairs,
        "machine": machine.facts(inst.kafka_version(), await inst.postgres_version()),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "other_processes": others,
        "phases": [p.as_dict() for p in phases],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # The broker's transient "not leader" warnings right after a topic is created are noise here.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    result = asyncio.run(run(args))
    # A smoke run's figures mean nothing: they stay out of the tree.
    out: Path = args.out or (ROOT / ".mailfold" / "bench" / "results" if args.smoke else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    stem = "smoke" if args.smoke else "latest"
    text = report.markdown(result)
    (out / f"{stem}.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    (out / f"{stem}.md").write_text(text)
    print(text)
    missed = sum(1 for p in result["phases"] for c in p["checks"] if not c["met"])
    print(f"bench: {missed} target(s) missed; results in {out}/{stem}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
