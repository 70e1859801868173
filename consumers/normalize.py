"""mailfold.raw -> provider adapter -> canonical events on mailfold.events, or mailfold.dlq.

Offsets are committed to the group only after every output of a batch is acknowledged, so a
crash re-reads at most one batch; the events it re-derives have the same ids and fold once.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from service import kafka, logs
from service.adapters import derive
from service.errors import ParseError, Unavailable
from service.events import encode
from service.raw import from_kafka
from service.settings import Settings

log = logging.getLogger("mailfold.normalize")
Output = tuple[str, bytes | None, bytes, kafka.Headers]


def dead_letter(settings: Settings, rec: kafka.Record, reason: str) -> Output:
    headers = [(k, v) for k, v in rec.headers.items()]
    headers += [
        ("dlq-reason", reason.encode()[:4000]),
        ("dlq-topic", rec.topic.encode()),
        ("dlq-partition", str(rec.partition).encode()),
        ("dlq-offset", str(rec.offset).encode()),
    ]
    return (settings.dlq_topic, rec.key, rec.value, headers)


def outputs_for(settings: Settings, rec: kafka.Record) -> list[Output]:
    """What one raw record becomes: its events, or one dead letter with the reason."""
    try:
        events = derive(from_kafka(rec.value, rec.headers))
        return [(settings.events_topic, e.key(), encode(e), []) for e in events]
    except (ParseError, KeyError, ValueError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, ParseError) else f"unreadable raw record: {exc!r}"
        log.warning(
            "dead letter: %s",
            reason,
            extra={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
        )
        return [dead_letter(settings, rec, reason)]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    producer = kafka.Producer(settings)
    consumer = kafka.Consumer(
        settings, settings.raw_topic, settings.normalize_group, max_records=500
    )
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            records = await consumer.batch(timeout_ms=500)
            if not records:
                continue
            outputs = [out for rec in records for out in outputs_for(settings, rec)]
            if not await send_until_acked(producer, outputs, stop):
                return  # stopping with the batch unacknowledged: not committed, re-read later
            offsets: dict[tuple[str, int], int] = {}
            for rec in records:
                offsets[(rec.topic, rec.partition)] = rec.offset + 1
            await consumer.commit(offsets)
            log.debug("normalized", extra={"count": len(records)})
    finally:
        await consumer.stop()
        await producer.stop()


async def send_until_acked(
    producer: kafka.Producer, outputs: list[Output], stop: asyncio.Event
) -> bool:
    delay = 0.2
    while True:
        try:
            await producer.send_many(outputs)
            return True
        except Unavailable as exc:
            log.warning("output not acknowledged, retrying: %s", exc)
            if stop.is_set():
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    asyncio.run(serve(settings))


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)


if __name__ == "__main__":
    main()
