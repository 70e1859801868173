"""Landing accepted bodies on mailfold.raw: bounded in-flight produce, 2xx only after the ack."""

from __future__ import annotations

import asyncio
from typing import Protocol

from service.errors import Unavailable
from service.raw import to_headers
from service.webhooks.base import RawRecord


class RawSink(Protocol):
    """Where accepted bodies go; `kafka.Producer` in production."""

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...


class Ingest:
    """Produces raw records, refusing with 503 rather than queueing when saturated or stopping."""

    def __init__(self, sink: RawSink, topic: str, max_in_flight: int, retry_after: int) -> None:
        self._sink = sink
        self._topic = topic
        self._slots = asyncio.Semaphore(max_in_flight)
        self._retry_after = retry_after
        self.closing = False

    async def accept(self, record: RawRecord, remote_addr: str | None) -> None:
        """Return once the broker has the record; raise Unavailable otherwise."""
        if self.closing:
            raise Unavailable("shutting down", retry_after=self._retry_after)
        if self._slots.locked():
            raise Unavailable("too many requests in flight", retry_after=self._retry_after)
        async with self._slots:
            await self._sink.send(
                self._topic, record.body, key=None, headers=to_headers(record, remote_addr)
            )
