"""`mailfold dlq`: what was set aside on mailfold.dlq and why, one letter in full, and retry.

A dead letter is the original record (key, value and headers, byte for byte) plus `dlq-reason`,
`dlq-stage` (normalize or fold), `dlq-topic`, `dlq-partition` and `dlq-offset` saying where it
was read. Retrying produces the original record again to its original topic (mailfold.raw or
mailfold.events) without the dlq headers. The letter stays where it is (Kafka's log is
append-only), so each retry is recorded in PostgreSQL (dead_letter_retries) and `dlq list` shows
when a letter was last retried and how often; `retry --all` passes over letters already retried
unless told `--again`. A retried record that still cannot be read is set aside again with its
reason, and one that now can be yields events whose ids make a repeated retry harmless.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from consumers.progress import Progress
from service import db, kafka
from service.errors import BadInput, MailfoldError, NotFound
from service.settings import Settings

PREFIX = "dlq-"
# Letters produced between two progress updates of `dlq retry`.
RETRY_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as `dlq list` shows it."""

    id: str  # "partition:offset" on the dead-letter topic
    set_aside_at: str
    stage: str
    reason: str
    source: str | None
    account: str | None
    topic: str  # where the record was read
    partition: int | None
    offset: int | None
    received_at: str | None
    request_id: str | None
    size: int
    retried_at: str | None = None  # the last `dlq retry` of this letter
    retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def text(headers: dict[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return value.decode("utf-8", "replace") if value else None


def number(headers: dict[str, bytes], name: str) -> int | None:
    value = text(headers, name)
    return int(value) if value and value.lstrip("-").isdigit() else None


def event_fields(value: bytes) -> dict[str, Any]:
    """Source and account of a canonical event, when the letter is one (fold stage)."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def describe(rec: kafka.Record) -> Letter:
    h = rec.headers
    fallback = event_fields(rec.value) if "source" not in h else {}
    return Letter(
        id=f"{rec.partition}:{rec.offset}",
        set_aside_at=datetime.fromtimestamp(rec.timestamp_ms / 1000, UTC).isoformat(),
        stage=text(h, "dlq-stage") or "normalize",
        reason=text(h, "dlq-reason") or "",
        source=text(h, "source") or str_or_none(fallback.get("source")),
        account=text(h, "account") or str_or_none(fallback.get("account")),
        topic=text(h, "dlq-topic") or "",
        partition=number(h, "dlq-partition"),
        offset=number(h, "dlq-offset"),
        received_at=text(h, "received-at"),
        request_id=text(h, "request-id"),
        size=len(rec.value),
    )


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_id(ident: str) -> tuple[int, int]:
    """ "P:OFFSET" (as `dlq list` prints it) -> (partition, offset)."""
    part, sep, offset = ident.partition(":")
    if not (sep and part.isdigit() and offset.isdigit()):
        raise BadInput(f"a dead letter is named PARTITION:OFFSET as dlq list shows, not {ident!r}")
    return int(part), int(offset)


async def read(
    settings: Settings, wanted: Iterable[tuple[int, int]] | None = None
) -> list[kafka.Record]:
    """The dead letters now on the topic: all of them, or those at the `wanted` coordinates."""
    reader = kafka.Reader(settings, settings.dlq_topic)
    try:
        partitions = await reader.start()
        firsts, ends = await reader.beginnings(partitions), await reader.ends(partitions)
        ranges = {p: (firsts[p], ends[p]) for p in partitions}
        targets = set(wanted) if wanted is not None else None
        if targets is not None:
            ranges = {}
            for p, o in targets:
                if p in ends and firsts[p] <= o < ends[p]:
                    low, high = ranges.get(p, (o, o + 1))
                    ranges[p] = (min(low, o), max(high, o + 1))
        found = [rec async for batch in reader.scan(ranges) for rec in batch]
    finally:
        await reader.stop()
    if targets is not None:
        found = [r for r in found if (r.partition, r.offset) in targets]
    return sorted(found, key=lambda r: (r.timestamp_ms, r.partition, r.offset))


async def list_letters(
    settings: Settings,
    reason: str | None = None,
    *,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[Letter]:
    """Every dead letter, oldest first; only those whose reason contains `reason`, set aside at
    or after `since`, and the newest `limit` of them, if given."""
    records = await read(settings)
    if since is not None:
        records = [r for r in records if r.timestamp_ms >= since.timestamp() * 1000]
    letters = [describe(rec) for rec in records]
    if reason:
        letters = [x for x in letters if reason.lower() in x.reason.lower()]
    if limit is not None:
        letters = letters[-limit:] if limit else []
    retried = await retries(settings)
    return [
        replace(x, retried_at=retried[x.id][1], retries=retried[x.id][0]) if x.id in retried else x
        for x in letters
    ]


async def retries(settings: Settings) -> dict[str, tuple[int, str]]:
    """Letter id -> (times retried, last retried at) for every letter retried so far."""
    conn = await db.connect(settings.database_url)
    try:
        rows = await conn.fetch(db.QUERIES["dlq_retries"], settings.dlq_topic)
    finally:
        await conn.close()
    return {
        f"{r['partition']}:{r['offset']}": (r["retries"], r["retried_at"].isoformat()) for r in rows
    }


async def record_retries(settings: Settings, records: list[kafka.Record]) -> None:
    conn = await db.connect(settings.database_url)
    try:
        await conn.execute(
            db.QUERIES["record_dlq_retries"],
            settings.dlq_topic,
            [r.partition for r in records],
            [r.offset for r in records],
        )
    finally:
        await conn.close()


async def show(settings: Settings, ident: str) -> dict[str, Any]:
    """One letter: its description, the original headers and the body."""
    found = await read(settings, [parse_id(ident)])
    if not found:
        raise NotFound(f"no dead letter {ident} on {settings.dlq_topic}")
    rec = found[0]
    out = describe(rec).as_dict()
    out["key"] = rec.key.decode("utf-8", "replace") if rec.key is not None else None
    out["headers"] = {
        k: v.decode("utf-8", "replace") for k, v in rec.headers.items() if not k.startswith(PREFIX)
    }
    try:
        out["body"] = rec.value.decode()
    except UnicodeDecodeError:
        out["body_base64"] = base64.b64encode(rec.value).decode()
    return out


def original(settings: Settings, rec: kafka.Record) -> kafka.Output:
    """The record as it was before it was set aside, bound for the topic it was read from."""
    topic = text(rec.headers, "dlq-topic")
    if topic not in (settings.raw_topic, settings.events_topic):
        raise MailfoldError(
            f"dead letter {rec.partition}:{rec.offset} came from {topic!r}, which is neither "
            f"{settings.raw_topic} nor {settings.events_topic}; not retried"
        )
    headers = [(k, v) for k, v in rec.headers.items() if not k.startswith(PREFIX)]
    return (topic, rec.key, rec.value, headers)


async def retry(
    settings: Settings,
    idents: list[str],
    *,
    every: bool = False,
    reason: str | None = None,
    again: bool = False,
    stream: TextIO | None = sys.stderr,
) -> list[dict[str, Any]]:
    """Produce the named letters' originals again (or every one not retried before, unless
    `again`, filtered by `reason`) and record that they were."""
    if every:
        records = await read(settings)
        if reason:
            records = [r for r in records if reason.lower() in describe(r).reason.lower()]
        if not again:
            done = await retries(settings)
            records = [r for r in records if f"{r.partition}:{r.offset}" not in done]
    else:
        wanted = [parse_id(i) for i in idents]
        records = await read(settings, wanted)
        missing = set(wanted) - {(r.partition, r.offset) for r in records}
        if missing:
            names = ", ".join(f"{p}:{o}" for p, o in sorted(missing))
            raise NotFound(f"no dead letter {names} on {settings.dlq_topic}")
    outputs = [original(settings, rec) for rec in records]
    progress = Progress("dlq retry", len(outputs), "letters", stream=stream)
    producer = kafka.Producer(settings)
    try:
        for start in range(0, len(outputs), RETRY_CHUNK):
            await producer.send_many(outputs[start : start + RETRY_CHUNK])
            progress.update(min(start + RETRY_CHUNK, len(outputs)))
        progress.update(len(outputs), final=True)
    finally:
        await producer.stop()
    if records:
        await record_retries(settings, records)
    return [
        {"id": f"{rec.partition}:{rec.offset}", "to": out[0]}
        for rec, out in zip(records, outputs, strict=True)
    ]


def table(letters: list[Letter], width: int = 100) -> str:
    """`dlq list` for people: one line per letter, the reason cut to fit."""
    head = f"{'ID':<9} {'SET ASIDE (UTC)':<19} {'STAGE':<9} {'SOURCE':<10} {'ACCOUNT':<12} "
    head += f"{'FROM':<28} {'RETRIED':<9} REASON"
    lines = [head]
    for x in letters:
        origin = f"{x.topic}/{x.partition}@{x.offset}"
        line = (
            f"{x.id:<9} {x.set_aside_at[:19].replace('T', ' '):<19} {x.stage:<9} "
            f"{(x.source or '-')[:10]:<10} {(x.account or '-')[:12]:<12} {origin[:28]:<28} "
            f"{(f'{x.retries}x' if x.retries else '-'):<9} "
        )
        lines.append(line + x.reason[: max(20, width - len(line))])
    lines.append(f"{len(letters)} dead letter(s)")
    return "\n".join(lines)
