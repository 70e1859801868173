"""The load generator as its own process: `python -m bench.load SPEC.json OUT.json`.

Modes:
- `rate`: open loop at a fixed offered rate over pre-encoded requests. Latency is measured from
  each request's scheduled time, so a stall delays the clock of every request behind it
  (no coordinated omission); a request needing a connection beyond `max_connections` fails.
- `closed`: as many requests as `connections` keep-alive connections can carry (used when wrk
  is not installed).
- `drive`: the end-to-end phase: signed SendGrid bodies at a fixed event rate, each carrying one
  probe event, while the read API is polled until every probe is visible (freshness).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import sendgrid
from bench.corpus import read_blobs
from bench.http import Connection, basic, request


class Pool:
    """Idle keep-alive connections, opened on demand up to a cap."""

    def __init__(self, host: str, port: int, cap: int) -> None:
        self.host, self.port, self.cap = host, port, cap
        self.idle: list[Connection] = []
        self.opened = 0

    async def exchange(self, data: bytes) -> int:
        reused = bool(self.idle)
        if self.idle:
            conn = self.idle.pop()
        elif self.opened < self.cap:
            self.opened += 1
            conn = await Connection.open(self.host, self.port)
        else:
            return -1  # the offered rate needs more concurrency than allowed: counted as failed
        try:
            status, _ = await conn.exchange(data)
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            self.opened -= 1
            if reused:
                # uvicorn closes keep-alive connections idle for 5 s: take another one.
                return await self.exchange(data)
            return -2
        self.idle.append(conn)
        return status


async def paced(rate: float, duration: float, send: Any) -> None:
    """Call `send(i, scheduled_at)` as a task at `rate` per second for `duration` seconds."""
    total = int(rate * duration)
    start = time.monotonic() + 0.05
    tasks: set[asyncio.Task[None]] = set()
    i = 0
    while i < total:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        while i < due:
            task = asyncio.create_task(send(i, start + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(min(0.001, max(0.0, start + i / rate - time.monotonic())))
    if tasks:
        await asyncio.wait(tasks)


async def at_rate(spec: dict[str, Any]) -> dict[str, Any]:
    requests = read_blobs(Path(spec["requests_file"]))
    pool = Pool(spec["host"], spec["port"], spec.get("max_connections", 256))
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def send(i: int, scheduled: float) -> None:
        status = await pool.exchange(requests[i % len(requests)])
        if 200 <= status < 300:
            latencies.append(time.monotonic() - scheduled)
        statuses[str(status)] = statuses.get(str(status), 0) + 1

    started = time.monotonic()
    await paced(spec["rate"], spec["duration"], send)
    elapsed = time.monotonic() - started
    return {
        "offered_rate": spec["rate"],
        "elapsed_s": round(elapsed, 3),
        "statuses": statuses,
        "connections": pool.opened,
        "latencies_s": latencies,
    }


async def closed(spec: dict[str, Any]) -> dict[str, Any]:
    requests = read_blobs(Path(spec["requests_file"]))
    stop_at = time.monotonic() + spec["duration"]
    counts = {"ok": 0, "failed": 0}

    async def worker(k: int) -> None:
        conn = await Connection.open(spec["host"], spec["port"])
        i = k
        while time.monotonic() < stop_at:
            status, _ = await conn.exchange(requests[i % len(requests)])
            counts["ok" if 200 <= status < 300 else "failed"] += 1
            i += spec["connections"]
        conn.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(spec["connections"])))
    elapsed = time.monotonic() - started
    return {**counts, "elapsed_s": elapsed, "rps": counts["ok"] / elapsed}


def probe_event(n: int, campaign: str, delivery: str) -> bytes:
    """A delivered event for probe recipient `n`; its time orders the probes (newest first).

    The address and message name the delivery: the event id leaves the delivery out, so probe
    `n` of another run would otherwise be a duplicate, folded once.
    """
    return orjson.dumps(
        {
            "email": f"probe{n}@{delivery}.bench.example",
            "timestamp": 1_767_225_600 + n,
            "event": "delivered",
            "sg_event_id": f"probe-{n}",
            "sg_message_id": f"probe{n}-{delivery}.filter0001.0",
            "campaign_id": campaign,
            "delivery_id": delivery,
            "response": "250 OK",
        }
    )


class Probes:
    """Polls the probe delivery through the read API, noting when each probe first shows."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        path = f"/v1/deliveries/{spec['campaign']}/{spec['probe_delivery']}/recipients"
        query = "?sort=-deliveredAt&limit=500"
        self.request = request(
            "GET", path + query, spec["host"], headers=basic(spec["login"], spec["secret"])
        )
        self.acked: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self.polls = 0

    async def poll(self, stop: asyncio.Event) -> None:
        conn = await Connection.open(self.spec["host"], self.spec["port"])
        while not stop.is_set():
            status, body = await conn.exchange(self.request)
            now = time.monotonic()
            self.polls += 1
            if status == 200:
                for row in orjson.loads(body)["recipients"]:
                    n = int(row["email"][5 : row["email"].index("@")])
                    self.seen.setdefault(n, now)
            await asyncio.sleep(self.spec["poll_ms"] / 1000)
        conn.close()

    def pending(self) -> int:
        return sum(1 for n in self.acked if n not in self.seen)


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    bodies = read_blobs(Path(spec["bodies_file"]))
    first = spec["first_body"]
    key = sendgrid.load_pem(Path(spec["key_file"]).read_bytes())
    pool = Pool(spec["host"], spec["port"], spec.get("max_connections", 64))
    probes = Probes(spec)
    path = f"/webhooks/sendgrid/{spec['account']}"
    records: list[tuple[float, float, int, int]] = []  # scheduled, answered, status, events
    rate = spec["rate_events"] / (spec["events_per_body"] + 1)
    duration = spec["duration"]

    async def send(i: int, scheduled: float) -> None:
        probe = probe_event(i, spec["campaign"], spec["probe_delivery"])
        # Past the end of the corpus bodies come round again: their events are duplicates then.
        body = b"[" + probe + b"," + bodies[(first + i) % len(bodies)][1:]
        headers = {"content-type": "application/json", **sendgrid.signed_headers(key, body)}
        status = await pool.exchange(request("POST", path, spec["host"], body, headers))
        answered = time.monotonic()
        if 200 <= status < 300:
            probes.acked[i] = answered
        records.append((scheduled, answered, status, spec["events_per_body"] + 1))

    stop = asyncio.Event()
    poller = asyncio.create_task(probes.poll(stop))
    await paced(rate, duration, send)
    deadline = time.monotonic() + spec["probe_wait_s"]
    while probes.pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await poller
    return {
        "bodies_sent": len(records),
        "bodies_reused": max(0, first + len(records) - len(bodies)),
        "offered_events_per_s": rate * (spec["events_per_body"] + 1),
        "duration_s": duration,
        "records": records,
        "probes": [(n, at, probes.seen.get(n)) for n, at in sorted(probes.acked.items())],
        "polls": probes.polls,
    }


MODES = {"rate": at_rate, "closed": closed, "drive": drive}


def main() -> None:
    spec = orjson.loads(Path(sys.argv[1]).read_bytes())
    result = asyncio.run(MODES[spec["mode"]](spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    Path(sys.argv[2]).write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
