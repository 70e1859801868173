"""mailfold.events -> PostgreSQL, one transaction per batch, exactly once in effect.

Each batch is copied into a staging table, new events enter the ledger (a duplicate stops
there), pending events whose message is now known are attributed, everything new is folded into
recipients, delivery and link counters, and the consumed offsets are stored, all in one
transaction. On start and on every rebalance the consumer seeks to the offsets stored here.
On SIGTERM the batch in hand commits, or, if it is waiting for PostgreSQL or the broker, is
abandoned whole and read again on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from service import db, kafka, logs, metrics
from service.events import SCHEMA_VERSION, Event, EventType, parse_amount, parse_time
from service.settings import Settings

log = logging.getLogger("mailfold.fold")

COLUMNS = (
    "event_id",
    "occurred_at",
    "account_id",
    "source",
    "type",
    "native_type",
    "campaign_id",
    "delivery_id",
    "message_id",
    "recipient_key",
    "email",
    "contact_id",
    "client_contact_id",
    "first_name",
    "surname",
    "bounce_class",
    "bounce_code",
    "bounce_reason",
    "url",
    "ip",
    "user_agent",
    "machine",
    "machine_reason",
    "agent_class",
    "ab_version",
    "amount",
    "currency",
    "name",
    "payload",
    "provider_event_id",
    "received_at",
)
SWEEP_EVERY_S = 2.0
LAG_EVERY_S = 5.0
STAGE = "fold"
# Errors after which the same batch is simply tried again on a fresh connection.
RETRYABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.UniqueViolationError,  # another fold committed some of the same events meanwhile
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InternalClientError,  # a connection left mid-statement
    TimeoutError,
)


@dataclass(slots=True)
class Decoded:
    """A batch's ledger rows, the rows of replayed events among them, and unreadable records."""

    rows: list[tuple[Any, ...]]
    corrections: list[tuple[Any, ...]]
    poison: list[tuple[kafka.Record, str]]


def next_offsets(records: list[kafka.Record]) -> dict[int, int]:
    """Per partition, the offset after the last record consumed."""
    offsets: dict[int, int] = {}
    for rec in records:
        offsets[rec.partition] = max(offsets.get(rec.partition, 0), rec.offset + 1)
    return offsets


def to_row(e: Event) -> tuple[Any, ...]:
    """One ledger row (COLUMNS order) for an event."""
    r, b, c = e.recipient, e.bounce, e.conversion
    return (
        e.event_id,
        e.occurred_at,
        e.account,
        e.source,
        e.type.value,
        e.native_type,
        e.campaign_id,
        e.delivery_id,
        e.message_id,
        r.key(),
        r.email,
        r.contact_id,
        r.client_contact_id,
        r.first_name,
        r.surname,
        b.bounce_class if b else None,
        b.code if b else None,
        b.reason if b else None,
        e.url,
        e.ip,
        e.user_agent,
        e.machine,
        e.machine_reason,
        e.agent_class,
        e.ab_version,
        c.amount if c else None,
        c.currency if c else None,
        e.name,
        e.payload,
        e.provider_event_id,
        e.received_at,
    )


def row_of(data: bytes) -> tuple[Any, ...]:
    """`to_row(decode(data))`, read straight from the record's JSON without building the Event.

    Decoding was a third of the fold consumer's CPU, most of it in building frozen dataclasses
    that live for one line; this refuses exactly what `decode` refuses (checked by
    tests/test_fold_rows.py), and an event without a recipient besides.
    """
    raw = orjson.loads(data)
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {raw.get('schema_version')!r}")
    get = raw.get
    rcpt = raw["recipient"]
    email, contact = rcpt.get("email"), rcpt.get("contact_id")
    client_contact = rcpt.get("client_contact_id")
    key = email or contact or client_contact
    if not key:
        raise ValueError("event has no recipient (email or contact id)")
    bounce = get("bounce")
    conversion = get("conversion")
    received = get("received_at")
    return (
        raw["event_id"],
        parse_time(raw["occurred_at"]),
        raw["account"],
        raw["source"],
        EventType(raw["type"]).value,
        raw["native_type"],
        get("campaign_id"),
        get("delivery_id"),
        get("message_id"),
        key,
        email,
        contact,
        client_contact,
        rcpt.get("first_name"),
        rcpt.get("surname"),
        bounce.get("class") if bounce else None,
        bounce.get("code") if bounce else None,
        bounce.get("reason") if bounce else None,
        get("url"),
        get("ip"),
        get("user_agent"),
        get("machine"),
        get("machine_reason"),
        get("agent_class"),
        get("ab_version"),
        parse_amount(conversion["amount"]) if conversion else None,
        conversion.get("currency") if conversion else None,
        get("name"),
        get("payload"),
        get("provider_event_id"),
        parse_time(received) if received else None,
    )


