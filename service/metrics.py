"""Prometheus metrics on prometheus_client: every metric Mailfold exports, declared at the bottom
of this module so the list of names and labels lives in one place, the process, GC and platform
collectors, and a tiny listener (/metrics, /healthz, /readyz) for the consumer processes.

Call sites pass labels as keywords (`REQUESTS.inc(source=..., outcome=..., reason=...)`); the
thin wrappers below check them against the declared names. Label values must come from small
closed sets (sources, outcomes, error codes, partitions, route templates), never from request
data, or the registry grows without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import prometheus_client as prom

from service.version import VERSION

log = logging.getLogger("mailfold.metrics")

# `_created` series double every counter and histogram for little use; Prometheus does not need
# them to compute rates.
prom.disable_created_metrics()  # type: ignore[no-untyped-call]

# A consumer retrying the same batch for longer than this is stuck: /readyz answers 503.
STUCK_AFTER_S = 30.0
CONTENT_TYPE = prom.CONTENT_TYPE_PLAIN_0_0_4
# Seconds: from sub-millisecond acks to the 10 s produce timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000)
LabelValues = tuple[str, ...]


class Metric:
    """One metric family of a Registry: keyword labels checked against the declared names."""

    def __init__(self, registry: Registry, family: Any, name: str, labels: Sequence[str]) -> None:
        self.registry = registry
        self.name = name
        self.labels = tuple(labels)
        self._family = family
        self._children: dict[tuple[tuple[str, object], ...], Any] = {}

    def key(self, labels: Mapping[str, object]) -> LabelValues:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    def child(self, labels: Mapping[str, object]) -> Any:
        # Label values come from small closed sets, so each combination is checked and looked
        # up once, then reused: this runs several times per ingest request.
        given = tuple(labels.items())
        found = self._children.get(given)
        if found is None:
            values = self.key(labels)
            found = self._children[given] = self._family.labels(*values) if values else self._family
        return found

    def sample(self, suffix: str, labels: Mapping[str, object]) -> float:
        named = dict(zip(self.labels, self.key(labels), strict=True))
        value = self.registry.collectors.get_sample_value(self.name + suffix, named)
        return value or 0.0

    def series(self, suffix: str = "") -> dict[LabelValues, float]:
        """Every labelled series now exported: label values -> value."""
        out = {}
        for family in self._family.collect():
            for s in family.samples:
                if s.name == self.name + suffix:
                    out[tuple(s.labels[n] for n in self.labels)] = s.value
        return out


class Counter(Metric):
    """A value that only goes up (restarts reset it; Prometheus' rate() copes)."""

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        self.child(labels).inc(amount)

    def value(self, **labels: object) -> float:
        return self.sample("", labels)


class Gauge(Metric):
    """A value that goes up and down (lag, in-flight requests, progress)."""

    def set(self, value: float, **labels: object) -> None:
        self.child(labels).set(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        self.child(labels).inc(amount)

    def dec(self, amount: float = 1.0, **labels: object) -> None:
        self.child(labels).dec(amount)

    def remove(self, **labels: object) -> None:
        """Drop one labelled series (a partition this process no longer reads)."""
        values = self.key(labels)
        self._children.pop(tuple(labels.items()), None)
        with contextlib.suppress(KeyError):
            self._family.remove(*values)

    def value(self, **labels: object) -> float:
        return self.sample("", labels)


class Histogram(Metric):
    """Observations counted into cumulative `le` buckets, with their sum and count."""

    def observe(self, value: float, **labels: object) -> None:
        self.child(labels).observe(value)

    def count(self, **labels: object) -> int:
        return int(self.sample("_count", labels))


class Registry:
    """The metrics of one process (a prometheus_client CollectorRegistry), each name once."""

    def __init__(self, *, process: bool = False) -> None:
        self.collectors = prom.CollectorRegistry()
        if process:  # CPU, memory, open files; Python's GC and version
            prom.ProcessCollector(registry=self.collectors)
            prom.PlatformCollector(registry=self.collectors)
            prom.GCCollector(registry=self.collectors)

    def _add(self, kind: Any, name: str, help: str, labels: Sequence[str], **kw: Any) -> Any:
        try:
            return kind(name, help, labels, registry=self.collectors, **kw)
        except ValueError as exc:
            raise ValueError(f"metric {name} registered twice: {exc}") from exc

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        family = self._add(prom.Counter, name, help, labels)
        return Counter(self, family, name, labels)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(self, self._add(prom.Gauge, name, help, labels), name, labels)

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        family = self._add(prom.Histogram, name, help, labels, buckets=buckets)
        return Histogram(self, family, name, labels)

    def info(self, name: str, help: str, values: Mapping[str, str]) -> None:
        """A constant `<name>_info{...} 1` series (build information)."""
        prom.Info(name, help, registry=self.collectors).info(dict(values))

    def render(self) -> str:
        return prom.generate_latest(self.collectors).decode()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer one HTTP/1.x request: GET /metrics, anything else 404; then close."""
    try:
        request_line = await asyncio.wait_for(reader.readline(), 5)
        while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
            pass
        parts = request_line.decode("latin-1").split()
        path = parts[1].split("?")[0] if len(parts) >= 2 and parts[0] == "GET" else None
        if path == "/metrics":
            status, ctype, body = "200 OK", CONTENT_TYPE, REGISTRY.render().encode()
        elif path == "/healthz":
            status, ctype, body = "200 OK", "application/json", b'{"status":"ok"}'
        elif path == "/readyz":
            report = readiness()
            status = "200 OK" if report["ready"] else "503 Service Unavailable"
            ctype, body = "application/json", orjson.dumps(report)
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
        head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
    except (TimeoutError, ConnectionError, UnicodeDecodeError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class Progress:
    """Whether each consumer group in this process moves: since when it has been retrying the
    same batch (stuck past STUCK_AFTER_S), and how many records it has parked."""

    def __init__(self) -> None:
        self.retrying_since: dict[str, float] = {}

    def retrying(self, group: str) -> None:
        since = self.retrying_since.setdefault(group, time.monotonic())
        STUCK_SECONDS.set(round(time.monotonic() - since, 1), group=group)

    def moving(self, group: str) -> None:
        if self.retrying_since.pop(group, None) is not None:
            STUCK_SECONDS.set(0, group=group)

    def stuck(self) -> dict[str, float]:
        now = time.monotonic()
        return {
            group: round(now - since, 1)
            for group, since in self.retrying_since.items()
            if now - since >= STUCK_AFTER_S
        }


def readiness() -> dict[str, object]:
    """A consumer's /readyz: not ready while a group is stuck on one batch; parked records
    (set aside by the safety net, see consumers/fold.py) are reported, as they need a look."""
    stuck = PROGRESS.stuck()
    parked = {key[0]: int(v) for key, v in PARKED.series().items()}
    return {"ready": not stuck, "stuck_seconds": stuck, "parked": parked}


# Where a consumer's listener binds unless told (`configure`, from MAILFOLD_METRICS_HOST).
HOST = "127.0.0.1"


def configure(host: str) -> None:
    global HOST
    HOST = host


async def serve(port: int, host: str | None = None) -> asyncio.Server | None:
    """Serve GET /metrics, /healthz and /readyz on `host:port` beside a consumer's loop; None
    when `port` is 0."""
    if not port:
        return None
    host = host or HOST
    server = await asyncio.start_server(_answer, host, port)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server


REGISTRY = Registry(process=True)
REGISTRY.info("mailfold_build", "The running Mailfold's version.", {"version": VERSION})

# Every HTTP request the service answers, by route template (never the raw path).
HTTP_SECONDS = REGISTRY.histogram(
    "mailfold_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status.",
    ("method", "route", "status"),
)

# Ingest (the HTTP service).
REQUESTS = REGISTRY.counter(
    "mailfold_requests_total",
    "Ingest requests by source and outcome; reason is the error code of a refusal.",
    ("source", "outcome", "reason"),
)
EVENTS = REGISTRY.counter(
    "mailfold_ingest_events_total",
    "Event API events accepted or refused at ingest, by reason.",
    ("source", "outcome", "reason"),
)
PRODUCE_SECONDS = REGISTRY.histogram(
    "mailfold_produce_seconds",
    "Time from handing a raw record to the producer to the broker's acknowledgement.",
    ("outcome",),
)
IN_FLIGHT = REGISTRY.gauge(
    "mailfold_produce_in_flight", "Raw records being produced right now (bounded by max_in_flight)."
)

REFUSALS_DROPPED = REGISTRY.counter(
    "mailfold_refusals_dropped_total",
    "Refused webhook requests not recorded for `mailfold refusals` (buffer full, database down).",
)

# Normalize.
NORMALIZED = REGISTRY.counter(
    "mailfold_normalized_events_total", "Canonical events derived from raw records.", ("source",)
)
DEAD_LETTERS = REGISTRY.counter(
    "mailfold_dead_letters_total",
    "Records set aside on the dead-letter topic, by the stage that could not read them.",
    ("stage", "source"),
)

# Fold.
FOLD_BATCH_SIZE = REGISTRY.histogram(
    "mailfold_fold_batch_records", "Records per fold transaction.", (), SIZE_BUCKETS
)
FOLD_SECONDS = REGISTRY.histogram(
    "mailfold_fold_batch_seconds", "Duration of one fold transaction (committed)."
)
FOLDED = REGISTRY.counter(
    "mailfold_folded_events_total", "Events folded for the first time (duplicates excluded)."
)
FOLD_RETRIES = REGISTRY.counter(
    "mailfold_fold_retries_total",
    "Database failures the fold waited out (its batch retried, nothing half committed).",
)

# Every consumer.
STUCK_SECONDS = REGISTRY.gauge(
    "mailfold_consumer_stuck_seconds",
    "How long a consumer has been retrying the same batch for the database or broker (0: moving).",
    ("group",),
)
PARKED = REGISTRY.counter(
    "mailfold_parked_total",
    "Records set aside after failing the same unexplained way several times in a row.",
    ("stage",),
)
PROGRESS = Progress()
CONSUMED = REGISTRY.counter(
    "mailfold_consumed_records_total", "Records read by a consumer.", ("group", "topic")
)
LAG = REGISTRY.gauge(
    "mailfold_consumer_lag",
    "Records between a consumer's position and the partition's end (see ..._lag_records).",
    ("group", "topic", "partition"),
)
LAG_RECORDS = REGISTRY.gauge(
    "mailfold_consumer_lag_records",
    "Records between a consumer's position and the partition's end.",
    ("group", "topic", "partition"),
)

# Replay.
REPLAY_RECORDS = REGISTRY.counter(
    "mailfold_replay_records_total", "Raw records re-derived by `mailfold replay`."
)
REPLAY_PROGRESS = REGISTRY.gauge(
    "mailfold_replay_progress_ratio", "Share of the replay's range done (0 to 1)."
)
