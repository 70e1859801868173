"""Soak: the whole pipeline under load and scheduled faults for a bounded time, judged by an oracle.

    scripts/soak [--minutes 10] [--events 150000] [--rate 250] [--fault-every 25] [--seed 1]

It runs on its own: Kafka and PostgreSQL started by scripts/services in their own state folder
and ports (default /tmp/mailfold-soak, 24092/24093 and 24432; HTTP on 24000, consumer metrics on
24001/24002; all on 127.0.0.1), never touching the default instance. The service and both
consumers run as processes. Posters send a realistic mix through HTTP (Event API batches, with
now and then a link scanner's burst of clicks, and signed SendGrid batches), retrying as
providers do after a 5xx or a dropped connection and now and then posting a request again,
while faults follow a schedule: kill -9 of the fold and the normalizer, SIGTERM of the fold and
of the service, broker and database restarts, duplicate storms and poison records. At the end
it lets the pipeline drain and compares PostgreSQL with the oracle (tests/oracle.py) field by
field. The last line is `N passed, N failed`; the exit status is 0 only if nothing failed. Logs
stay in the state folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from service import kafka
from service.settings import Settings
from tests import oracle
from tests.webhooks.contract_sendgrid import public_key_text, sign_request

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
SERVICES = str(ROOT / "scripts" / "services")
MARKER = ".mailfold-soak"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
FAULTS = (
    "kill -9 fold",
    "restart broker",
    "duplicate storm",
    "kill -9 normalize",
    "restart postgres",
    "SIGTERM fold",
    "poison records",
    "SIGTERM service",
)
# Event API types by weight: most mail is sent and delivered, fewer opened, few clicked.
API_KINDS = {
    "sent": 24,
    "delivered": 22,
    "opened": 20,
    "clicked": 11,
    "deferred": 3,
    "bounced": 5,
    "dropped": 1,
    "unsubscribed": 3,
    "complained": 1,
    "converted": 4,
    "custom": 1,
}
# SendGrid event -> canonical type (service/webhooks/sendgrid.py), by weight.
SENDGRID_KINDS = {
    "processed": ("sent", 25),
    "delivered": ("delivered", 23),
    "open": ("opened", 22),
    "click": ("clicked", 12),
    "bounce": ("bounced", 6),
    "deferred": ("deferred", 4),
    "unsubscribe": ("unsubscribed", 3),
    "spamreport": ("complained", 1),
}


def log(message: str) -> None:
    sys.stderr.write(f"soak: {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------- the environment


@dataclass
class Options:
    minutes: float
    events: int
    rate: float
    fault_every: float
    seed: int
    state_dir: Path
    kafka_port: int
    controller_port: int
    pg_port: int
    http_port: int
    posters: int


def options(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="scripts/soak", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to post (default 10)")
    p.add_argument("--events", type=int, default=150_000, help="stop posting after this many")
    p.add_argument("--rate", type=float, default=250.0, help="events per second to post")
    p.add_argument("--fault-every", type=float, default=25.0, help="seconds between faults")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--state-dir", type=Path, default=Path("/tmp/mailfold-soak"))
    p.add_argument("--kafka-port", type=int, default=24092)
    p.add_argument("--controller-port", type=int, default=24093)
    p.add_argument("--pg-port", type=int, default=24432)
    p.add_argument("--http-port", type=int, default=24000, help="and the next two for metrics")
    p.add_argument("--posters", type=int, default=8, help="concurrent HTTP senders")
    return Options(**vars(p.parse_args(argv)))


def environment(opts: Options) -> dict[str, str]:
    """The variables every process of the run gets: its own state, ports, topics and key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFOLD_")}
    env.update(
        MAILFOLD_STATE_DIR=str(opts.state_dir),
        MAILFOLD_KAFKA_PORT=str(opts.kafka_port),
        MAILFOLD_KAFKA_CONTROLLER_PORT=str(opts.controller_port),
        MAILFOLD_PG_PORT=str(opts.pg_port),
        MAILFOLD_KAFKA_BOOTSTRAP=f"127.0.0.1:{opts.kafka_port}",
        MAILFOLD_DATABASE_URL=f"postgresql://mailfold@127.0.0.1:{opts.pg_port}/mailfold",
        MAILFOLD_HOST="127.0.0.1",
        MAILFOLD_PORT=str(opts.http_port),
        MAILFOLD_SECRET_KEY=secrets.token_hex(32),
        MAILFOLD_RETRY_AFTER_S="1",
        MAILFOLD_PRODUCE_TIMEOUT_S="5",
        MAILFOLD_LOG_LEVEL="INFO",
    )
    return env


