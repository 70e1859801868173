"""Prometheus metrics without a dependency: counters, gauges and histograms with labels, the text
exposition format (version 0.0.4), and a tiny listener for the consumer processes.

Every metric Mailfold exports is declared at the bottom of this module, so the list of names and
labels lives in one place. Label values must come from small closed sets (sources, outcomes,
error codes, partitions), never from request data, or the registry grows without bound.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import orjson

log = logging.getLogger("mailfold.metrics")

# A consumer retrying the same batch for longer than this is stuck: /readyz answers 503.
STUCK_AFTER_S = 30.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from sub-millisecond acks to the 10 s produce timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000)
LabelValues = tuple[str, ...]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metric:
    """One metric family: a name, a help line and a fixed tuple of label names."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self._lock = threading.Lock()
        self._keys: dict[tuple[tuple[str, object], ...], LabelValues] = {}

    def key(self, labels: Mapping[str, object]) -> LabelValues:
        # Label values come from small closed sets (see above), so each combination is checked
        # and converted once, then looked up: this runs several times per ingest request.
        given = tuple(labels.items())
        key = self._keys.get(given)
        if key is None:
            if set(labels) != set(self.labels):
                raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
            key = self._keys[given] = tuple(str(labels[name]) for name in self.labels)
        return key

    def label_text(self, values: LabelValues, extra: str = "") -> str:
        pairs = [f'{n}="{escape(v)}"' for n, v in zip(self.labels, values, strict=True)]
        if extra:
            pairs.append(extra)
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def samples(self) -> Iterator[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {escape(self.help)}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(Metric):
    """A value that only goes up (restarts reset it; Prometheus' rate() copes)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self.key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        return self._values.get(self.key(labels), 0.0)

    def samples(self) -> Iterator[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{self.label_text(key)} {number(value)}"


class Gauge(Metric):
    """A value that goes up and down (lag, in-flight requests, progress)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}

    def set(self, value: float, **labels: object) -> None:
        key = self.key(labels)
        with self._lock:
            self._values[key] = value

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        key = self.key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: object) -> None:
        self.inc(-amount, **labels)

    def remove(self, **labels: object) -> None:
        """Drop one labelled series (a partition this process no longer reads)."""
        with self._lock:
            self._values.pop(self.key(labels), None)

    def value(self, **labels: object) -> float:
        return self._values.get(self.key(labels), 0.0)

    def samples(self) -> Iterator[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{self.label_text(key)} {number(value)}"


class Histogram(Metric):
    """Observations counted into cumulative `le` buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        self.buckets = (*sorted(buckets), math.inf)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, **labels: object) -> None:
        key = self.key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            if value <= math.inf:  # NaN is counted nowhere
                counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: object) -> int:
        return sum(self._counts.get(self.key(labels), []))

    def samples(self) -> Iterator[str]:
        for key, counts in sorted(self._counts.items()):
            running = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                running += n
                le = f'le="{number(bound)}"'
                yield f"{self.name}_bucket{self.label_text(key, le)} {running}"
            yield f"{self.name}_sum{self.label_text(key)} {number(self._sums[key])}"
            yield f"{self.name}_count{self.label_text(key)} {running}"


class Registry:
    """The metrics of one process, rendered in declaration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def add(self, metric: Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help, labels)
        self.add(metric)
        return metric

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help, labels)
        self.add(metric)
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        metric = Histogram(name, help, labels, buckets)
        self.add(metric)
        return metric

    def render(self) -> str:
        return "".join(m.render() for m in self._metrics.values())


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
    parked = {key[0]: int(v) for key, v in PARKED._values.items()}
    return {"ready": not stuck, "stuck_seconds": stuck, "parked": parked}


async def serve(port: int, host: str = "127.0.0.1") -> asyncio.Server | None:
    """Serve GET /metrics and GET /readyz on `host:port` beside a consumer's loop; None when
    `port` is 0."""
    if not port:
        return None
    server = await asyncio.start_server(_answer, host, port)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server


REGISTRY = Registry()

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
