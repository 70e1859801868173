"""Landing accepted bodies on mailfold.raw: bounded in-flight produce, 2xx only after the ack.

Nothing queues in memory: at most `max_in_flight` records are being produced at any moment and
a request beyond that is refused at once with 503 + Retry-After, so a slow or absent broker
turns into refusals the senders retry, never into a growing backlog in this process. A record
its topic cannot take is refused with 413 (TooLarge) and the sink goes on serving the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from service import metrics
from service.errors import TooLarge, Unavailable
from service.raw import to_headers
from service.webhooks.base import RawRecord

log = logging.getLogger("mailfold.ingest")


class RawSink(Protocol):
    """Where accepted bodies go; `kafka.Producer` in production."""

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Return once the record is acknowledged; Unavailable (retry later) or TooLarge."""
        ...


class Ingest:
    """Produces raw records, refusing with 503 rather than queueing when saturated or stopping."""

    def __init__(self, sink: RawSink, topic: str, max_in_flight: int, retry_after: int) -> None:
        self._sink = sink
        self._topic = topic
        self._slots = asyncio.Semaphore(max_in_flight)
        self._retry_after = retry_after
        self.in_flight = 0
        # Set when the service stops: from then on every request gets 503, before the producer
        # is flushed and closed.
        self.closing = False

    def check(self) -> None:
        """Raise Unavailable when a record would be refused now (stopping, or saturated), so a
        request is refused before its body is read and checked; accept() checks again."""
        if self.closing:
            raise Unavailable("shutting down", retry_after=self._retry_after)
        if self._slots.locked():
            raise Unavailable("too many requests in flight", retry_after=self._retry_after)

    async def accept(self, record: RawRecord, remote_addr: str | None) -> None:
        """Return once the broker has the record; raise Unavailable otherwise, or TooLarge
        when the record (body and headers) is more than its topic takes."""
        self.check()
        async with self._slots:
            self.in_flight += 1
            metrics.IN_FLIGHT.inc()
            started = time.perf_counter()
            outcome = "failed"
            try:
                await self._sink.send(
                    self._topic, record.body, key=None, headers=to_headers(record, remote_addr)
                )
                outcome = "acked"
            except TooLarge as exc:
                outcome = "too_large"
                log.info("raw record refused: %s", exc.message, extra=_context(record))
                raise
            except Unavailable as exc:
                log.warning("raw record not acknowledged: %s", exc.message, extra=_context(record))
                raise
            finally:
                self.in_flight -= 1
                metrics.IN_FLIGHT.dec()
                metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started, outcome=outcome)


def _context(record: RawRecord) -> dict[str, str | None]:
    return {"request_id": record.request_id, "account": record.account, "source": record.source}
