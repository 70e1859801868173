"""Everything Mailfold says to Kafka; the only module that imports aiokafka.

The producer waits for acks=all with idempotence on, so a 2xx is only ever answered for a record
the broker has. Consumers never auto-commit: normalize commits after its output is acknowledged,
fold stores its offsets in PostgreSQL. `Reader` reads a topic outside any group, for the tools
(replay, the dead-letter queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from service import metrics
from service.errors import TooLarge, Unavailable
from service.settings import Settings

log = logging.getLogger("mailfold.kafka")
# What the broker client raises when it cannot reach the cluster, for callers that report it
# (the `mailfold` command) without importing aiokafka themselves.
BROKER_ERRORS: tuple[type[Exception], ...] = (KafkaError,)

# Room for SendGrid's ~768 KB batches (which can run over) plus headers; the consumers fetch up
# to this per partition (Settings.max_record_bytes bounds what the producer writes).
MAX_RECORD_BYTES = 4 * 1024 * 1024
# A topic whose max.message.bytes could not be read is asked again after this many seconds.
LIMIT_RETRY_S = 10.0
# What the broker answers for a record batch over the topic's max.message.bytes.
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)
# Record batches of up to this size per partition (aiokafka's default is 16 kB): the
# normalizer's output of one raw batch (1,000 events of about 700 bytes over the partitions)
# goes in one batch per partition, not dozens. A raw webhook body stays alone in its batch.
MAX_BATCH_BYTES = 256 * 1024
# aiokafka logs the same connection error for every retry, thousands a second while the broker
# is down; each distinct message passes once per this many seconds, with the count held back.
REPEAT_WINDOW_S = 10.0
Headers = list[tuple[str, bytes]]
# Set on events `mailfold replay` re-derives: the fold corrects the ledger where they differ.
REPLAY_HEADER = "replay"
# A record to produce: (topic, key, value, headers).
Output = tuple[str, bytes | None, bytes, Headers]


class Repeats(logging.Filter):
    """Lets a message template through once per window, noting how many were held back."""

    def __init__(self, window: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window = window
        self.seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        first, held = self.seen.get(key, (0.0, 0))
        if now - first < self.window:
            self.seen[key] = (first, held + 1)
            return False
        if len(self.seen) > 1000:
            self.seen.clear()
        self.seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this held back)"
        return True


def quiet_repeats() -> None:
    """Put the filter on every aiokafka logger (a logger's filters do not reach its children)."""
    repeats = Repeats()
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "aiokafka"]
    for name in {"aiokafka", *names}:
        logging.getLogger(name).addFilter(repeats)


quiet_repeats()


_MURMUR_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Java client `Utils.murmur2`, also aiokafka's) over whole 32-bit words,
    several times faster than aiokafka's byte-by-byte version; tests check they agree."""
    length = len(data)
    h = 0x9747B28C ^ length
    end = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:end]):
        k = (k * _MURMUR_M) & _MASK
        k ^= k >> 24
        h = ((h * _MURMUR_M) & _MASK) ^ ((k * _MURMUR_M) & _MASK)
    tail = length & 3
    if tail:
        h ^= int.from_bytes(data[end:], "little")
        h = (h * _MURMUR_M) & _MASK
    h ^= h >> 13
    h = (h * _MURMUR_M) & _MASK
    h ^= h >> 15
    return h


class Partitioner:
    """aiokafka's DefaultPartitioner (the Java client's for keyed records: murmur2 of the key,
    so a key keeps its partition) with a faster hash, remembered per key: a recipient's events
    share their key."""

    def __init__(self) -> None:
        self._known: dict[bytes, tuple[int, int]] = {}  # key -> (partition count, partition)

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        count = len(all_partitions)
        known = self._known.get(key)
        if known is not None and known[0] == count:
            return all_partitions[known[1]]
        if len(self._known) >= 100_000:
            self._known.clear()
        index = (murmur2(key) & 0x7FFFFFFF) % count
        self._known[key] = (count, index)
        return all_partitions[index]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record, decoupled from aiokafka's type."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int


