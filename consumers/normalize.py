"""mailfold.raw -> provider adapter -> canonical events on mailfold.events, or mailfold.dlq.

Offsets are committed to the group only after every output of a batch is acknowledged, so a
crash re-reads at most one batch; the events it re-derives have the same ids and fold once.
On SIGTERM the batch in hand is finished (outputs acknowledged, offsets committed) or, if the
broker does not acknowledge it, abandoned whole: nothing is committed and it is read again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
import traceback

from service import kafka, logs, metrics
from service.adapters import SOURCES, derive
from service.errors import ParseError
from service.events import Event, encode
from service.raw import from_kafka
from service.settings import Settings

log = logging.getLogger("mailfold.normalize")
Output = kafka.Output
STAGE = "normalize"
LAG_EVERY_S = 5.0


def dead_letter(settings: Settings, rec: kafka.Record, reason: str) -> Output:
    """The record as read, plus why and where it came from (`mailfold dlq` reads these)."""
    headers = [(k, v) for k, v in rec.headers.items() if not k.startswith("dlq-")]
    headers += [
        ("dlq-reason", reason.encode()[:4000]),
        ("dlq-stage", STAGE.encode()),
        ("dlq-topic", rec.topic.encode()),
        ("dlq-partition", str(rec.partition).encode()),
        ("dlq-offset", str(rec.offset).encode()),
    ]
    return (settings.dlq_topic, rec.key, rec.value, headers)


def source_of(rec: kafka.Record) -> str:
    """The record's source for metric labels: a known adapter's name, else "unknown"."""
    source = rec.headers.get("source", b"").decode("utf-8", "replace")
    return source if source in SOURCES else "unknown"


def derive_record(rec: kafka.Record) -> list[Event]:
    """The canonical events of one raw record; ParseError, with the reason, if it is unreadable."""
    try:
        return derive(from_kafka(rec.value, rec.headers))
    except ParseError:
        raise
    except Exception as exc:  # unreadable headers or metadata: data, never a crash loop
        raise ParseError(f"unreadable raw record: {exc!r}") from exc


def encode_events(
    settings: Settings, events: list[Event], headers: list[tuple[str, bytes]] | None = None
) -> tuple[list[Output], list[str]]:
    """The outputs of the events, and why each one that cannot be encoded could not be.

    Every event was checked against the ledger's limits when it was made (`make_event`), so the
    ledger takes what encodes; an encoder failure here is a bug that must not stop the stream.
    """
    outputs: list[Output] = []
    refused: list[str] = []
    for index, event in enumerate(events):
        try:
            outputs.append((settings.events_topic, event.key(), encode(event), headers or []))
        except Exception as exc:
            refused.append(f"event {index} ({event.native_type!r}): {exc}")
    return outputs, refused


def carried(rec: kafka.Record) -> list[tuple[str, bytes]]:
    """Headers a raw record passes on to its events: the request id, so the fold's log lines
    can name the HTTP request an event came in."""
    rid = rec.headers.get("request-id")
    return [("request-id", rid)] if rid else []


def outputs_for(settings: Settings, rec: kafka.Record) -> list[Output]:
    """What one raw record becomes: its storable events, plus a dead letter with the reason when
    it cannot be read or some of its events cannot be stored (a replay after a fix re-derives
    the record whole; the events already folded are absorbed by their ids)."""
    outputs: list[Output] = []
    try:
        outputs, refused = encode_events(settings, derive_record(rec), carried(rec))
        reason = "cannot be stored: " + "; ".join(refused) if refused else ""
    except ParseError as exc:
        reason = str(exc)
    except Exception:  # a bug nobody has found yet: one record must not stop the stream
        reason = "normalizer failed: " + traceback.format_exc()
        metrics.PARKED.inc(stage=STAGE)
    if outputs:
        metrics.NORMALIZED.inc(len(outputs), source=source_of(rec))
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%d event(s) derived", len(outputs), extra=kafka.where(rec))
    if not reason:
        return outputs
    log.warning("dead letter: %s", reason.splitlines()[0][:500], extra=kafka.where(rec))
    metrics.DEAD_LETTERS.inc(stage=STAGE, source=source_of(rec))
    return [*outputs, dead_letter(settings, rec, reason)]


def next_offsets(records: list[kafka.Record]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for rec in records:
        key = (rec.topic, rec.partition)
        offsets[key] = max(offsets.get(key, 0), rec.offset + 1)
    return offsets


async def run(settings: Settings, stop: asyncio.Event) -> None:
    producer = kafka.Producer(settings)
    consumer = kafka.Consumer(
        settings, settings.raw_topic, settings.normalize_group, max_records=500
    )
    group = settings.normalize_group
    await producer.try_start()
    if not await consumer.start_when_reachable(stop):
        # Stopped before the broker answered: a start that failed still holds a client open.
        await consumer.stop()
        await producer.stop()
        return
    last_lag = 0.0
    try:
        while not stop.is_set():
            if time.monotonic() - last_lag > LAG_EVERY_S:
                await consumer.publish_lag()
                last_lag = time.monotonic()
            records = await consumer.batch(timeout_ms=500)
            if not records:
                continue
            metrics.CONSUMED.inc(len(records), group=group, topic=settings.raw_topic)
            outputs = [out for rec in records for out in outputs_for(settings, rec)]
            if not await producer.send_until_acked(outputs, stop, group):
                # Stopping with the batch unacknowledged: nothing committed, it is read again.
                log.warning("stopping; batch abandoned", extra=kafka.span(records))
                return
            await consumer.commit(next_offsets(records))
            log.debug("normalized", extra={**kafka.span(records), "count": len(outputs)})
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = await metrics.serve(settings.metrics_port, settings.metrics_host)
    # Start-up's objects live as long as the process: out of the collector's walks (see
    # service/server.py).
    gc.freeze()
    try:
        await run(settings, stop)
    finally:
        if listener is not None:
            listener.close()


if __name__ == "__main__":
    main()
