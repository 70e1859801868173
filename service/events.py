"""The canonical event: the one shape every provider's webhook is turned into.

It is the public contract of the `mailfold.events` topic (schema: `schemas/event.v1.json`).
`encode` and `decode` are the only ways an Event crosses the wire.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import orjson

SCHEMA_VERSION = 1


class EventType(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"
    CONVERTED = "converted"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str | None = None
    contact_id: str | None = None
    client_contact_id: str | None = None
    first_name: str | None = None
    surname: str | None = None

    def key(self) -> str:
        """The recipient's identity within a delivery: the e-mail address, else a contact id."""
        return self.email or self.contact_id or self.client_contact_id or ""


@dataclass(frozen=True, slots=True)
class Bounce:
    bounce_class: str | None = None  # "hard", "soft" or None when the provider does not say
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Conversion:
    amount: Decimal
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    account: str
    source: str
    native_type: str
    type: EventType
    occurred_at: datetime
    recipient: Recipient
    received_at: datetime | None = None
    provider_event_id: str | None = None
    campaign_id: str | None = None
    delivery_id: str | None = None
    message_id: str | None = None
    bounce: Bounce | None = None
    url: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    machine: bool | None = None
    machine_reason: str | None = None
    agent_class: str | None = None
    ab_version: str | None = None
    conversion: Conversion | None = None
    name: str | None = None
    payload: Any = None
    # Set by the classifier (service/machine.py) on opens and clicks: the provider's own verdict
    # and the version of the rules that decided `machine`.
    provider_machine: bool | None = None
    classifier_version: str | None = None
    # True when the provider's time could not be read: occurred_at is then received_at.
    occurred_at_estimated: bool = False

    def key(self) -> bytes:
        """The Kafka key on mailfold.events: a recipient of a delivery stays in one partition."""
        return f"{self.account}:{self.delivery_id or ''}:{self.recipient.key()}".encode()

    def with_received_at(self, received_at: datetime) -> Event:
        return replace(self, received_at=received_at)


def event_id(
    *,
    account: str,
    source: str,
    native_type: str,
    message_id: str | None,
    recipient: str,
    occurred_at: datetime,
    url: str | None = None,
    discriminator: str | None = None,
) -> str:
    """A stable identity from the event's identity fields (DESIGN.md): retries and replays agree.

    `discriminator` carries a provider's trustworthy event id where it has one, or anything else
    that tells two genuinely distinct events with the same identity fields apart.
    """
    parts = [
        account,
        source,
        native_type,
        message_id or "",
        recipient.lower(),
        format_time(occurred_at),
        url or "",
        discriminator or "",
    ]
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
    return digest


def format_time(value: datetime) -> str:
    """UTC ISO-8601 with microseconds and a `Z`, the one time format on the stream."""
    if value.tzinfo is UTC:
        # The normalizer formats each event's time twice and a raw record's received_at once
        # per event; equal UTC datetimes are the same instant, so their text can be reused.
        return _format_utc(value)
    return _format(value.astimezone(UTC))


def _format(utc: datetime) -> str:
    if utc.year < 1000:  # strftime does not pad the year to four digits; event ids hash this
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # isoformat costs about half of strftime; in UTC it always ends in "+00:00".
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"


_format_utc = functools.lru_cache(maxsize=4096)(_format)


def parse_time(value: str) -> datetime:
    """Read an ISO-8601 time with a zone; a zone-less time is refused (ValueError)."""
    if value[-1:] == "Z" and value[:1].isdigit():
        # The stream's own format (format_time): Python reads the Z as UTC, a fifth of the work.
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # year 1 with a positive offset, year 9999 with a negative one
        raise ValueError(f"time {value!r} is out of range") from exc


def parse_amount(value: Any) -> Decimal:
    """Money as an exact decimal; floats go through their shortest repr, never binary."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("amount must be a number or a decimal string")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"amount {value!r} is not a number") from exc
    if not amount.is_finite():
        raise ValueError(f"amount {value!r} is not finite")
    return amount


def to_dict(event: Event) -> dict[str, Any]:
    """The JSON object of mailfold.events (schema version 1)."""
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event.event_id,
        "provider_event_id": event.provider_event_id,
        "account": event.account,
        "source": event.source,
        "native_type": event.native_type,
        "type": event.type.value,
        "occurred_at": format_time(event.occurred_at),
        "received_at": format_time(event.received_at) if event.received_at else None,
        "campaign_id": event.campaign_id,
        "delivery_id": event.delivery_id,
        "message_id": event.message_id,
        "recipient": {
            "email": event.recipient.email,
            "contact_id": event.recipient.contact_id,
            "client_contact_id": event.recipient.client_contact_id,
            "first_name": event.recipient.first_name,
            "surname": event.recipient.surname,
        },
        "bounce": None,
        "url": event.url,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "machine": event.machine,
        "machine_reason": event.machine_reason,
        "agent_class": event.agent_class,
        "ab_version": event.ab_version,
        "conversion": None,
        "name": event.name,
        "payload": event.payload,
    }
    if event.bounce is not None:
        out["bounce"] = {
            "class": event.bounce.bounce_class,
            "code": event.bounce.code,
            "reason": event.bounce.reason,
        }
    if event.classifier_version is not None:
        out["provider_machine"] = event.provider_machine
        out["classifier_version"] = event.classifier_version
    if event.occurred_at_estimated:
        out["occurred_at_estimated"] = True
    if event.conversion is not None:
        out["conversion"] = {
            "amount": str(event.conversion.amount),
            "currency": event.conversion.currency,
        }
    return out


def encode(event: Event) -> bytes:
    return orjson.dumps(to_dict(event))


def decode(data: bytes) -> Event:
    """Read one mailfold.events record; raises ValueError/KeyError on anything malformed."""
    raw = orjson.loads(data)
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {raw.get('schema_version')!r}")
    rcpt = raw["recipient"]
    bounce = raw.get("bounce")
    conversion = raw.get("conversion")
    received = raw.get("received_at")
    return Event(
        event_id=raw["event_id"],
        provider_event_id=raw.get("provider_event_id"),
        account=raw["account"],
        source=raw["source"],
        native_type=raw["native_type"],
        type=EventType(raw["type"]),
        occurred_at=parse_time(raw["occurred_at"]),
        received_at=parse_time(received) if received else None,
        campaign_id=raw.get("campaign_id"),
        delivery_id=raw.get("delivery_id"),
        message_id=raw.get("message_id"),
        recipient=Recipient(
            email=rcpt.get("email"),
            contact_id=rcpt.get("contact_id"),
            client_contact_id=rcpt.get("client_contact_id"),
            first_name=rcpt.get("first_name"),
            surname=rcpt.get("surname"),
        ),
        bounce=Bounce(bounce.get("class"), bounce.get("code"), bounce.get("reason"))
        if bounce
        else None,
        url=raw.get("url"),
        ip=raw.get("ip"),
        user_agent=raw.get("user_agent"),
        machine=raw.get("machine"),
        machine_reason=raw.get("machine_reason"),
        agent_class=raw.get("agent_class"),
        ab_version=raw.get("ab_version"),
        conversion=Conversion(parse_amount(conversion["amount"]), conversion.get("currency"))
        if conversion
        else None,
        name=raw.get("name"),
        payload=raw.get("payload"),
        provider_machine=raw.get("provider_machine"),
        classifier_version=raw.get("classifier_version"),
        occurred_at_estimated=raw.get("occurred_at_estimated") or False,
    )