async def cluster_answers(bootstrap: str, timeout: float) -> None:
    """Raise unless the cluster answers a metadata request within `timeout` seconds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.describe_cluster(), timeout)
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, extra: Iterable[str] = ()) -> None:
    """Create the raw, events and dead-letter topics if they do not exist yet."""
    names = [settings.raw_topic, settings.events_topic, settings.dlq_topic, *extra]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=1,
                topic_configs={"max.message.bytes": str(settings.max_record_bytes)},
            )
            for name in names
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


async def topic_limit(bootstrap: str, topic: str, timeout: float) -> int | None:
    """The topic's max.message.bytes (its own or the broker's); None when it cannot be read."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})
        (response,) = await asyncio.wait_for(admin.describe_configs([resource]), timeout)
        for error_code, message, _, _, entries in response.resources:
            if error_code != 0:
                log.warning("max.message.bytes of %s unknown: %s (%d)", topic, message, error_code)
            for entry in entries if error_code == 0 else ():
                if entry[0] == "max.message.bytes":
                    return int(entry[1])
    except (KafkaError, TimeoutError, OSError, ValueError) as exc:
        log.warning("max.message.bytes of %s unknown: %r", topic, exc)
    finally:
        await admin.close()
    return None


class Producer:
    """An idempotent acks=all producer whose `send` returns only once the broker has the record.

    After a send fails, the underlying producer is replaced: an idempotent producer that gave up
    on a record keeps its sequence numbers, and the broker then refuses every later record of it
    (OutOfOrderSequenceNumber) until the process restarts. A fresh producer gets a fresh id.

    A record larger than its topic takes is refused here with TooLarge (413), before it reaches
    the producer, which goes on serving everyone else.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._starting = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._partitioner = Partitioner()
        # topic -> (the largest record batch it takes, until when that is believed)
        self._limits: dict[str, tuple[int, float]] = {}
        self._asking = asyncio.Lock()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=self._settings.max_record_bytes,
            request_timeout_ms=int(self._settings.produce_timeout_s * 1000),
            linger_ms=2,
            compression_type=None,
            max_batch_size=MAX_BATCH_BYTES,
            partitioner=self._partitioner,
        )

    async def start(self) -> None:
        """Connect; while the broker is down, `send` retries this and answers 503 meanwhile."""
        async with self._starting:
            if self._started:
                return
            producer = self._new_producer()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # release its connections; a later send tries afresh
                raise
            self._producer = producer
            self._started = True

    async def try_start(self) -> bool:
        try:
            await self.start()
        except KafkaError as exc:
            log.warning("producer cannot reach the broker yet: %r", exc)
            return False
        return True

    async def stop(self) -> None:
        """Flush what is in flight (bounded by the produce timeout) and close."""
        if self._started and self._producer is not None:
            self._started = False
            await self._close(self._producer)
        self._producer = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _close(self, producer: AIOKafkaProducer) -> None:
        """Stop a producer; what it cannot flush in time is failed, then it stops.

        An idempotent aiokafka producer never expires a record, so flushing to a broker that is
        down would wait forever. Records failed here were answered 503 already.
        """
        wait = self._settings.produce_timeout_s + 5
        stopping = asyncio.ensure_future(producer.stop())
        try:
            await asyncio.wait_for(asyncio.shield(stopping), wait)
            return
        except TimeoutError:
            log.warning("producer did not flush within %.0fs; dropping what it holds", wait)
        producer._message_accumulator.fail_all(KafkaError("producer closed before delivery"))
        # In-flight requests still end at their own timeout; then the producer is stopped.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stopping, wait)
        # A stop cut short never reaches its last step, closing the client's connections, and a
        # request in flight may have opened one meanwhile: close them here.
        with contextlib.suppress(Exception):
            await producer.client.close()

    def _replace(self, broken: AIOKafkaProducer) -> None:
        """Retire a producer a send failed on; the next send starts a fresh one."""
        if broken is not self._producer:
            return  # another failed send retired it already
        self._producer = None
        self._started = False
        task = asyncio.create_task(self._close(broken))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _ready(self) -> AIOKafkaProducer:
        if not self._started and not await self.try_start():
            raise Unavailable("event broker unreachable", retry_after=self._settings.retry_after_s)
        return self._live()

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers | None = None
    ) -> None:
        """Produce and wait for the acknowledgement; Unavailable when the broker does not ack.

        A record answered with Unavailable may still be written later (the retry it prompts
        deduplicates by event id).
        """
        # One record joins the batch its partition is filling: concurrent requests share it.
        producer = await self._ready()
        headers = headers or []
        await self._check_size(topic, key, value, headers)
        try:
            ack = await producer.send(topic, value, key=key, headers=headers)
        except MessageSizeTooLargeError as exc:  # refused before it joined a batch
            raise TooLarge(f"record exceeds max_record_bytes: {exc}") from exc
        except (KafkaError, TimeoutError) as exc:
            self._failed(producer, exc)
        try:
            async with asyncio.timeout(self._settings.produce_timeout_s + 5):
                await ack
        except TOO_LARGE as exc:
            # The topic's limit fell below what we knew. aiokafka has spent the refused batch's
            # sequence numbers, so this producer's next record to the partition would be refused
            # as out of order: retire it, and ask the topic's limit afresh.
            self._limits.pop(topic, None)
            self._replace(producer)
            raise TooLarge(f"the broker refused the record as too large for {topic}") from exc
        except (KafkaError, TimeoutError) as exc:
            self._failed(producer, exc)

    async def _check_size(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers
    ) -> None:
        """Raise TooLarge for a record its topic would refuse (its size as a batch of its own)."""
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        limit = await self._limit(topic)
        if size > limit:
            raise TooLarge(
                f"record of {size} bytes (body and headers) exceeds the {limit} bytes {topic} takes"
            )

    async def _limit(self, topic: str) -> int:
        """The smaller of max_record_bytes and the topic's max.message.bytes, asked once (and
        again LIMIT_RETRY_S later when the broker would not tell)."""
        known = self._limits.get(topic)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        async with self._asking:
            known = self._limits.get(topic)
            if known is None or known[1] <= time.monotonic():
                s = self._settings
                found = await topic_limit(s.kafka_bootstrap, topic, s.produce_timeout_s)
                until = time.monotonic() + (LIMIT_RETRY_S if found is None else math.inf)
                known = self._limits[topic] = (
                    min(s.max_record_bytes, found or s.max_record_bytes),
                    until,
                )
        return known[0]

    async def send_many(self, items: Sequence[Output]) -> None:
        """Produce (topic, key, value, headers) records and wait until all are acknowledged.

        The records are laid into record batches per partition here, in order, and each batch is
        handed over whole: aiokafka's per-record path (a future, a metadata check and an append
        per record) costs more than the rest of a pass-through.
        """
        producer = await self._ready()
        try:
            acks = [
                await producer.send_batch(batch, topic, partition=partition)
                for (topic, partition), batch in await self._batches(producer, items)
            ]
            # One deadline for all; awaiting each in turn is gather without its extra futures.
            async with asyncio.timeout(self._settings.produce_timeout_s + 5):
                for ack in acks:
                    await ack
        except (KafkaError, TimeoutError) as exc:
            self._failed(producer, exc)
        except AssertionError as exc:
            # send_batch asserts that the partition is in the topic's metadata, which a broker
            # restart can empty between our look-up and the hand-over: retried like an outage.
            self._failed(producer, exc)

    async def _batches(
        self, producer: AIOKafkaProducer, items: Sequence[Output]
    ) -> list[tuple[tuple[str, int], Any]]:
        """Record batches of `items`, by partition as `send` would choose it, in order."""
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        filling: dict[tuple[str, int], Any] = {}
        done: list[tuple[tuple[str, int], Any]] = []
        for topic, key, value, headers in items:
            if topic not in partitions:
                every = sorted(await producer.partitions_for(topic))
                if not every:
                    raise KafkaError(f"no partitions known for {topic}")
                up = producer.client.cluster.available_partitions_for_topic(topic)
                partitions[topic] = (every, list(up or ()))
            where = (topic, self._partitioner(key, *partitions[topic]))
            batch = filling.get(where)
            if batch is None:
                batch = filling[where] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                done.append((where, batch))  # full: hand it over, start the next one
                batch = filling[where] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        return done + list(filling.items())

    def _failed(self, producer: AIOKafkaProducer, exc: Exception) -> NoReturn:
        self._replace(producer)
        raise Unavailable(
            f"event broker did not acknowledge: {type(exc).__name__}",
            retry_after=self._settings.retry_after_s,
        ) from exc

    async def send_until_acked(
        self, items: Sequence[Output], stop: asyncio.Event, group: str | None = None
    ) -> bool:
        """`send_many`, retried with backoff until acknowledged (True) or `stop` is set (False).

        A retry may produce some records twice; their readers deduplicate (events by event_id).
        While it retries, consumer `group` is reported as retrying (stuck, past a while).
        """
        delay = 0.2
        while True:
            try:
                await self.send_many(items)
                if group is not None:
                    metrics.PROGRESS.moving(group)
                return True
            except Unavailable as exc:
                log.warning("output not acknowledged, retrying: %s", exc.message)
                if group is not None:
                    metrics.PROGRESS.retrying(group)
            if await stopped_within(stop, delay):
                return False
            delay = min(delay * 2, 5.0)

    async def partitions_for(self, topic: str) -> set[int]:
        return set(await self._live().partitions_for(topic))

    def _live(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise Unavailable("event broker unreachable", retry_after=self._settings.retry_after_s)
        return self._producer


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`, waking early when `stop` is set; True if it is."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def to_record(r: Any) -> Record:
    return Record(
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
        key=r.key,
        value=r.value if r.value is not None else b"",
        # A header may be sent without a value; readers expect bytes.
        headers={k: v if v is not None else b"" for k, v in r.headers},
        timestamp_ms=r.timestamp,
    )


def where(rec: Record) -> dict[str, Any]:
    """Log context for one record: its topic, partition, offset and the request id it carries
    (`request-id` header: set by ingest on mailfold.raw, copied by the normalizer)."""
    rid = rec.headers.get("request-id")
    context: dict[str, Any] = {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset}
    if rid:
        context["request_id"] = rid.decode("utf-8", "replace")
    return context


def span(records: Sequence[Record]) -> dict[str, Any]:
    """Log context for a batch: its topic, partitions and offset range per partition."""
    ranges: dict[int, list[int]] = {}
    for rec in records:
        low, high = ranges.setdefault(rec.partition, [rec.offset, rec.offset])
        ranges[rec.partition] = [min(low, rec.offset), max(high, rec.offset)]
    topic = records[0].topic if records else None
    if len(ranges) == 1:
        ((partition, (low, high)),) = ranges.items()
        return {"topic": topic, "partition": partition, "offset": f"{low}-{high}"}
    parts = sorted(ranges)
    offsets = " ".join(f"{p}:{ranges[p][0]}-{ranges[p][1]}" for p in parts)
    return {"topic": topic, "partition": parts, "offset": offsets}


OnAssign = Callable[[set[tuple[str, int]]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assign: OnAssign | None, on_revoke: OnAssign | None) -> None:
        self._on_assign = on_assign
        self._on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self._on_revoke:
            await self._on_revoke({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._on_assign:
            await self._on_assign({(tp.topic, tp.partition) for tp in assigned})


class Consumer:
    """A group consumer with manual offsets, handing out batches of `Record`s."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group: str,
        *,
        on_assign: OnAssign | None = None,
        on_revoke: OnAssign | None = None,
        max_records: int = 2000,
    ) -> None:
        self._topic = topic
        self._group = group
        self._lagging: set[tuple[str, int]] = set()  # partitions with a published lag
        self._max_records = max_records
        self._listener = _Listener(on_assign, on_revoke)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
            fetch_max_bytes=4 * MAX_RECORD_BYTES,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            # A group formed while a restarting broker still lacked the topic's partition leaders
            # assigns nothing, and only the next metadata refresh notices the partitions and
            # rejoins. Refresh often (one small request), not after the default five minutes.
            metadata_max_age_ms=5_000,
            isolation_level="read_committed",
        )

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=self._listener)

    async def start_when_reachable(self, stop: asyncio.Event) -> bool:
        """`start`, retried while the broker is unreachable; False if `stop` came first."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.start()
                return True
            except KafkaError as exc:
                log.warning("consumer cannot reach the broker yet: %r", exc)
            if await stopped_within(stop, delay):
                break
            delay = min(delay * 2, 5.0)
        return False

    async def stop(self) -> None:
        await self._consumer.stop()

    async def batch(self, timeout_ms: int) -> list[Record]:
        """Wait up to `timeout_ms` for records; none while the broker is unreachable."""
        try:
            fetched = await self._consumer.getmany(
                timeout_ms=timeout_ms, max_records=self._max_records
            )
        except KafkaError as exc:
            log.warning("fetch failed, retrying: %r", exc)
            await asyncio.sleep(timeout_ms / 1000)
            return []
        return [to_record(r) for records in fetched.values() for r in records]

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(topic, partition), offset)

    async def seek_to_committed_or_beginning(self, partitions: set[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            tp = TopicPartition(topic, partition)
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    async def commit(self, offsets: dict[tuple[str, int], int]) -> bool:
        """Commit `next offset to read` per partition to the group; False if the broker refused.

        A refused commit is harmless: the records are read again and their events, having the
        same ids, fold once.
        """
        try:
            await self._consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except KafkaError as exc:
            log.warning("offset commit failed: %r", exc)
            return False
        return True

    def assignment(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned partition: end offset minus current position.

        The end is the last stable offset the latest fetch reported, so once records flow this
        costs no round trip; a partition not fetched from yet asks the broker.
        """
        tps = list(self._consumer.assignment())
        unknown = [tp for tp in tps if self._consumer.last_stable_offset(tp) is None]
        ends = await self._consumer.end_offsets(unknown) if unknown else {}
        out = {}
        for tp in tps:
            end = ends.get(tp, self._consumer.last_stable_offset(tp))
            position = await self._consumer.position(tp)
            out[(tp.topic, tp.partition)] = max(0, end - position)
        return out

    async def publish_lag(self, timeout: float = 2.0) -> None:
        """Set the consumer-lag gauge per partition; skipped when the broker does not answer."""
        try:
            lag = await asyncio.wait_for(self.lag(), timeout)
        except (KafkaError, TimeoutError, AssertionError) as exc:
            log.debug("lag unknown: %r", exc)
            return
        for topic, partition in self._lagging - lag.keys():
            for gauge in (metrics.LAG, metrics.LAG_RECORDS):
                gauge.remove(group=self._group, topic=topic, partition=partition)
        for (topic, partition), n in lag.items():
            for gauge in (metrics.LAG, metrics.LAG_RECORDS):
                gauge.set(n, group=self._group, topic=topic, partition=partition)
        self._lagging = set(lag)


