"""Publishes suppressions to Kafka (`mailfold.suppressions`) for the systems that send mail.

An outbox relay over the suppressions feed: read the rows after the stored position, produce
each keyed `account:email` and wait for the broker's acknowledgements, then store the new
position. A crash between the two publishes those rows again: at least once, never lost, in
feed order per address. A record is the address's current state, so a consumer applies it as an
upsert and a repeat changes nothing. Run one relay per relay name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import asyncpg
import orjson

from service import db, kafka, logs
from service.errors import Unavailable
from service.read.params import FEED_START
from service.read.recipients import iso
from service.read.suppressions import reason
from service.settings import Settings

log = logging.getLogger("mailfold.publish")

TOPIC = "mailfold.suppressions"
RELAY = "suppressions"
BATCH = 1000
IDLE_S = 1.0
SCHEMA_VERSION = 1


def record(row: Any) -> tuple[bytes, bytes]:
    """(key, value) of one suppression on the topic."""
    key = f"{row['account_id']}:{row['email']}".encode()
    value = {
        "version": SCHEMA_VERSION,
        "account": row["account_id"],
        "email": row["email"],
        "reason": reason(row["reason"]),
        "reasonAt": iso(row["reason_at"]),
        "firstAt": iso(row["first_at"]),
        "campaignId": row["campaign_id"],
        "deliveryId": row["delivery_id"],
        "updatedAt": iso(row["updated_at"]),
    }
    return key, orjson.dumps(value)


async def publish_once(
    conn: asyncpg.Connection[Any], producer: kafka.Producer, topic: str, name: str = RELAY
) -> int:
    """Publish the next batch after the stored position and store the new one; how many."""
    stored = await conn.fetchrow(db.QUERIES["load_feed_position"], name)
    xact, seq = (stored["feed_xact"], stored["feed_seq"]) if stored else FEED_START
    rows = await conn.fetch(db.QUERIES["relay_suppressions"], xact, seq, BATCH)
    if not rows:
        return 0
    await producer.send_many([(topic, *record(r), []) for r in rows])
    last = rows[-1]
    await conn.execute(db.QUERIES["store_feed_position"], name, last["feed_xact"], last["feed_seq"])
    return len(rows)


async def run(settings: Settings, stop: asyncio.Event, topic: str | None = None) -> None:
    """Publish until `stop` is set, waiting IDLE_S when there is nothing new."""
    topic = topic or settings.suppressions_topic
    await kafka.ensure_topics(settings, extra=[topic])
    producer = kafka.Producer(settings)
    conn = await db.connect(settings.database_url)
    try:
        while not stop.is_set():
            try:
                published = await publish_once(conn, producer, topic)
            except (Unavailable, OSError, asyncpg.PostgresConnectionError) as exc:
                log.warning("publishing suppressions failed, retrying: %r", exc)
                published = 0
                if conn.is_closed():
                    with contextlib.suppress(OSError, asyncpg.PostgresError):
                        conn = await db.connect(settings.database_url)
            if not published:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_S)
    finally:
        await producer.stop()
        await conn.close()


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