async def fold_rows(
    conn: asyncpg.Connection[Any],
    rows: list[tuple[Any, ...]],
    group: str,
    topic: str,
    offsets: dict[int, int],
    corrections: list[tuple[Any, ...]] | None = None,
) -> int:
    """Fold one batch and store its offsets in one transaction; returns how many events were
    folded. `corrections` are the rows of replayed events (also in `rows`): where one differs from
    its ledger row, the ledger is corrected and its recipient folded again."""
    async with conn.transaction():
        refolded = await correct(conn, corrections) if corrections else 0
        if rows:
            await conn.copy_records_to_table("incoming", records=rows, columns=COLUMNS)
            await conn.execute(db.QUERIES["insert_new_events"])
        await conn.execute(db.QUERIES["resolve_pending"])
        folded: int = await conn.fetchval(db.QUERIES["fold_fresh"]) - refolded
        await conn.execute(db.QUERIES["mark_click_bursts"])
        await conn.execute(db.QUERIES["mark_too_fast"])
        await conn.execute(db.QUERIES["count_marked"])
        await conn.execute(db.QUERIES["upsert_suppressions"])
        if offsets:
            parts = sorted(offsets)
            await conn.execute(
                db.QUERIES["store_offsets"], group, topic, parts, [offsets[p] for p in parts]
            )
    return folded


async def correct(conn: asyncpg.Connection[Any], corrections: list[tuple[Any, ...]]) -> int:
    """Correct the ledger from replayed events and stage their recipients to be folded again;
    returns how many events were staged again."""
    await conn.copy_records_to_table("corrections", records=corrections, columns=COLUMNS)
    await conn.execute(db.QUERIES["find_corrections"])
    await conn.execute(db.QUERIES["unfold_affected"])
    await conn.execute(db.QUERIES["restore_own_verdicts"])
    await conn.execute(db.QUERIES["apply_corrections"])
    status: str = await conn.execute(db.QUERIES["refold_affected"])  # "INSERT 0 <rows>"
    return int(status.rsplit(" ", 1)[1])


