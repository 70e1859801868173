"""`mailfold replay`: re-derive mailfold.events from mailfold.raw with today's adapters.

The raw log keeps every accepted body byte for byte, so a fixed or improved adapter (or changed
machine rules) can be run over it again. Event ids are stable: replaying over existing state
changes nothing unless an adapter now derives something different. A new event is folded as
any other; an event whose fields differ from its ledger row (a corrected bounce class, delivery,
name or machine verdict) carries the `replay` header, and the fold corrects the ledger and folds
its recipient again from the corrected events (queries/replay.sql). The range is fixed
when the replay starts (from a time, an offset or the beginning, up to the end at that moment),
so it finishes while new records keep arriving. Records that still cannot be read are counted
and logged, not dead-lettered again (they are on mailfold.dlq already).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TextIO

from consumers.normalize import derive_record
from consumers.progress import Progress
from service import kafka, metrics
from service.errors import MailfoldError, ParseError
from service.events import encode
from service.settings import Settings

log = logging.getLogger("mailfold.replay")
Ranges = dict[int, tuple[int, int]]


@dataclass
class Summary:
    """What a replay did, printed by the command as JSON."""

    records: int = 0  # raw records in the range
    replayed: int = 0  # of those, the ones of the requested source
    events: int = 0  # canonical events produced to mailfold.events
    unreadable: int = 0  # records no adapter could read
    seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


def parse_since(text: str) -> datetime:
    """An ISO-8601 date or time; without a zone it is UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def plan(reader: kafka.Reader, since: datetime | None, from_offset: int | None) -> Ranges:
    """Per partition, [start, end) of what to replay; the end is the log's end right now."""
    partitions = await reader.start()
    ends = await reader.ends(partitions)
    firsts = await reader.beginnings(partitions)
    starts: dict[int, int] = firsts
    if since is not None:
        found = await reader.offsets_at(partitions, int(since.timestamp() * 1000))
        starts = {p: ends[p] if (o := found[p]) is None else o for p in partitions}
    elif from_offset is not None:
        starts = {p: max(from_offset, firsts[p]) for p in partitions}
    return {p: (starts[p], ends[p]) for p in partitions}


async def replay(
    settings: Settings,
    *,
    since: datetime | None = None,
    from_offset: int | None = None,
    source: str | None = None,
    dry_run: bool = False,
    stream: TextIO | None = sys.stderr,
    stop: asyncio.Event | None = None,
) -> Summary:
    """Re-derive the raw records of the range into mailfold.events (not with `dry_run`)."""
    stop = stop or asyncio.Event()
    started = time.monotonic()
    summary = Summary()
    reader = kafka.Reader(settings, settings.raw_topic, max_records=500)
    producer = kafka.Producer(settings)
    try:
        ranges = await plan(reader, since, from_offset)
        total = sum(end - start for start, end in ranges.values())
        progress = Progress(
            "replay",
            total,
            "raw records",
            extra="events",
            stream=stream,
            on_update=metrics.REPLAY_PROGRESS.set,
        )
        progress.update(0, 0)
        async for records in reader.scan(ranges):
            outputs = replay_batch(settings, records, source, summary)
            if outputs and not dry_run and not await producer.send_until_acked(outputs, stop):
                raise MailfoldError("replay interrupted before its events were acknowledged")
            summary.events += len(outputs)
            progress.update(summary.records, summary.events)
            if stop.is_set():
                raise MailfoldError("replay interrupted")
        progress.update(summary.records, summary.events, final=True)
    finally:
        await reader.stop()
        await producer.stop()
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def replay_batch(
    settings: Settings, records: list[kafka.Record], source: str | None, summary: Summary
) -> list[kafka.Output]:
    """The events of a batch's records (of `source`, if given), counting what was read."""
    outputs: list[kafka.Output] = []
    for rec in records:
        summary.records += 1
        metrics.REPLAY_RECORDS.inc()
        if source is not None and rec.headers.get("source") != source.encode():
            continue
        summary.replayed += 1
        try:
            events = derive_record(rec)
        except ParseError as exc:
            summary.unreadable += 1
            log.warning(
                "still unreadable: %s",
                exc,
                extra={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
            )
            continue
        headers = [(kafka.REPLAY_HEADER, b"1")]
        outputs += [(settings.events_topic, e.key(), encode(e), headers) for e in events]
    return outputs


async def serve(
    settings: Settings,
    *,
    since: datetime | None,
    from_offset: int | None,
    source: str | None,
    dry_run: bool,
) -> Summary:
    """Run a replay from the command line: SIGINT/SIGTERM interrupt it, metrics if configured."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = await metrics.serve(settings.metrics_port, settings.metrics_host)
    try:
        return await replay(
            settings,
            since=since,
            from_offset=from_offset,
            source=source,
            dry_run=dry_run,
            stop=stop,
        )
    finally:
        if listener is not None:
            listener.close()
