"""The mailfold.raw record: a request body byte for byte, with what ingest knew about it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from service.events import format_time, parse_time
from service.webhooks.base import MetadataKeys, RawRecord

KEPT_PREFIX = "h:"


def to_headers(record: RawRecord, remote_addr: str | None) -> list[tuple[str, bytes]]:
    """Kafka headers for a raw record; request headers an adapter keeps go under `h:<name>`."""
    headers = [
        ("source", record.source.encode()),
        ("account", record.account.encode()),
        ("content-type", record.content_type.encode()),
        ("received-at", format_time(record.received_at).encode()),
        ("request-id", (record.request_id or "").encode()),
        ("remote-addr", (remote_addr or "").encode()),
    ]
    if record.metadata_keys != MetadataKeys():
        keys = {k: getattr(record.metadata_keys, k) for k in MetadataKeys.__dataclass_fields__}
        headers.append(("metadata-keys", orjson.dumps(keys)))
    headers.extend((KEPT_PREFIX + k, v.encode()) for k, v in record.headers.items())
    return headers


def from_kafka(value: bytes, headers: Mapping[str, bytes]) -> RawRecord:
    """Rebuild the RawRecord from a consumed record; KeyError/ValueError if headers are missing."""

    def text(name: str) -> str:
        return headers[name].decode()

    received = headers.get("received-at")
    keys = headers.get("metadata-keys")
    return RawRecord(
        account=text("account"),
        source=text("source"),
        body=value,
        content_type=headers.get("content-type", b"application/json").decode(),
        received_at=parse_time(received.decode()) if received else datetime.now(UTC),
        request_id=headers.get("request-id", b"").decode() or None,
        headers={
            k[len(KEPT_PREFIX) :]: v.decode()
            for k, v in headers.items()
            if k.startswith(KEPT_PREFIX)
        },
        metadata_keys=MetadataKeys.from_mapping(orjson.loads(keys) if keys else None),
    )