async def prepare(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute(db.QUERIES["create_fold_staging"])
    await conn.execute(db.QUERIES["create_replay_staging"])


class Abandoned(Exception):
    """Stopping while a batch waits for the database: it is dropped whole, nothing committed."""


class Fold:
    """The fold consumer: `run` loops until `stop` is set, one transaction per batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: asyncpg.Connection[Any] | None = None
        self.producer = kafka.Producer(settings)  # for dead letters only
        self.consumer = kafka.Consumer(
            settings,
            settings.events_topic,
            settings.fold_group,
            on_assign=self.seek_to_stored,
            max_records=settings.fold_batch_size,
        )
        self.folded = 0
        # Set by `run`'s caller on SIGTERM; every wait for the database gives up when it is set.
        self.stop = asyncio.Event()
        # The rebalance listener runs beside the loop; both use the one connection in turn.
        self.lock = asyncio.Lock()

    async def connection(self) -> asyncpg.Connection[Any]:
        """The fold's own connection, reopened (waiting for PostgreSQL) after any failure."""
        delay = 0.2
        while self.conn is None or self.conn.is_closed():
            try:
                conn = await db.connect(self.settings.database_url)
                await prepare(conn)
                self.conn = conn
            except (*RETRYABLE, asyncpg.PostgresError) as exc:
                log.warning("waiting for PostgreSQL: %r", exc)
                metrics.FOLD_RETRIES.inc()
                await self.pause(delay)
                delay = min(delay * 2, 5.0)
        return self.conn

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        """The connection, under the lock. One whose statement was interrupted (the rebalance
        listener is cancelled when a rebalance starts over) is discarded, not reused mid-protocol.
        """
        async with self.lock:
            conn = await self.connection()
            try:
                yield conn
            except asyncio.CancelledError:
                await self.drop_connection()
                raise

    async def pause(self, seconds: float) -> None:
        """Back off before a retry; raise Abandoned if the fold is told to stop meanwhile."""
        if await kafka.stopped_within(self.stop, seconds):
            raise Abandoned

    async def drop_connection(self) -> None:
        if self.conn is not None:
            self.conn.terminate()
        self.conn = None

    async def seek_to_stored(self, partitions: set[tuple[str, int]]) -> None:
        """On assignment, continue from the offsets committed with the folded data."""
        if not partitions:
            return
        delay = 0.2
        while True:
            try:
                async with self.session() as conn:
                    stored = dict(
                        (r["partition"], r["next_offset"])
                        for r in await conn.fetch(
                            db.QUERIES["load_offsets"],
                            self.settings.fold_group,
                            self.settings.events_topic,
                            sorted(p for _, p in partitions),
                        )
                    )
                break
            except RETRYABLE as exc:
                log.warning("loading offsets failed, retrying: %r", exc)
                await self.drop_connection()
                try:
                    await self.pause(delay)
                except Abandoned:
                    return
                delay = min(delay * 2, 5.0)
            except Abandoned:
                # Stopping: whatever is read from here on is abandoned before it commits.
                return
        unstored = set()
        for topic, partition in partitions:
            if partition in stored:
                self.consumer.seek(topic, partition, stored[partition])
            else:
                unstored.add((topic, partition))
        await self.consumer.seek_to_committed_or_beginning(unstored)
        log.info("assigned %s", sorted(p for _, p in partitions), extra=self.where(partitions))

    def where(self, partitions: set[tuple[str, int]]) -> dict[str, Any]:
        return {"topic": self.settings.events_topic, "partition": sorted(p for _, p in partitions)}

    def decode_batch(self, records: list[kafka.Record]) -> Decoded:
        out = Decoded([], [], [])
        for rec in records:
            try:
                row = row_of(rec.value)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                out.poison.append((rec, f"undecodable event: {exc!r}"))
                continue
            out.rows.append(row)
            if rec.headers.get(kafka.REPLAY_HEADER):
                out.corrections.append(row)
        return out

    async def fold_batch(self, records: list[kafka.Record], stop: asyncio.Event) -> None:
        """Fold a batch as one transaction; a record the database refuses goes to the DLQ.

        Raises Abandoned, with nothing committed, when `stop` is set while the batch waits for
        the database or the broker; the batch is read again on the next start.
        """
        self.stop = stop
        batch = self.decode_batch(records)
        if batch.poison:
            await self.set_aside(batch.poison)
        try:
            await self.commit(batch, next_offsets(records), records)
        except asyncpg.PostgresError as exc:
            # Not a transient failure: something in the batch is refused. Fold record by record
            # so only the offending ones are set aside.
            log.warning(
                "batch refused (%r); folding it record by record", exc, extra=kafka.span(records)
            )
            for rec in records:
                one = self.decode_batch([rec])
                try:
                    await self.commit(one, next_offsets([rec]), [rec])
                except asyncpg.PostgresError as exc:
                    await self.set_aside([(rec, f"refused: {exc!r}")])
                    await self.commit(Decoded([], [], []), next_offsets([rec]), [rec])

    async def set_aside(self, poison: list[tuple[kafka.Record, str]]) -> None:
        """Send unreadable or refused records to the dead-letter topic, waiting for the ack."""
        for rec, reason in poison:
            log.warning(
                "dead letter: %s",
                reason,
                extra={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
            )
        letters = [self.dead_letter(rec, reason) for rec, reason in poison]
        if not await self.producer.send_until_acked(letters, self.stop):
            raise Abandoned
        metrics.DEAD_LETTERS.inc(len(poison), stage=STAGE, source="events")

    async def commit(
        self, batch: Decoded, offsets: dict[int, int], records: list[kafka.Record]
    ) -> None:
        """Run one fold transaction, retrying it after connection failures until it commits."""
        delay = 0.2
        while True:
            try:
                async with self.session() as conn:
                    started = time.perf_counter()
                    new = await fold_rows(
                        conn,
                        batch.rows,
                        self.settings.fold_group,
                        self.settings.events_topic,
                        offsets,
                        batch.corrections,
                    )
                elapsed = time.perf_counter() - started
                break
            except RETRYABLE as exc:
                log.warning(
                    "fold transaction failed, retrying the batch: %r",
                    exc,
                    extra=kafka.span(records),
                )
                metrics.FOLD_RETRIES.inc()
                await self.drop_connection()
                await self.pause(delay)
                delay = min(delay * 2, 5.0)
        self.folded += new
        metrics.FOLDED.inc(new)
        metrics.FOLD_BATCH_SIZE.observe(len(records))
        metrics.FOLD_SECONDS.observe(elapsed)
        log.debug(
            "folded %d new of %d in %.1f ms",
            new,
            len(batch.rows),
            elapsed * 1000,
            extra={**kafka.span(records), "count": len(batch.rows)},
        )

    def dead_letter(
        self, rec: kafka.Record, reason: str
    ) -> tuple[str, bytes | None, bytes, kafka.Headers]:
        headers = [(k, v) for k, v in rec.headers.items() if not k.startswith("dlq-")]
        headers += [
            ("dlq-reason", reason.encode()[:4000]),
            ("dlq-stage", STAGE.encode()),
            ("dlq-topic", rec.topic.encode()),
            ("dlq-partition", str(rec.partition).encode()),
            ("dlq-offset", str(rec.offset).encode()),
        ]
        return (self.settings.dlq_topic, rec.key, rec.value, headers)

    async def sweep(self) -> None:
        """Attribute pending events whose mapping another process committed (no offsets move)."""
        try:
            async with self.session() as conn:
                await fold_rows(conn, [], self.settings.fold_group, self.settings.events_topic, {})
        except RETRYABLE as exc:
            log.warning("sweep failed: %r", exc)
            metrics.FOLD_RETRIES.inc()
            await self.drop_connection()

    async def run(self, stop: asyncio.Event) -> None:
        """Fold batches until `stop`; the batch in hand is committed whole or abandoned whole."""
        self.stop = stop
        try:
            await self.connection()
        except Abandoned:
            return
        await self.producer.try_start()
        if not await self.consumer.start_when_reachable(stop):
            await self.close()
            return
        last_sweep = last_lag = time.monotonic()
        try:
            while not stop.is_set():
                records = await self.consumer.batch(timeout_ms=self.settings.fold_batch_wait_ms)
                if records:
                    metrics.CONSUMED.inc(
                        len(records), group=self.settings.fold_group, topic=records[0].topic
                    )
                    await self.fold_batch(records, stop)
                elif time.monotonic() - last_sweep > SWEEP_EVERY_S:
                    await self.sweep()
                    last_sweep = time.monotonic()
                if time.monotonic() - last_lag > LAG_EVERY_S:
                    await self.consumer.publish_lag()
                    last_lag = time.monotonic()
        except Abandoned:
            log.warning("stopping; batch abandoned, nothing of it committed")
        finally:
            await self.close()

    async def close(self) -> None:
        # Leaving the group hands the partitions over at once instead of after the session
        # timeout; bounded, so a broker that is down does not hold the exit.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.consumer.stop(), 10)
        with contextlib.suppress(Exception):
            await self.producer.stop()  # bounded by the produce timeout
        if self.conn is not None:
            try:
                await asyncio.wait_for(self.conn.close(), 5)
            except Exception:
                self.conn.terminate()
            self.conn = None


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = await metrics.serve(settings.metrics_port)
    try:
        await Fold(settings).run(stop)
    finally:
        if listener is not None:
            listener.close()


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
