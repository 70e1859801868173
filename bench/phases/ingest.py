"""Ingest: signed SendGrid batches and single Event API posts, each against a bare Starlette
route doing the same HTTP I/O (bench.baseline), on the same machine, alternating.

Throughput is closed loop (wrk); latency is open loop at the issue's fixed rates.
"""

from __future__ import annotations

import socket
from typing import Any

import orjson

from bench import generator, sendgrid, wrk
from bench.context import Context, Phase, alternate, open_loop
from bench.http import basic, request
from bench.instance import Account
from bench.procs import PYTHON, Process
from bench.stats import median

WEBHOOK_TARGET_RATIO = 0.40
SINGLE_TARGET_RATIO = 0.30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Servers:
    """The real service (`mailfold serve`) and the baseline app, each in its own process."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.system_port = free_port()
        self.baseline_port = free_port()
        self.procs: dict[str, Process] = {}
        self.account: Account

    async def start(self) -> None:
        inst = self.ctx.inst
        database = await inst.fresh_database("ingest")
        settings = await inst.settings("ingest", database)
        self.account = await inst.account(database)
        logs = self.ctx.folder("ingest")
        mailfold = [PYTHON, "-m", "mailfold", "serve", "--port", str(self.system_port)]
        baseline = [PYTHON, "-m", "bench.baseline", "--port", str(self.baseline_port)]
        self.procs["system"] = await Process(
            "server", mailfold, inst.env(settings), logs / "system.log"
        ).start()
        self.procs["baseline"] = await Process(
            "server", baseline, inst.env(settings), logs / "baseline.log"
        ).start()
        await self.procs["system"].wait_http(f"http://127.0.0.1:{self.system_port}/readyz")
        await self.procs["baseline"].wait_http(f"http://127.0.0.1:{self.baseline_port}/healthz")

    def port(self, side: str) -> int:
        return self.system_port if side == "system" else self.baseline_port

    async def stop(self) -> None:
        for proc in self.procs.values():
            await proc.stop()


async def closed_run(
    ctx: Context,
    servers: Servers,
    side: str,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    connections: int,
) -> dict[str, Any]:
    meter = ctx.meter()
    meter.watch_pid("server", servers.procs[side].pid)
    meter.start()
    result = await wrk.throughput(
        ctx.folder("wrk"),
        servers.port(side),
        path,
        bodies,
        headers,
        connections,
        ctx.sizes.http_seconds,
    )
    return {**result, "cpu_s": meter.stop()}


async def latency_run(
    ctx: Context, servers: Servers, side: str, requests: list[bytes], rate: float, name: str
) -> dict[str, Any]:
    meter = ctx.meter()
    meter.watch_pid("server", servers.procs[side].pid)
    meter.start()
    result = await open_loop(
        ctx, servers.port(side), requests, rate, ctx.sizes.latency_seconds, name
    )
    return {"side": side, "kind": "open_loop", **result, "cpu_s": meter.stop()}


async def webhooks(ctx: Context, servers: Servers) -> Phase:
    phase = Phase("ingest_webhooks")
    path = f"/webhooks/sendgrid/{servers.account.account}"
    body = ctx.bodies[0]
    key = ctx.inst.signing_key

    async def side(name: str) -> dict[str, Any]:
        # Signed afresh per run: the signature's timestamp must be inside the replay window.
        c = ctx.sizes.webhook_connections
        return await closed_run(ctx, servers, name, path, [body], signed_for(key, body), c)

    base, system = await alternate(
        phase, ctx.sizes.pairs, lambda k: side("baseline"), lambda k: side("system")
    )
    bodies = ctx.bodies[:10]
    rate = ctx.sizes.webhook_rate
    runs = []
    for name in ("baseline", "system"):
        requests = [request("POST", path, "127.0.0.1", b, signed_for(key, b)) for b in bodies]
        runs.append(await latency_run(ctx, servers, name, requests, rate, f"webhooks-{name}"))
    phase.runs += runs
    r = summarise(phase, base, system, runs[1], len(body))
    lat = runs[1]["latency_ms"]
    phase.check("requests/s vs baseline", r, ">=", WEBHOOK_TARGET_RATIO)
    phase.check(f"ack latency p50 at {rate:g} req/s", lat["p50"], "<=", 10, "ms")
    phase.check(f"ack latency p99 at {rate:g} req/s", lat["p99"], "<=", 50, "ms")
    errors(phase, runs[1], rate)
    return phase


def signed_for(key: Any, body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", **sendgrid.signed_headers(key, body)}


async def single(ctx: Context, servers: Servers) -> Phase:
    phase = Phase("ingest_single")
    events = orjson.loads(ctx.bodies[0])[:200]
    bodies = [orjson.dumps(generator.api_event(e)) for e in events]
    headers = {
        "content-type": "application/json",
        **basic(servers.account.login, servers.account.secret),
    }
    c = ctx.sizes.single_connections

    async def side(name: str) -> dict[str, Any]:
        return await closed_run(ctx, servers, name, "/v1/events", bodies, headers, c)

    base, system = await alternate(
        phase, ctx.sizes.pairs, lambda k: side("baseline"), lambda k: side("system")
    )
    rate = ctx.sizes.single_rate
    requests = [request("POST", "/v1/events", "127.0.0.1", b, headers) for b in bodies]
    runs = [
        await latency_run(ctx, servers, name, requests, rate, f"single-{name}")
        for name in ("baseline", "system")
    ]
    phase.runs += runs
    r = summarise(phase, base, system, runs[1], sum(map(len, bodies)) // len(bodies))
    lat = runs[1]["latency_ms"]
    phase.check("requests/s vs baseline", r, ">=", SINGLE_TARGET_RATIO)
    phase.check("requests/s", median([s["rps"] for s in system]), ">=", 5000, "req/s")
    phase.check(f"latency p99 at {rate:g} req/s", lat["p99"], "<=", 20, "ms")
    errors(phase, runs[1], rate)
    return phase


def summarise(
    phase: Phase,
    base: list[dict[str, Any]],
    system: list[dict[str, Any]],
    latency: dict[str, Any],
    body_bytes: int,
) -> float:
    """The throughput row, the latency summary and CPU per process; returns the ratio."""
    what = f"requests of {body_bytes / 1000:.1f} kB"
    r = phase.compare(
        what, "req/s", [b["rps"] for b in base], [s["rps"] for s in system], "bare Starlette"
    )
    phase.summary = {
        "latency_ms": latency["latency_ms"],
        "latency_rate": latency["offered_rate"],
        "tool": system[0].get("tool"),
    }
    phase.cpu = {
        "baseline run": base[len(base) // 2]["cpu_s"],
        "system run": system[len(system) // 2]["cpu_s"],
        f"system at {latency['offered_rate']:g} req/s": latency["cpu_s"],
    }
    return r


def errors(phase: Phase, latency: dict[str, Any], rate: float) -> None:
    bad = {s: n for s, n in latency["statuses"].items() if not s.startswith("2")}
    if bad:
        phase.notes.append(f"open loop at {rate:g} req/s: non-2xx answers {bad}")


async def run(ctx: Context) -> list[Phase]:
    servers = Servers(ctx)
    await servers.start()
    try:
        return [await webhooks(ctx, servers), await single(ctx, servers)]
    finally:
        await servers.stop()