def ephemeral(port: int) -> bool:
    """Whether the kernel may hand `port` out as a client's local port.

    A client retrying a stopped broker on such a port can be given that very port and connect
    to itself (TCP simultaneous open), and the broker then cannot listen on it again.
    """
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return False
    return low <= port <= high


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def prepare_state(opts: Options, env: dict[str, str]) -> None:
    """A fresh state folder (only ever one this script made), with the Kafka jars linked in."""
    state = opts.state_dir
    if state.exists():
        if not (state / MARKER).exists():
            raise SystemExit(f"soak: {state} exists and is not a soak folder; choose --state-dir")
        subprocess.run([SERVICES, "stop"], env=env, capture_output=True)
        shutil.rmtree(state)
    ports = (
        opts.kafka_port,
        opts.controller_port,
        opts.pg_port,
        *range(opts.http_port, opts.http_port + 3),
    )
    if taken := [p for p in ports if port_taken(p)]:
        raise SystemExit(f"soak: ports {taken} are in use; choose others (see --help)")
    if risky := [p for p in ports if ephemeral(p)]:
        raise SystemExit(f"soak: ports {risky} are in the ephemeral range; choose lower ones")
    (state / "kafka").mkdir(parents=True)
    (state / MARKER).write_text("made by scripts/soak\n")
    state.chmod(0o755)
    jars = ROOT / ".mailfold" / "kafka" / "lib"
    if any(jars.glob("kafka_2.13-*.jar")):
        (state / "kafka" / "lib").symlink_to(jars)
    else:
        subprocess.run([str(ROOT / "scripts" / "install")], env=env, check=True)


def services(action: str, which: str, env: dict[str, str], attempts: int = 3) -> None:
    for attempt in range(attempts):
        done = subprocess.run([SERVICES, action, which], env=env, capture_output=True, text=True)
        if done.returncode == 0:
            return
        log(f"scripts/services {action} {which} failed: {done.stderr.strip()[-300:]}")
        time.sleep(5 * (attempt + 1))
    raise RuntimeError(f"scripts/services {action} {which} failed {attempts} times")


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [PY, "-m", "mailfold", *args], env=env, capture_output=True, check=True, cwd=ROOT
    )
    return orjson.loads(done.stdout)


class Component:
    """One Mailfold process (serve, normalizer, fold), restartable, logging to the state folder."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.crashes = 0

    def start(self) -> None:
        self.started = time.monotonic()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [PY, "-m", "mailfold", self.name],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def check(self) -> None:
        """Restart (and count) a process that exited without being told to."""
        if self.proc is not None and self.proc.poll() is not None:
            self.crashes += 1
            log(f"{self.name} exited on its own (code {self.proc.returncode}); restarting")
            self.start()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def terminate(self, within: float) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None if still running after `within` s) and the time taken."""
        assert self.proc is not None
        # A process is told to stop once it is up; one still starting has no handler yet.
        await asyncio.sleep(max(0.0, self.started + 5 - time.monotonic()))
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None and time.monotonic() - started < within:
            await asyncio.sleep(0.05)
        code = self.proc.poll()
        if code is None:
            self.kill()
        return code, time.monotonic() - started

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


# --------------------------------------------------------------------------------- the load


