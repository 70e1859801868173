"""The Event API's body: one canonical event or an array of them, posted by the platform.

`validate` lists every problem by index and field (400 before anything is produced);
`parse` turns an accepted body into canonical events (the normalizer's adapter for `api`).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

from service import ledger
from service.errors import ParseError
from service.events import (
    Bounce,
    Conversion,
    Event,
    EventType,
    Recipient,
    parse_amount,
    parse_time,
)
from service.webhooks.base import RawRecord, make_event

SOURCE = "api"
TOP_FIELDS = {
    "id",
    "type",
    "occurred_at",
    "campaign_id",
    "delivery_id",
    "message_id",
    "recipient",
    "bounce",
    "url",
    "ip",
    "user_agent",
    "machine",
    "ab_version",
    "conversion",
    "name",
    "payload",
}
RECIPIENT_FIELDS = {"email", "contact_id", "client_contact_id", "first_name", "surname"}
# A named event, `{name, payload}` without `type`: a custom event of the contact its
# payload names (email, else a contact id), of no delivery; `occurred_at` (default: when
# Mailfold received it) and `id` may come along.
NAMED_FIELDS = {"name", "payload", "occurred_at", "id"}
PAYLOAD_RECIPIENT = ("email", "contact_id", "client_contact_id")
ID_FIELDS = ("id", "campaign_id", "delivery_id", "message_id", "ab_version")
# Field -> the most characters it may have (the OpenAPI document says the same; the ledger,
# service/ledger.py, holds at least as much).
TEXT_FIELDS = {"url": 2048, "ip": 2048, "user_agent": 2048}
MAX_ID = 256
MAX_REASON = 2048
# What str.isspace() calls whitespace (re's \s on str patterns is the same Unicode test), in C.
SPACE = re.compile(r"\s")
# An amount sent as text: what numeric(20, 4) holds exactly (the OpenAPI document's pattern).
AMOUNT_TEXT = re.compile(r"[+-]?([0-9]{1,16}(\.[0-9]{0,4})?|\.[0-9]{1,4})")

Problem = dict[str, Any]

EARLIEST, LATEST = 1970, 9999
MAX_NAME = 128


def _text(value: Any, limit: int = MAX_ID) -> str | None:
    """Why `value` is not a non-empty string the ledger can store, or None."""
    if value == "":
        return "must not be empty"
    return ledger.text_problem(value, limit)


def _check_recipient(rcpt: Any, err: Any) -> None:
    if not isinstance(rcpt, dict):
        err("recipient", "must be an object with email or contact_id")
        return
    for key in rcpt.keys() - RECIPIENT_FIELDS:
        err(f"recipient.{key}", "unknown field")
    for key in sorted(RECIPIENT_FIELDS & rcpt.keys()):
        if rcpt[key] is not None and (problem := _text(rcpt[key])):
            err(f"recipient.{key}", problem)
    email = rcpt.get("email")
    if isinstance(email, str) and ("@" not in email or SPACE.search(email)):
        err("recipient.email", "is not an e-mail address")
    if not (rcpt.get("email") or rcpt.get("contact_id") or rcpt.get("client_contact_id")):
        err("recipient", "needs email, contact_id or client_contact_id")


def _check_by_type(item: dict[str, Any], kind: str, err: Any) -> None:
    bounce = item.get("bounce")
    if bounce is not None:
        if not isinstance(bounce, dict):
            err("bounce", "must be an object")
        elif bounce.get("class") not in (None, "hard", "soft"):
            err("bounce.class", "must be hard, soft or null")
        else:
            for key in ("code", "reason"):
                value = bounce.get(key)
                if value is not None and (problem := _text(value, MAX_REASON)):
                    err(f"bounce.{key}", problem)
    conv = item.get("conversion")
    if kind == "converted" and (not isinstance(conv, dict) or "amount" not in conv):
        err("conversion.amount", "is required for converted events")
    elif conv is not None:
        _check_conversion(conv, err)
    if kind == "custom" and item.get("name") is None:
        err("name", "is required for custom events")
    elif item.get("name") is not None and (problem := _text(item["name"], MAX_NAME)):
        err("name", problem)
    payload = item.get("payload")
    if payload is not None and (problem := ledger.payload_problem(payload)):
        err("payload", problem)


def _check_conversion(conv: Any, err: Any) -> None:
    if not isinstance(conv, dict) or "amount" not in conv:
        err("conversion", "must be an object with amount (and currency)")
        return
    cur = conv.get("currency")
    if cur is not None and not (isinstance(cur, str) and len(cur) == 3 and cur.isalpha()):
        err("conversion.currency", "must be a three-letter ISO 4217 code")
    value = conv["amount"]
    if isinstance(value, str) and not AMOUNT_TEXT.fullmatch(value):
        err("conversion.amount", "must be a decimal of at most 16 digits, and 4 after the point")
        return
    try:
        if problem := ledger.amount_problem(amount_of(value)):
            err("conversion.amount", problem)
    except ValueError as exc:
        err("conversion.amount", str(exc))


def amount_of(value: Any) -> Decimal:
    """The amount as the ledger keeps it (numeric(20, 4)): a decimal string or an integer
    exactly; a JSON number with a fraction or an exponent, a binary float on the wire, rounded
    half-even to 4 places. ValueError for what is not a finite number."""
    amount = parse_amount(value)
    if isinstance(value, float) and abs(amount) < ledger.MAX_AMOUNT:
        amount = amount.quantize(ledger.AMOUNT_SCALE, ROUND_HALF_EVEN)
    return amount


def _check_event(item: Any, index: int, problems: list[Problem]) -> None:
    def err(field: str, message: str) -> None:
        problems.append({"index": index, "field": field, "message": message})

    if not isinstance(item, dict):
        err("", "each event must be a JSON object")
        return
    for key in sorted(item.keys() - TOP_FIELDS):
        err(key, "unknown field")
    if is_named(item):
        _check_named(item, err)
        return
    kind = item.get("type")
    if not isinstance(kind, str) or kind not in EventType._value2member_map_:
        err("type", f"must be one of {', '.join(t.value for t in EventType)}")
    _check_time(item, err)
    for key in ID_FIELDS:
        if item.get(key) is not None and (problem := _text(item[key])):
            err(key, problem)
    for key, limit in TEXT_FIELDS.items():
        if item.get(key) is not None and (problem := _text(item[key], limit)):
            err(key, problem)
    if item.get("machine") is not None and not isinstance(item["machine"], bool):
        err("machine", "must be true, false or null")
    if not (item.get("delivery_id") or item.get("message_id")):
        err("delivery_id", "delivery_id or message_id is required")
    _check_recipient(item.get("recipient"), err)
    if isinstance(kind, str):
        _check_by_type(item, kind, err)


def _check_time(item: dict[str, Any], err: Any) -> None:
    try:
        if not isinstance(item.get("occurred_at"), str):
            raise ValueError("is required, an ISO-8601 time with a zone")
        at = parse_time(item["occurred_at"])
        if not EARLIEST <= at.year <= LATEST:
            raise ValueError(f"year {at.year} is outside {EARLIEST}-{LATEST}")
    except ValueError as exc:
        err("occurred_at", str(exc) if "required" in str(exc) else f"is not a zoned time: {exc}")


def is_named(item: Any) -> bool:
    """A named event: an object with `name` and no `type`."""
    return isinstance(item, dict) and "type" not in item and "name" in item


def _check_named(item: dict[str, Any], err: Any) -> None:
    for key in sorted(item.keys() - NAMED_FIELDS):
        err(key, f"unknown field (an event without type takes {', '.join(sorted(NAMED_FIELDS))})")
    if problem := _text(item["name"], MAX_NAME):
        err("name", problem)
    if "occurred_at" in item:
        _check_time(item, err)
    if item.get("id") is not None and (problem := _text(item["id"])):
        err("id", problem)
    payload = item.get("payload")
    if not isinstance(payload, dict):
        err("payload", "must be an object with email (or contact_id or client_contact_id)")
        return
    if problem := ledger.payload_problem(payload):
        err("payload", problem)
    for key in PAYLOAD_RECIPIENT:
        if payload.get(key) is not None and (problem := _text(payload[key])):
            err(f"payload.{key}", problem)
    email = payload.get("email")
    if isinstance(email, str) and ("@" not in email or SPACE.search(email)):
        err("payload.email", "is not an e-mail address")
    if not any(payload.get(key) for key in PAYLOAD_RECIPIENT):
        err("payload.email", "is required (or payload.contact_id or payload.client_contact_id)")


def validate(body: bytes, max_events: int) -> tuple[list[Any], list[Problem]]:
    """Decode and check a posted body; returns (events as JSON, problems)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return [], [{"index": None, "field": "", "message": f"body is not JSON: {exc}"}]
    items = data if isinstance(data, list) else [data]
    if not items:
        return [], [{"index": None, "field": "", "message": "no events in the body"}]
    if len(items) > max_events:
        msg = f"at most {max_events} events per request, got {len(items)}"
        return [], [{"index": None, "field": "", "message": msg}]
    problems: list[Problem] = []
    for index, item in enumerate(items):
        _check_event(item, index, problems)
    return items, problems


