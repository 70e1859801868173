"""Everything Mailfold says to Kafka; the only module that imports aiokafka.

The producer waits for acks=all with idempotence on, so a 2xx is only ever answered for a record
the broker has. Consumers never auto-commit: normalize commits after its output is acknowledged,
fold stores its offsets in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from service.errors import Unavailable
from service.settings import Settings

log = logging.getLogger("mailfold.kafka")

# Room for SendGrid's ~768 KB batches (which can run over) plus headers.
MAX_RECORD_BYTES = 4 * 1024 * 1024
Headers = list[tuple[str, bytes]]


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
                topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)},
            )
            for name in names
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


class Producer:
    """An idempotent acks=all producer whose `send` returns only once the broker has the record."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._starting = asyncio.Lock()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=MAX_RECORD_BYTES,
            request_timeout_ms=int(self._settings.produce_timeout_s * 1000),
            linger_ms=2,
            compression_type=None,
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
        if self._started and self._producer is not None:
            await self._producer.stop()
            self._started = False

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers | None = None
    ) -> None:
        """Produce and wait for the acknowledgement; Unavailable when the broker does not ack."""
        if not self._started and not await self.try_start():
            raise Unavailable("event broker unreachable", retry_after=self._settings.retry_after_s)
        try:
            assert self._producer is not None
            ack = await self._producer.send(topic, value, key=key, headers=headers or [])
            # The producer expires an unsent record after request_timeout_ms; waiting a little
            # longer lets that verdict arrive, so a record answered with 503 is not sent later.
            await asyncio.wait_for(ack, self._settings.produce_timeout_s + 5)
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(
                f"event broker did not acknowledge: {type(exc).__name__}",
                retry_after=self._settings.retry_after_s,
            ) from exc

    async def send_many(self, items: Sequence[tuple[str, bytes | None, bytes, Headers]]) -> None:
        """Produce (topic, key, value, headers) records and wait until all are acknowledged."""
        if not self._started and not await self.try_start():
            raise Unavailable("event broker unreachable", retry_after=self._settings.retry_after_s)
        try:
            acks = [
                await self._live().send(topic, value, key=key, headers=headers)
                for topic, key, value, headers in items
            ]
            if acks:
                await asyncio.wait_for(asyncio.gather(*acks), self._settings.produce_timeout_s + 5)
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(f"event broker did not acknowledge: {type(exc).__name__}") from exc

    async def partitions_for(self, topic: str) -> set[int]:
        return set(await self._live().partitions_for(topic))

    def _live(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise Unavailable("event broker unreachable", retry_after=self._settings.retry_after_s)
        return self._producer


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
            isolation_level="read_committed",
        )

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=self._listener)

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
        out: list[Record] = []
        for records in fetched.values():
            for r in records:
                out.append(
                    Record(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        key=r.key,
                        value=r.value,
                        headers={k: v for k, v in r.headers},
                        timestamp_ms=r.timestamp,
                    )
                )
        return out

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
        """Per assigned partition: end offset minus current position."""
        tps = list(self._consumer.assignment())
        if not tps:
            return {}
        ends = await self._consumer.end_offsets(tps)
        out = {}
        for tp in tps:
            position = await self._consumer.position(tp)
            out[(tp.topic, tp.partition)] = max(0, ends[tp] - position)
        return out
