"""Which adapter reads a raw record: the Event API's own, or the provider's named by `source`."""

from __future__ import annotations

from service import events_api
from service.errors import ParseError
from service.events import Event
from service.machine import classify
from service.webhooks import PROVIDERS
from service.webhooks.base import RawRecord

SOURCES = (events_api.SOURCE, *PROVIDERS)


def derive(record: RawRecord) -> list[Event]:
    """The canonical events of one raw record, classified; ParseError for anything unreadable."""
    return [classify(event) for event in _parse(record)]


def _parse(record: RawRecord) -> list[Event]:
    if record.source == events_api.SOURCE:
        return events_api.parse(record)
    adapter = PROVIDERS.get(record.source)
    if adapter is None:
        raise ParseError(f"no adapter for source {record.source!r}")
    try:
        return adapter.parse(record)
    except ParseError:
        raise
    except Exception as exc:  # an adapter bug must not stop the stream: dead-letter it
        raise ParseError(f"{record.source}: adapter failed: {type(exc).__name__}: {exc}") from exc