def build_event(record: RawRecord, item: dict[str, Any]) -> Event:
    """The canonical event of one validated Event API object."""
    rcpt = item["recipient"]
    bounce = item.get("bounce")
    conv = item.get("conversion")
    occurred: datetime = parse_time(item["occurred_at"])
    return make_event(
        record,
        native_type=item["type"],
        type=EventType(item["type"]),
        occurred_at=occurred,
        recipient=Recipient(
            email=rcpt.get("email"),
            contact_id=rcpt.get("contact_id"),
            client_contact_id=rcpt.get("client_contact_id"),
            first_name=rcpt.get("first_name"),
            surname=rcpt.get("surname"),
        ),
        message_id=item.get("message_id"),
        provider_event_id=item.get("id"),
        # The platform's own id is trustworthy: two posts with different ids are two events.
        id_discriminator=item.get("id") or item.get("name"),
        campaign_id=item.get("campaign_id"),
        delivery_id=item.get("delivery_id"),
        bounce=Bounce(bounce.get("class"), bounce.get("code"), bounce.get("reason"))
        if bounce
        else None,
        url=item.get("url"),
        ip=item.get("ip"),
        user_agent=item.get("user_agent"),
        machine=item.get("machine"),
        machine_reason="api" if item.get("machine") is not None else None,
        ab_version=item.get("ab_version"),
        conversion=Conversion(amount_of(conv["amount"]), conv.get("currency")) if conv else None,
        name=item.get("name"),
        payload=item.get("payload"),
    )


