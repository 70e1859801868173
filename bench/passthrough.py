"""The normalize baseline: the consumer/producer loop of consumers/normalize.py moving the same
records (the events the normalizer would produce, computed beforehand) with none of its logic.

    python -m bench.passthrough OUTPUTS.pickle     (settings from MAILFOLD_* as the normalizer)
"""

from __future__ import annotations

import asyncio
import pickle
import signal
import sys
from pathlib import Path

from service import kafka
from service.settings import Settings

Outputs = list[list[tuple[bytes, bytes]]]  # per raw record (header bench-seq): (key, value)


async def run(settings: Settings, table: Outputs, stop: asyncio.Event) -> None:
    producer = kafka.Producer(settings)
    consumer = kafka.Consumer(
        settings, settings.raw_topic, settings.normalize_group, max_records=500
    )
    await producer.try_start()
    if not await consumer.start_when_reachable(stop):
        await producer.stop()
        return
    topic = settings.events_topic
    try:
        while not stop.is_set():
            records = await consumer.batch(timeout_ms=500)
            if not records:
                continue
            outputs: list[tuple[str, bytes | None, bytes, kafka.Headers]] = [
                (topic, key, value, [])
                for rec in records
                for key, value in table[int(rec.headers["bench-seq"])]
            ]
            if not await producer.send_until_acked(outputs, stop):
                return
            offsets: dict[tuple[str, int], int] = {}
            for rec in records:
                offsets[(rec.topic, rec.partition)] = rec.offset + 1
            await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


async def serve(table: Outputs) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(Settings.from_env(), table, stop)


def main() -> None:
    table: Outputs = pickle.loads(Path(sys.argv[1]).read_bytes())
    asyncio.run(serve(table))


if __name__ == "__main__":
    main()
