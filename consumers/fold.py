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
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from service import db, kafka, logs, metrics
from service.audience import audience
from service.ledger import AT, COLUMNS, row_of, to_row  # noqa: F401 (to_row: tests)
from service.settings import Settings

log = logging.getLogger("mailfold.fold")

SWEEP_EVERY_S = 2.0
LAG_EVERY_S = 5.0
# The ledger's partitions ahead (mailfold_ensure_partitions): on start, then once a day.
PARTITIONS_EVERY_S = 24 * 3600.0
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
# SQLSTATE classes no record's content can cause: the database or its schema is not able to take
# any batch right now (connection 08, read-only after a failover 25, authentication 28, missing
# database or objects 3D/3F/42, serialization 40, resources such as disk full or too many
# connections 53, locks 55, query_canceled and shutdowns 57, I/O 58, configuration F0, internal
# XX). The batch waits and is retried whole; it is never split into dead letters.
INFRASTRUCTURE = frozenset(
    {"08", "25", "28", "3D", "3F", "40", "42", "53", "55", "57", "58", "F0", "XX"}
)
# A record whose failure nobody classified is tried this many times, alone, before it is parked.
PARK_AFTER = 3


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` says the database is unavailable, not that something in the batch is wrong."""
    if isinstance(exc, asyncpg.PostgresError):
        return isinstance(exc, RETRYABLE) or (exc.sqlstate or "")[:2] in INFRASTRUCTURE
    if isinstance(exc, ValueError):  # a value the client cannot encode (asyncpg's DataError too)
        return False
    return isinstance(exc, RETRYABLE)


def is_content(exc: BaseException) -> bool:
    """Whether `exc` is a record's own fault for certain: a value PostgreSQL or the driver refuses
    (data exceptions 22, constraints 23, limits such as an oversized index entry 54)."""
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in ("21", "22", "23", "54")
    return isinstance(exc, ValueError | TypeError | OverflowError)


def signature(exc: BaseException) -> str:
    """What makes two failures "the same way": the exception's type and message."""
    return f"{type(exc).__qualname__}: {exc}"


class NotTheRecords(Exception):
    """A failure that recurs without any record: the batch is retried whole after a pause."""


@dataclass(slots=True)
class Decoded:
    """A batch's readable records with their ledger rows, and the unreadable ones with why."""

    items: list[tuple[kafka.Record, tuple[Any, ...]]]
    poison: list[tuple[kafka.Record, str]] = field(default_factory=list)

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        return [row for _, row in self.items]

    @property
    def corrections(self) -> list[tuple[Any, ...]]:
        """The rows of replayed events, which may correct the ledger."""
        return [row for rec, row in self.items if rec.headers.get(kafka.REPLAY_HEADER)]


# What the fold stages per event: the ledger row and the audience of an open or click (its client
# and country), read here once so the ledger keeps them for the report builder.
STAGED = (*COLUMNS, "client", "country")
_TYPE, _AGENT, _IP = AT["type"], AT["user_agent"], AT["ip"]


def staged(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Ledger rows (COLUMNS order) with their audience appended (STAGED order)."""
    return [(*row, *audience(row[_TYPE], row[_AGENT], row[_IP])) for row in rows]


def next_offsets(records: list[kafka.Record]) -> dict[int, int]:
    """Per partition, the offset after the last record consumed."""
    offsets: dict[int, int] = {}
    for rec in records:
        offsets[rec.partition] = max(offsets.get(rec.partition, 0), rec.offset + 1)
    return offsets


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
            await conn.copy_records_to_table("incoming", records=staged(rows), columns=STAGED)
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
    await conn.copy_records_to_table("corrections", records=staged(corrections), columns=STAGED)
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
                self.retrying()
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
        out = Decoded([])
        for rec in records:
            try:
                out.items.append((rec, row_of(rec.value)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                out.poison.append((rec, f"undecodable event: {exc!r}"))
        return out

    async def fold_batch(self, records: list[kafka.Record], stop: asyncio.Event) -> None:
        """Fold a batch; what one record's content makes fail goes to the DLQ, the rest folds.

        Unavailability is waited out with the batch whole. Raises Abandoned, with nothing of the
        batch in hand committed, when `stop` is set while it waits for the database or broker.
        """
        self.stop = stop
        batch = self.decode_batch(records)
        if batch.poison:
            await self.set_aside(batch.poison)
        delay = 0.2
        while True:
            try:
                await self.fold_part(batch.items, records)
                break
            except NotTheRecords as exc:
                # Folding the same batch again is safe: the ledger absorbs what is already in.
                log.warning(
                    "fold failing without any record's fault, retrying the batch: %r",
                    exc.__cause__,
                    extra=kafka.span(records),
                )
                self.retrying()
                await self.drop_connection()
                await self.pause(delay)
                delay = min(delay * 2, 5.0)
        metrics.PROGRESS.moving(self.settings.fold_group)

    async def fold_part(
        self, items: list[tuple[kafka.Record, tuple[Any, ...]]], records: list[kafka.Record]
    ) -> None:
        """Commit `items` with the offsets of `records`; when something in them is refused,
        halve until the record is found, so the others fold and it alone is set aside."""
        try:
            await self.commit(Decoded(items), next_offsets(records), records)
            return
        except (Abandoned, NotTheRecords):
            raise
        except Exception as exc:
            failure = exc
        if len(items) <= 1:
            await self.settle(items, records, failure)
            return
        log.warning(
            "batch of %d refused (%r); halving it to find the record",
            len(items),
            failure,
            extra=kafka.span(records),
        )
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            await self.fold_part(half, [rec for rec, _ in half])
        # The offsets of records set aside before (unreadable ones) between the halves.
        await self.fold_part([], records)

    async def settle(
        self,
        items: list[tuple[kafka.Record, tuple[Any, ...]]],
        records: list[kafka.Record],
        failure: Exception,
    ) -> None:
        """One record failed alone: set it aside if the failure is its content's, else try it
        again a few times and park it if it keeps failing the same way."""
        if not items:
            raise NotTheRecords from failure
        rec = items[0][0]
        if is_content(failure):
            reason = f"refused by the ledger: {failure!r}"
        else:
            parked = await self.retry_alone(items, records, failure)
            if parked is None:
                return
            reason = f"parked after {PARK_AFTER} identical failures: " + "".join(
                traceback.format_exception(parked)
            )
            metrics.PARKED.inc(stage=STAGE)
        await self.set_aside([(rec, reason)])
        await self.commit(Decoded([]), next_offsets(records), records)

    async def retry_alone(
        self,
        items: list[tuple[kafka.Record, tuple[Any, ...]]],
        records: list[kafka.Record],
        failure: Exception,
    ) -> Exception | None:
        """Try one record nobody's rules blame until it folds (None) or fails the same way
        PARK_AFTER times in a row (that failure). Raises NotTheRecords when the transaction fails
        without the record too: then it is not the record's fault."""
        try:
            await self.commit(Decoded([]), {}, records)
        except (Abandoned, NotTheRecords):
            raise
        except Exception as exc:
            raise NotTheRecords from exc
        same, attempts = 1, 1
        while same < PARK_AFTER and attempts < 3 * PARK_AFTER:
            await self.pause(0.1 * 2**attempts)
            attempts += 1
            try:
                await self.commit(Decoded(items), next_offsets(records), records)
                return None
            except (Abandoned, NotTheRecords):
                raise
            except Exception as exc:
                same = same + 1 if signature(exc) == signature(failure) else 1
                failure = exc
        return failure

    def retrying(self) -> None:
        metrics.FOLD_RETRIES.inc()
        metrics.PROGRESS.retrying(self.settings.fold_group)

    async def set_aside(self, poison: list[tuple[kafka.Record, str]]) -> None:
        """Send unreadable or refused records to the dead-letter topic, waiting for the ack."""
        for rec, reason in poison:
            log.warning("dead letter: %s", reason.splitlines()[0], extra=kafka.where(rec))
        letters = [self.dead_letter(rec, reason) for rec, reason in poison]
        if not await self.producer.send_until_acked(letters, self.stop, self.settings.fold_group):
            raise Abandoned
        metrics.DEAD_LETTERS.inc(len(poison), stage=STAGE, source="events")

    async def commit(
        self, batch: Decoded, offsets: dict[int, int], records: list[kafka.Record]
    ) -> None:
        """Run one fold transaction, retrying it while the database is unavailable; any other
        failure is raised, for the caller to find the record behind it."""
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
            except Exception as exc:
                await self.drop_connection()  # never reuse a connection a failure interrupted
                if not is_transient(exc):
                    raise
                log.warning(
                    "fold transaction failed, retrying the batch: %r",
                    exc,
                    extra=kafka.span(records),
                )
                self.retrying()
                await self.pause(delay)
                delay = min(delay * 2, 5.0)
        metrics.PROGRESS.moving(self.settings.fold_group)
        self.folded += new
        metrics.FOLDED.inc(new)
        metrics.FOLD_BATCH_SIZE.observe(len(records))
        metrics.FOLD_SECONDS.observe(elapsed)
        log.debug(
            "folded %d new of %d in %.1f ms",
            new,
            len(batch.items),
            elapsed * 1000,
            extra={**kafka.span(records), "count": len(batch.items)},
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

    async def keep_partitions(self) -> None:
        """Make the ledger's yearly partitions ahead of their events; cheap when they are made."""
        try:
            async with self.session() as conn:
                made = await conn.fetchval("SELECT mailfold_ensure_partitions()")
        except (*RETRYABLE, asyncpg.PostgresError) as exc:
            log.warning("ledger partitions not checked (run `mailfold migrate`?): %r", exc)
            await self.drop_connection()
            return
        if made:
            log.info("ledger: %d yearly partitions made ahead", made)

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
        last_sweep = last_lag = last_partitions = time.monotonic()
        try:
            await self.keep_partitions()
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
                if time.monotonic() - last_partitions > PARTITIONS_EVERY_S:
                    await self.keep_partitions()
                    last_partitions = time.monotonic()
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