def build_named_event(record: RawRecord, item: dict[str, Any]) -> Event:
    """The custom event of one validated named event (`{name, payload}`, no `type`)."""
    payload = item["payload"]
    at = item.get("occurred_at")
    return make_event(
        record,
        native_type=EventType.CUSTOM.value,
        type=EventType.CUSTOM,
        occurred_at=parse_time(at) if at else record.received_at,
        recipient=Recipient(
            email=payload.get("email"),
            contact_id=payload.get("contact_id"),
            client_contact_id=payload.get("client_contact_id"),
        ),
        provider_event_id=item.get("id"),
        id_discriminator=item.get("id") or item["name"],
        name=item["name"],
        payload=payload,
    )


def echo(body: bytes, items: list[Any]) -> Any:
    """The answer to one named event posted alone: the event itself (with 201); None for any
    other body."""
    if len(items) == 1 and is_named(items[0]) and not body.lstrip().startswith(b"["):
        return items[0]
    return None


def parse(record: RawRecord) -> list[Event]:
    """Canonical events of one accepted Event API body."""
    items, problems = validate(record.body, max_events=1_000_000)
    if problems:
        first = problems[0]
        raise ParseError(
            f"api: event {first['index']} field {first['field']!r}: {first['message']}"
        )
    return [
        build_named_event(record, item) if is_named(item) else build_event(record, item)
        for item in items
    ]
