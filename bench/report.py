"""The result of a run: bench/results/latest.json and the markdown tables (latest.md)."""

from __future__ import annotations

import math
from typing import Any

TITLES = {
    "ingest_webhooks": "Ingest, batched webhooks",
    "ingest_single": "Ingest, single events",
    "normalize": "Normalize",
    "fold": "Fold",
    "e2e": "End to end",
    "reads": "Reads",
}
ROLES = ("server", "load", "normalize", "fold", "kafka", "postgres", "bench")


def number(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def targets(result: dict[str, Any]) -> list[str]:
    lines = ["| Phase | Measure | Target | Result | |", "|---|---|---|---|---|"]
    for phase in result["phases"]:
        for c in phase["checks"]:
            unit = f" {c['unit']}" if c["unit"] else ""
            op = "≥" if c["op"] == ">=" else "≤"
            lines.append(
                f"| {TITLES.get(phase['name'], phase['name'])} | {c['measure']} "
                f"| {op} {number(c['limit'])}{unit} | {number(c['value'])}{unit} "
                f"| {'met' if c['met'] else '**missed**'} |"
            )
    return lines


def throughput(result: dict[str, Any]) -> list[str]:
    lines = [
        "| Phase | What | Against | Unit | Baseline runs | System runs | Ratio of medians |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase in result["phases"]:
        for row in phase["throughput"]:
            lines.append(
                f"| {TITLES.get(phase['name'], phase['name'])} | {row['what']} | {row['against']} "
                f"| {row['unit']} | {', '.join(number(v) for v in row['baseline'])} "
                f"| {', '.join(number(v) for v in row['system'])} | {number(row['ratio'])} |"
            )
    return lines


def cpu(result: dict[str, Any]) -> list[str]:
    head = "| Phase | Run | " + " | ".join(ROLES) + " | wall s |"
    lines = [head, "|---|---|" + "---|" * (len(ROLES) + 1)]
    for phase in result["phases"]:
        for label, spent in phase["cpu"].items():
            cells = [number(float(spent[r])) if r in spent else "" for r in ROLES]
            lines.append(
                f"| {TITLES.get(phase['name'], phase['name'])} | {label} | "
                + " | ".join(cells)
                + f" | {number(float(spent.get('wall', math.nan)))} |"
            )
    return lines


def reads(result: dict[str, Any]) -> list[str]:
    """Per list kind: API and SQL latency, where SQL spends it, and the API while folding."""
    lines = [
        "| List | API p50 / p99 ms | SQL p50 / p99 ms | SQL page p50 ms | SQL count p50 ms "
        "| API p50 / p99 ms while folding |",
        "|---|---|---|---|---|---|",
    ]
    for phase in result["phases"]:
        for label, k in phase["summary"].get("kinds", {}).items():
            busy = k["api_folding"] or {"p50": math.nan, "p99": math.nan}
            lines.append(
                f"| {label} | {number(k['api']['p50'])} / {number(k['api']['p99'])} "
                f"| {number(k['sql']['p50'])} / {number(k['sql']['p99'])} "
                f"| {number(k['sql_page_p50_ms'])} | {number(k['sql_count_p50_ms'])} "
                f"| {number(busy['p50'])} / {number(busy['p99'])} |"
            )
    return lines if len(lines) > 2 else []


def machine(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    load = result["load_average"]
    return [
        f"- {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB memory, "
        f"Linux {m['kernel']}",
        f"- Python {m['python']}, Apache Kafka {m['kafka']} ({m['java']}), "
        f"PostgreSQL {m['postgresql']} (fsync on), load generator: {m['wrk'] or 'bench.load'}",
        f"- {libs}",
        f"- load average (1/5/15 min) before: {' / '.join(number(x) for x in load['before'])}, "
        f"after: {' / '.join(number(x) for x in load['after'])}; busiest other processes at "
        f"start: {', '.join(result['other_processes']) or 'none'}",
    ]


def markdown(result: dict[str, Any]) -> str:
    notes = [
        f"- {TITLES.get(p['name'], p['name'])}: {n}" for p in result["phases"] for n in p["notes"]
    ]
    parts = [
        f"Run {result['started_at']} ({result['mode']}, {result['pairs']} pairs per comparison), "
        f"{number(result['seconds'])} s in total: `{result['command']}`",
        "",
        *machine(result),
        "",
        "#### Targets",
        "",
        *targets(result),
        "",
        "#### Throughput, baseline vs system (runs alternate on the same machine)",
        "",
        *throughput(result),
        "",
        "#### CPU seconds per process",
        "",
        *cpu(result),
    ]
    listing = reads(result)
    if listing:
        parts += [
            "",
            "#### Reads, per list kind (one delivery of the generated size)",
            "",
            *listing,
        ]
    if notes:
        parts += ["", "#### Notes", "", *notes]
    return "\n".join(parts) + "\n"