class Mix:
    """Realistic batches: ten Event API deliveries and five SendGrid ones, 1000 people each.

    Event times advance about 30 s per event, so no recipient sees two events within seconds
    of each other and any two generated events are distinct; duplicates come only from posting
    a request again, as providers do.
    """

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.n = 0

    def at(self) -> datetime:
        self.n += 1
        return T0 + timedelta(seconds=self.n * 30 + self.rnd.randrange(10))

    def api(self, size: int) -> list[dict[str, Any]]:
        rnd, out = self.rnd, list[dict[str, Any]]()
        while len(out) < size:
            kind = rnd.choices(list(API_KINDS), list(API_KINDS.values()))[0]
            delivery, who = f"d{rnd.randrange(10)}", rnd.randrange(1000)
            if kind == "clicked" and rnd.random() < 0.05:
                out += self.scanner_burst(delivery, who)
                continue
            e: dict[str, Any] = {
                "type": kind,
                "occurred_at": self.at().isoformat().replace("+00:00", "Z"),
                "campaign_id": f"c{delivery}",
                "delivery_id": delivery,
                "message_id": f"m-{delivery}-{who}",
                "recipient": {"email": f"person{who}@example.com", "first_name": f"P{who}"},
            }
            if kind == "opened":
                e["machine"] = rnd.choice([True, False, False, None])
                if rnd.random() < 0.1:
                    del e["delivery_id"]  # attributed through the message id
            elif kind == "clicked":
                e["url"] = f"https://shop.example/p/{rnd.randrange(8)}"
                e["machine"] = rnd.random() < 0.15
            elif kind == "bounced":
                e["bounce"] = {"class": rnd.choice(["hard", "soft"]), "code": "5.1.1"}
            elif kind == "converted":
                amount = f"{rnd.randrange(1, 900)}.{rnd.randrange(100):02d}"
                e["conversion"] = {"amount": amount, "currency": "EUR"}
            elif kind == "custom":
                e["name"] = "viewed_product"
                e["payload"] = {"sku": f"sku-{rnd.randrange(50)}"}
            out.append(e)
        return out

    def scanner_burst(self, delivery: str, who: int) -> list[dict[str, Any]]:
        """A link scanner following every link of a message within a second (MACHINE.md e3)."""
        start, links = self.at(), self.rnd.sample(range(8), self.rnd.randrange(3, 6))
        return [
            {
                "type": "clicked",
                "occurred_at": (start + timedelta(milliseconds=250 * i)).isoformat(),
                "campaign_id": f"c{delivery}",
                "delivery_id": delivery,
                "message_id": f"m-{delivery}-{who}",
                "recipient": {"email": f"person{who}@example.com"},
                "url": f"https://shop.example/p/{link}",
                "ip": "198.51.100.7",
            }
            for i, link in enumerate(links)
        ]

    def sendgrid(self, size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """SendGrid items as posted, and the same events described for the oracle."""
        rnd, items, described = self.rnd, [], []
        names = list(SENDGRID_KINDS)
        weights = [w for _, w in SENDGRID_KINDS.values()]
        for _ in range(size):
            name = rnd.choices(names, weights)[0]
            delivery, who = f"sg{rnd.randrange(5)}", rnd.randrange(1000)
            item: dict[str, Any] = {
                "email": f"reader{who}@example.com",
                "timestamp": int(self.at().timestamp()),
                "event": name,
                "sg_message_id": f"{delivery}x{who}.filter0001.1.0",
                "campaign_id": f"c{delivery}",
                "delivery_id": delivery,
            }
            e: dict[str, Any] = {
                "source": "sendgrid",
                "native": name,
                "type": SENDGRID_KINDS[name][0],
                "occurred_at": datetime.fromtimestamp(item["timestamp"], UTC).isoformat(),
                "delivery_id": delivery,
                "message_id": f"{delivery}x{who}",
                "recipient": {"email": item["email"]},
            }
            if name == "open" and rnd.random() < 0.8:
                item["sg_machine_open"] = e["machine"] = rnd.random() < 0.4
            elif name == "click":
                item["url"] = e["url"] = f"https://shop.example/sg/{rnd.randrange(6)}"
            elif name == "bounce":
                item["type"] = e["discriminator"] = rnd.choice(["bounce", "blocked"])
                e["bounce"] = {"class": "hard" if item["type"] == "bounce" else "soft"}
            elif name == "deferred":
                item["attempt"] = e["discriminator"] = str(rnd.randrange(1, 4))
                item["response"] = "421 try later"
            items.append(item)
            described.append(e)
        return items, described


@dataclass
class Request:
    """One request a poster may send again: what it carries and what the oracle expects."""

    source: str  # "api" or "sendgrid"
    payload: list[dict[str, Any]]
    described: list[dict[str, Any]]


@dataclass
class Run:
    """Everything the run counts."""

    opts: Options
    env: dict[str, str]
    settings: Settings
    account: dict[str, str]
    key: ec.EllipticCurvePrivateKey
    components: dict[str, Component]
    started: float = field(default_factory=time.monotonic)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    events_posted: int = 0
    retried: int = 0
    refused_4xx: list[str] = field(default_factory=list)
    given_up: int = 0
    reposted_requests: int = 0
    reposted_events: int = 0
    kept: list[Request] = field(default_factory=list)
    poison: int = 0
    # (status, answered as it should, body) of each hostile request the poison fault made.
    hostile: list[tuple[int, bool, bytes]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    clean_exits: list[tuple[str, int | None, float]] = field(default_factory=list)
    posting: bool = True

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Limiter:
    """Spreads posts so events go out at about `rate` per second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.next = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.next = max(self.next, now) + n / self.rate
        await asyncio.sleep(max(0.0, self.next - n / self.rate - now))


async def send(run: Run, client: httpx.AsyncClient, req: Request) -> None:
    """Post until a 2xx, as a provider does: after a 5xx or a dropped connection, again."""
    deadline = time.monotonic() + 300
    while True:
        try:
            if req.source == "api":
                auth = (run.account["login"], run.account["secret"])
                r = await client.post("/v1/events", json=req.payload, auth=auth)
            else:
                r = await post_sendgrid(run, client, req.payload)
        except httpx.TransportError:
            r = None
        if r is not None and r.status_code < 300:
            run.requests[req.source] += 1
            run.accepted.extend(req.described)
            return
        if r is not None and r.status_code < 500:
            run.refused_4xx.append(f"{r.status_code} {r.text[:200]}")
            return
        run.retried += 1
        if time.monotonic() > deadline:
            run.given_up += 1
            log(f"a {req.source} request was not accepted within 5 minutes; giving up on it")
            return
        retry_after = float(r.headers.get("retry-after", "0.5")) if r is not None else 0.5
        await asyncio.sleep(min(retry_after, 1.0) * random.uniform(0.5, 1.5))


async def post_sendgrid(
    run: Run, client: httpx.AsyncClient, items: list[dict[str, Any]]
) -> httpx.Response:
    # Each attempt is signed afresh, and SendGrid gives every event a new sg_event_id.
    body = orjson.dumps([{**e, "sg_event_id": secrets.token_urlsafe(16)} for e in items])
    path = f"/webhooks/sendgrid/{run.account['account']}"
    signed = sign_request(run.key, body, f"http://127.0.0.1:{run.opts.http_port}{path}", now())
    return await client.post(path, content=body, headers=dict(signed.headers))


def now() -> datetime:
    return datetime.now(UTC)


def keep(run: Run, req: Request, rnd: random.Random) -> None:
    """Remember some accepted requests (a bounded sample) to post again later."""
    if len(run.kept) < 2000:
        run.kept.append(req)
    else:
        run.kept[rnd.randrange(len(run.kept))] = req


async def poster(run: Run, mix: Mix, limiter: Limiter, client: httpx.AsyncClient) -> None:
    rnd = random.Random(mix.rnd.random())
    while run.posting:
        if run.kept and rnd.random() < 0.03:
            req = rnd.choice(run.kept)
            run.reposted_requests += 1
            run.reposted_events += len(req.described)
        elif rnd.random() < 0.7:
            payload = mix.api(rnd.randrange(1, 60))
            req = Request("api", payload, payload)
        else:
            req = Request("sendgrid", *mix.sendgrid(rnd.randrange(1, 120)))
        await limiter.take(len(req.described))
        run.events_posted += len(req.described)
        await send(run, client, req)
        keep(run, req, rnd)
        if run.events_posted >= run.opts.events or run.elapsed() > run.opts.minutes * 60:
            run.posting = False


# ------------------------------------------------------------------------------- the faults


async def ledger_count(settings: Settings) -> int | None:
    """Distinct events in the ledger; None while PostgreSQL does not answer."""
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM events", timeout=20)
        return n
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None
    finally:
        conn.terminate()


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def inject(run: Run, name: str) -> str:
    """Carry out one fault; returns a short note."""
    comps, env = run.components, run.env
    if name in ("kill -9 fold", "kill -9 normalize"):
        comp = comps["fold" if "fold" in name else "normalizer"]
        comp.kill()
        await asyncio.sleep(random.uniform(0.5, 3))
        comp.start()
        return "killed and restarted"
    if name in ("SIGTERM fold", "SIGTERM service"):
        comp = comps["fold" if "fold" in name else "serve"]
        code, took = await comp.terminate(within=30)
        run.clean_exits.append((comp.name, code, took))
        comp.start()
        return f"exit {code} after {took:.1f}s, restarted"
    if name in ("restart broker", "restart postgres"):
        which = "kafka" if "broker" in name else "postgres"
        await in_thread(services, "stop", which, env)
        await asyncio.sleep(random.uniform(2, 6))
        await in_thread(services, "start", which, env)
        return f"{which} stopped and started"
    if name == "duplicate storm":
        rnd = random.Random(len(run.faults))
        storm = rnd.sample(run.kept, min(200, len(run.kept)))
        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(base_url=base_url(run), timeout=60, limits=limits) as client:
            await asyncio.gather(*(send(run, client, req) for req in storm))
        run.reposted_requests += len(storm)
        run.reposted_events += sum(len(r.described) for r in storm)
        return f"{len(storm)} accepted requests posted again"
    if name == "poison records":
        return await poison(run)
    raise ValueError(name)


# Event API posts Mailfold cannot store: each must be refused with a 4xx naming the problem.
HOSTILE_POSTS: list[tuple[str, bytes]] = [
    ("application/json", b'{"conversion": {"amount": "1e-20000", "currency": "EUR"}}'),
    ("application/json", b'{"campaign_id": "x\\ud83d"}'),
    (
        "application/json",
        b'{"type": "custom", "name": "deep", "payload": ' + b"[" * 300 + b"]" * 300 + b"}",
    ),
    ("application/json", b'{"campaign_id": 18446744073709551616}'),
    ("application/json", b'{"url": "' + b"u" * 5000 + b'"}'),
    ("application/json", b'{"occurred_at": 1e30}'),
    ("application/json", b'{"recipient": {"email": "ann @example.com"}}'),
    ("application/json", b"\xff\xfe not utf-8"),
    ("text/plain", b"{}"),
]
# SendGrid events that verify but cannot be stored: 2xx, then the DLQ with the reason.
HOSTILE_SENDGRID: list[bytes] = [
    b'[{"email": "x\\ud83d@example.com", "timestamp": 1740787200, "event": "open"}]',
    b'[{"email": "a@example.com", "timestamp": 1e30, "event": "open"}]',
    b'[{"email": "a@example.com", "timestamp": 1740787200, "event": "click", "url": "'
    + b"u" * 5000
    + b'"}]',
]


def hostile_post(run: Run, body: bytes) -> bytes:
    """A valid converted event of the run's, with the hostile fields merged in (raw JSON)."""
    if not body.startswith(b"{"):
        return body
    base = {
        "type": "converted",
        "occurred_at": "2025-03-01T00:00:00Z",
        "delivery_id": "poison",
        "recipient": {"email": "poison@example.com"},
        "conversion": {"amount": "1", "currency": "EUR"},
    }
    return orjson.dumps(base)[:-1] + b"," + body[1:]


def poison_events(run: Run) -> list[bytes]:
    """Records on mailfold.events itself that the ledger cannot hold (another producer's)."""
    account = run.account["account"]
    good = {
        "schema_version": 1, "event_id": secrets.token_hex(16), "account": account,
        "source": "api", "native_type": "sent", "type": "sent",
        "occurred_at": "2025-03-01T00:00:00.000000Z", "delivery_id": "poison",
        "recipient": {"email": "poison@example.com"},
    }  # fmt: skip
    return [
        orjson.dumps({**good, "conversion": {"amount": "1e-20000", "currency": "EUR"}}),
        orjson.dumps({**good, "campaign_id": {"not": "text"}}),
        orjson.dumps({**good, "url": "u" * 5000}),
        orjson.dumps(good)[:-1] + b',"payload":' + b"[" * 300 + b"]" * 300 + b"}",
    ]


async def poison(run: Run) -> str:
    """Hostile input of every kind, at every door: refused where it can be, else dead-lettered."""
    account = run.account["account"]
    auth = (run.account["login"], run.account["secret"])
    async with httpx.AsyncClient(base_url=base_url(run), timeout=60) as client:
        for kind, body in HOSTILE_POSTS:
            headers = {"content-type": kind}
            r = await client.post(
                "/v1/events", content=hostile_post(run, body), headers=headers, auth=auth
            )
            ok = r.status_code in (400, 415) and bool(r.json().get("message"))
            run.hostile.append((r.status_code, ok, body[:60]))
        path = f"/webhooks/sendgrid/{account}"
        for body in HOSTILE_SENDGRID:
            while True:  # a provider retries a 5xx; it must end in a 2xx
                signed = sign_request(run.key, body, f"{base_url(run)}{path}", now())
                r = await client.post(path, content=body, headers=dict(signed.headers))
                if r.status_code < 500:
                    break
                await asyncio.sleep(0.5)
            run.hostile.append((r.status_code, r.status_code == 200, body[:60]))
    raw = [("source", b"api"), ("account", account.encode())]
    producer = kafka.Producer(run.settings)
    try:
        await producer.send_many(
            [
                (run.settings.raw_topic, None, b"\xff not json", raw),
                (run.settings.raw_topic, None, b"[]", []),
                (run.settings.raw_topic, None, b'[{"event": "bogus"}]', raw[1:]),
                *((run.settings.events_topic, b"poison", v, []) for v in poison_events(run)),
            ]
        )
    finally:
        await producer.stop()
    run.poison += 3 + len(HOSTILE_SENDGRID) + 4
    refused = sum(ok for _, ok, _ in run.hostile[-len(HOSTILE_POSTS) - len(HOSTILE_SENDGRID) :])
    return (
        f"{len(HOSTILE_POSTS)} hostile posts and {len(HOSTILE_SENDGRID)} hostile webhooks "
        f"({refused} answered as they should), 3 unreadable raw records and 4 unstorable events"
    )


async def faults(run: Run) -> None:
    """One fault every `fault_every` seconds while posting, each checked for recovery."""
    order = list(FAULTS)
    checks = []
    while True:
        await asyncio.sleep(run.opts.fault_every)
        # Faults stop a little before posting does, so each is seen to be recovered from.
        ending = run.elapsed() > run.opts.minutes * 60 - 20
        if not run.posting or ending or run.events_posted > 0.95 * run.opts.events:
            break
        for comp in run.components.values():
            comp.check()
        name = order[len(run.faults) % len(order)]
        started = run.elapsed()
        try:
            note = await inject(run, name)
        except Exception as exc:
            note = f"could not be injected: {exc!r}"
        fault = {"name": name, "at": started, "seconds": run.elapsed() - started, "note": note}
        run.faults.append(fault)
        log(f"[{started:5.0f}s] fault: {name}: {note}")
        checks.append(asyncio.create_task(recovered(run, fault)))
    await asyncio.gather(*checks)


async def recovered(run: Run, fault: dict[str, Any], within: float = 120) -> None:
    """A fault is survived when events keep reaching the ledger after it."""
    deadline = time.monotonic() + within
    before = None
    while before is None and time.monotonic() < deadline:
        before = await ledger_count(run.settings)
        await asyncio.sleep(0.5)
    fault["survived"] = False
    while time.monotonic() < deadline:
        n = await ledger_count(run.settings)
        if before is not None and n is not None and n > before:
            fault["survived"] = True
            fault["recovered_after"] = run.elapsed() - fault["at"] - fault["seconds"]
            return
        await asyncio.sleep(1)


async def report_progress(run: Run) -> None:
    while run.posting:
        await asyncio.sleep(30)
        ledger = await ledger_count(run.settings)
        log(
            f"[{run.elapsed():5.0f}s] posted {run.events_posted} events, accepted "
            f"{len(run.accepted)} in {sum(run.requests.values())} requests, ledger {ledger}, "
            f"retries {run.retried}, faults {len(run.faults)}"
        )


def base_url(run: Run) -> str:
    return f"http://127.0.0.1:{run.opts.http_port}"


# ------------------------------------------------------------------------------ the verdict


async def topic_records(settings: Settings, topic: str) -> int:
    reader = kafka.Reader(settings, topic)
    try:
        partitions = await reader.start()
        ends, firsts = await reader.ends(partitions), await reader.beginnings(partitions)
        return sum(ends[p] - firsts[p] for p in partitions)
    finally:
        await reader.stop()


async def observe(settings: Settings) -> tuple[oracle.State, int]:
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        state = await oracle.observe(lambda sql: conn.fetch(sql))
        ledger: int = await conn.fetchval("SELECT count(*) FROM events")
        return state, ledger
    finally:
        await conn.close()


async def settle(run: Run, expected: oracle.State, within: float = 300) -> Any:
    """Wait for the pipeline to drain: PostgreSQL equals the oracle, or `within` runs out."""
    deadline = time.monotonic() + within
    while True:
        for comp in run.components.values():
            comp.check()
        try:
            got, ledger = await observe(run.settings)
            diffs = oracle.differences(expected, got)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            got, ledger, diffs = None, -1, {"database": {("error",): {"error": repr(exc)}}}
        if not diffs or time.monotonic() > deadline:
            return got, ledger, diffs
        await asyncio.sleep(3)


def clean(code: int | None) -> bool:
    """A clean exit after SIGTERM: status 0, for the service as for the consumers."""
    return code == 0


def verdict(
    run: Run, expected: oracle.State, ledger: int, diffs: Any, extra: dict[str, int]
) -> int:
    """Print the figures and the checks; returns how many checks failed."""
    distinct = len(oracle.distinct(run.accepted))
    lost, twice = max(0, distinct - ledger), max(0, ledger - distinct)
    by_kind = Counter(f["name"] for f in run.faults)
    survived = Counter(f["name"] for f in run.faults if f.get("survived"))
    print(
        f"soak: {run.elapsed() / 60:.1f} min on 127.0.0.1, state and logs in {run.opts.state_dir}"
    )
    print(
        f"requests accepted: {sum(run.requests.values())} "
        f"(api {run.requests['api']}, sendgrid {run.requests['sendgrid']}); "
        f"answered 5xx or dropped and retried: {run.retried}; 4xx: {len(run.refused_4xx)}"
    )
    print(f"events accepted: {len(run.accepted)} ({distinct} distinct)")
    print(f"events folded: {ledger} distinct in the ledger, expected {distinct}")
    print(
        f"duplicates absorbed: {extra['events_topic'] - ledger} records on mailfold.events "
        f"beyond the distinct events ({run.reposted_events} events from {run.reposted_requests} "
        f"requests posted again; any more were re-derived after a crash)"
    )
    print(
        "faults survived: "
        + ", ".join(f"{name} {survived[name]}/{n}" for name, n in by_kind.items())
        + f" ({sum(survived.values())}/{len(run.faults)})"
    )
    print(f"lost: {lost}, counted twice: {twice}, dead letters: {extra['dlq']}")
    if diffs:
        print("differences:\n" + oracle.summary(diffs))
    checks = [
        (f"every accepted event folded once ({distinct})", ledger == distinct),
        (
            f"recipient rows match the oracle ({len(expected.recipients)})",
            "recipients" not in diffs,
        ),
        (
            f"delivery counters match the oracle ({len(expected.deliveries)})",
            "delivery_stats" not in diffs,
        ),
        (f"link counts match the oracle ({len(expected.links)})", "links" not in diffs),
        ("no request was answered with a 4xx", not run.refused_4xx),
        ("every request was accepted in the end", not run.given_up),
        (f"dead letters are the {run.poison} poison records", extra["dlq"] == run.poison),
        (
            f"hostile requests answered as they should ({len(run.hostile)}: 4xx naming the "
            "problem from the Event API, 2xx for signed webhooks)",
            all(ok for _, ok, _ in run.hostile),
        ),
        (f"every fault was followed by recovery ({len(run.faults)})", survived == by_kind),
        (
            f"SIGTERM exits were clean and prompt ({len(run.clean_exits)})",
            all(clean(code) and took < 15 for _, code, took in run.clean_exits),
        ),
        (
            "no process exited unless told to",
            not any(c.crashes for c in run.components.values()),
        ),
        ("faults were injected", bool(run.faults)),
    ]
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    for line in run.refused_4xx[:3]:
        print(f"  4xx: {line}")
    failed = sum(not ok for _, ok in checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return failed


# ---------------------------------------------------------------------------------- the run


async def soak(opts: Options, env: dict[str, str], components: dict[str, Component]) -> int:
    settings = Settings.from_env(env)
    account = cli(env, "accounts", "create", "soak")
    key = ec.generate_private_key(ec.SECP256R1())
    cli(env, "providers", "set", account["account"], "sendgrid", "--secret", public_key_text(key))
    for comp in components.values():
        comp.start()
    run = Run(opts, env, settings, account, key, components)
    async with httpx.AsyncClient(base_url=base_url(run), timeout=10) as client:
        await wait_healthy(client)
        log(f"posting ~{opts.rate:.0f} events/s for {opts.minutes} min (at most {opts.events})")
        mix, limiter = Mix(opts.seed), Limiter(opts.rate)
        limits = httpx.Limits(max_connections=opts.posters * 2)
        async with httpx.AsyncClient(base_url=base_url(run), timeout=60, limits=limits) as posting:
            tasks = [poster(run, mix, limiter, posting) for _ in range(opts.posters)]
            await asyncio.gather(faults(run), report_progress(run), *tasks)
    log("posting done; waiting for the pipeline to drain")
    expected = oracle.expect(run.accepted)
    _, ledger, diffs = await settle(run, expected)
    extra = {
        "events_topic": await topic_records(settings, settings.events_topic),
        "dlq": await topic_records(settings, settings.dlq_topic),
    }
    return verdict(run, expected, ledger, diffs, extra)


async def wait_healthy(client: httpx.AsyncClient, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/healthz")).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the service did not come up")
        await asyncio.sleep(0.2)


def main(argv: list[str]) -> int:
    # Stopped from outside (`kill` sends SIGTERM): leave through the `finally` below, which stops
    # the service, the consumers, Kafka and PostgreSQL this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    opts = options(argv)
    env = environment(opts)
    prepare_state(opts, env)
    components = {
        name: Component(name, {**env, **extra}, opts.state_dir / f"{name}.log")
        for name, extra in (
            ("serve", {}),
            ("normalizer", {"MAILFOLD_METRICS_PORT": str(opts.http_port + 1)}),
            ("fold", {"MAILFOLD_METRICS_PORT": str(opts.http_port + 2)}),
        )
    }
    try:
        log(f"starting Kafka on {opts.kafka_port} and PostgreSQL on {opts.pg_port}")
        services("start", "all", env)
        cli(env, "init")
        return 1 if asyncio.run(soak(opts, env, components)) else 0
    finally:
        for comp in components.values():
            comp.stop()
        subprocess.run([SERVICES, "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
