"""The ledger row: what one canonical event becomes in PostgreSQL, and what the ledger can hold.

`check_row` is the one statement of the ledger's limits. The Event API refuses what fails it
(400 naming the field), the normalizer dead-letters it instead of producing it, and the fold
checks every record it reads against it before COPY, so no single record can fail a batch.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from service.events import SCHEMA_VERSION, Event, EventType, parse_amount, parse_time

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
    "occurred_at_estimated",
)

# Text limits in characters, the unit the Event API documents (its OpenAPI schema): ids, e-mail
# addresses and names 256, URLs and addresses 2048, free text (user agents, bounce reasons)
# 4096. Identifiers are indexed, and a btree entry holds at most about 2700 bytes: link stats
# are keyed by account, delivery, URL and recipient together, so that key is checked in bytes.
MAX_ID = 256
MAX_URL = 2048
MAX_TEXT = 4096
MAX_LINK_KEY_BYTES = 2600
# numeric(20, 4): 16 digits before the point, 4 after.
MAX_AMOUNT = Decimal(10) ** 16
AMOUNT_SCALE = Decimal("0.0001")
# Custom events' payloads: jsonb holds far more, but a payload is a few fields, not a document.
MAX_PAYLOAD_BYTES = 65536
MAX_DEPTH = 32

# Column -> the most characters its text may have. Columns not named here are not text.
TEXT_LIMITS: dict[str, int] = {
    "account_id": MAX_ID,
    "source": MAX_ID,
    "native_type": MAX_ID,
    "campaign_id": MAX_ID,
    "delivery_id": MAX_ID,
    "message_id": MAX_ID,
    "recipient_key": MAX_ID,
    "email": MAX_ID,
    "contact_id": MAX_ID,
    "client_contact_id": MAX_ID,
    "first_name": MAX_ID,
    "surname": MAX_ID,
    "bounce_code": MAX_TEXT,
    "bounce_reason": MAX_TEXT,
    "url": MAX_URL,
    "ip": MAX_URL,
    "user_agent": MAX_TEXT,
    "machine_reason": MAX_ID,
    "agent_class": MAX_ID,
    "ab_version": MAX_ID,
    "currency": MAX_ID,
    "name": MAX_ID,
    "provider_event_id": MAX_ID,
}
LINK_KEY = ("account_id", "delivery_id", "url", "recipient_key")
LINK_KEY_TOO_LONG = (
    f"with the account, delivery and recipient must fit {MAX_LINK_KEY_BYTES} bytes of UTF-8"
)
REQUIRED = frozenset({"account_id", "source", "native_type", "recipient_key"})
TEXT = tuple((COLUMNS.index(c), c, limit, c in REQUIRED) for c, limit in TEXT_LIMITS.items())
EVENT_ID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
TYPES = frozenset(t.value for t in EventType)
AT = {name: i for i, name in enumerate(COLUMNS)}


class Unstorable(ValueError):
    """A value the ledger cannot hold; `field` names the column, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def text_problem(value: Any, limit: int) -> str | None:
    """Why `value` is not storable text of at most `limit` characters, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "must not contain lone surrogates (invalid Unicode)"
    if len(value) > limit:
        return f"must be at most {limit} characters, got {len(value)}"
    return None


def utf8_size(value: str | None) -> int:
    return 0 if value is None else len(value) if value.isascii() else len(value.encode())


def amount_problem(value: Any) -> str | None:
    """Why `value` does not fit numeric(20, 4), or None when it does."""
    if not isinstance(value, Decimal):
        return f"must be a decimal, not {type(value).__name__}"
    if not value.is_finite():
        return "must be finite"
    if abs(value) >= MAX_AMOUNT:
        return f"must be less than {MAX_AMOUNT:,} in magnitude"
    try:
        if value != value.quantize(AMOUNT_SCALE):
            return "must have at most 4 decimal places"
    except InvalidOperation:
        return "must have at most 4 decimal places"
    return None


def payload_problem(value: Any) -> str | None:
    """Why `value` cannot be stored as jsonb, or None when it can."""
    if depth(value) > MAX_DEPTH:
        return f"must nest at most {MAX_DEPTH} levels deep"
    try:
        data = orjson.dumps(value)
    except TypeError as exc:  # orjson's JSONEncodeError: surrogates, huge integers, odd types
        return f"is not storable JSON: {exc}"
    if len(data) > MAX_PAYLOAD_BYTES:
        return f"must be at most {MAX_PAYLOAD_BYTES} bytes as JSON, got {len(data)}"
    if b"\\u0000" in data:
        return "must not contain NUL characters"
    return None


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply `value` nests (a scalar is 0), counting no further than `limit` + 1."""
    if not isinstance(value, dict | list):
        return 0
    level, frontier = 0, [value]
    while frontier and level <= limit:
        level += 1
        nested: list[Any] = []
        for item in frontier:
            children = item.values() if isinstance(item, dict) else item
            nested.extend(c for c in children if isinstance(c, dict | list))
        frontier = nested
    return level