class Reader:
    """Reads one topic by explicit partitions and offsets, outside any consumer group."""

    def __init__(self, settings: Settings, topic: str, max_records: int = 1000) -> None:
        self.topic = topic
        self._max_records = max_records
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
            fetch_max_bytes=4 * MAX_RECORD_BYTES,
            isolation_level="read_committed",
        )

    async def start(self) -> list[int]:
        """Connect and take every partition of the topic; returns their numbers."""
        await self._consumer.start()
        if self.topic not in await self._consumer.topics():
            raise Unavailable(f"topic {self.topic!r} does not exist")
        # Without a group, a subscription is assigned every partition once metadata arrives.
        self._consumer.subscribe([self.topic])
        for _ in range(100):
            if assigned := self._consumer.assignment():
                return sorted(tp.partition for tp in assigned)
            await asyncio.sleep(0.05)
        raise Unavailable(f"no partitions of {self.topic!r} were assigned")

    async def stop(self) -> None:
        await self._consumer.stop()

    def _tps(self, partitions: Iterable[int]) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in partitions]

    async def beginnings(self, partitions: Iterable[int]) -> dict[int, int]:
        found = await self._consumer.beginning_offsets(self._tps(partitions))
        return {tp.partition: offset for tp, offset in found.items()}

    async def ends(self, partitions: Iterable[int]) -> dict[int, int]:
        """The offset after the last record, per partition."""
        found = await self._consumer.end_offsets(self._tps(partitions))
        return {tp.partition: offset for tp, offset in found.items()}

    async def offsets_at(self, partitions: Iterable[int], at_ms: int) -> dict[int, int | None]:
        """Per partition, the first offset with a timestamp at or after `at_ms` (None: none)."""
        found = await self._consumer.offsets_for_times({tp: at_ms for tp in self._tps(partitions)})
        return {tp.partition: (o.offset if o is not None else None) for tp, o in found.items()}

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self.topic, partition), offset)

    def pause(self, partition: int) -> None:
        """Stop fetching a partition (its range is done)."""
        self._consumer.pause(TopicPartition(self.topic, partition))

    async def batch(self, timeout_ms: int = 500) -> list[Record]:
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        return [to_record(r) for records in fetched.values() for r in records]

    async def scan(self, ranges: Mapping[int, tuple[int, int]]) -> AsyncIterator[list[Record]]:
        """Batches of the records in [start, end) of each partition, until every range is read.

        Offsets that are gone (compacted, transaction markers) are skipped: a partition is done
        once the position reaches its end.
        """
        todo = {p: end for p, (start, end) in ranges.items() if start < end}
        for partition in set(await self.partitions()) - set(todo):
            self.pause(partition)
        for partition in todo:
            self.seek(partition, ranges[partition][0])
        while todo:
            records = await self.batch()
            wanted = [r for r in records if r.partition in todo and r.offset < todo[r.partition]]
            for partition, end in list(todo.items()):
                if await self.position(partition) >= end:
                    self.pause(partition)
                    del todo[partition]
            if wanted:
                yield wanted

    async def partitions(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    async def position(self, partition: int) -> int:
        position: int = await self._consumer.position(TopicPartition(self.topic, partition))
        return position