def check_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return `row` if the ledger can store it; raise Unstorable naming the first bad column."""
    for index, column, limit, required in TEXT:
        value = row[index]
        if value is None:
            if required:
                raise Unstorable(column, "is required")
            continue
        if value.__class__ is not str or len(value) > limit or not value.isascii():
            problem = text_problem(value, limit)
            if problem:
                raise Unstorable(column, problem)
        elif "\x00" in value:
            raise Unstorable(column, "must not contain NUL characters")
    if row[AT["url"]] is not None and sum(utf8_size(row[AT[c]]) for c in LINK_KEY) > (
        MAX_LINK_KEY_BYTES
    ):
        raise Unstorable("url", LINK_KEY_TOO_LONG)
    if not isinstance(row[0], str) or not EVENT_ID.fullmatch(row[0]):
        raise Unstorable("event_id", "must be 32 hexadecimal digits")
    if row[AT["type"]] not in TYPES:
        raise Unstorable("type", f"must be one of {', '.join(sorted(TYPES))}")
    for column in ("occurred_at", "received_at"):
        value = row[AT[column]]
        if not (value is None and column == "received_at") and not _aware(value):
            raise Unstorable(column, "must be a time with a zone")
    if row[AT["bounce_class"]] not in (None, "hard", "soft"):
        raise Unstorable("bounce_class", "must be hard, soft or null")
    if row[AT["machine"]] is not None and row[AT["machine"]].__class__ is not bool:
        raise Unstorable("machine", "must be true, false or null")
    if row[AT["occurred_at_estimated"]].__class__ is not bool:
        raise Unstorable("occurred_at_estimated", "must be true or false")
    amount = row[AT["amount"]]
    if amount is not None and (problem := amount_problem(amount)):
        raise Unstorable("amount", problem)
    payload = row[AT["payload"]]
    if payload is not None and (problem := payload_problem(payload)):
        raise Unstorable("payload", problem)
    return row


def _aware(value: Any) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def to_row(e: Event) -> tuple[Any, ...]:
    """One ledger row (COLUMNS order) for an event, unchecked."""
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
        e.occurred_at_estimated,
    )


def row_of(data: bytes) -> tuple[Any, ...]:
    """The checked ledger row of one mailfold.events record, read straight from its JSON.

    Building the Event first (`decode`) was a third of the fold consumer's CPU; this refuses what
    `decode` refuses (tests/test_fold_rows.py), an event without a recipient, and anything
    `check_row` refuses. Any refusal is a ValueError (Unstorable among them), KeyError,
    TypeError or AttributeError: the record's own fault.
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
    return check_row(
        (
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
            get("occurred_at_estimated") or False,
        )
    )


def check_event(event: Event) -> Event:
    """Return `event` if its ledger row can be stored; raise Unstorable otherwise."""
    check_row(to_row(event))
    return event
