"""Mailjet Event API: one bare JSON event per POST, or an array with grouping on; Basic auth.

Mailjet signs nothing; the callback URL carries Basic credentials (`https://user:pass@host/...`).

Docs:
- https://dev.mailjet.com/email/guides/webhooks/ (event samples, grouping, error table)
- https://github.com/mailjet/api-documentation/blob/master/guides/_event-api.md
"""

from __future__ import annotations

from typing import Any

import orjson

from service.errors import ParseError
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    RawRecord,
    WebhookRequest,
    epoch_time,
    kind,
    make_event,
    metadata_fields,
    parse_batch,
    prose,
    read_json,
    shown,
    text,
    verify_basic,
)

# Mailjet "event" -> canonical type. "bounce" is split by hard_bounce and error below.
EVENT_TYPES: dict[str, EventType] = {
    "sent": EventType.DELIVERED,  # "the destination SMTP server ... has accepted the message"
    "bounce": EventType.BOUNCED,
    "blocked": EventType.DROPPED,  # Mailjet refused to send (preblocked, duplicate, spam...)
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spam": EventType.COMPLAINED,
    "unsub": EventType.UNSUBSCRIBED,
}

# "greylisted: This is a temporary error due to possible unrecognised senders. Delivery will be
# re-attempted." (error table): Mailjet retries, so it is a deferral, not a bounce.
GREYLISTED = "greylisted"


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless the Basic credentials equal one of the account's `user:password`."""
    verify_basic(request, credentials, "mailjet")


def parse(record: RawRecord) -> list[Event]:
    """Turn one Mailjet POST (a bare event, or an array when grouping is on) into events."""
    # orjson keeps integers up to 64 bits exact: MessageID exceeds 2^53, so it must never pass
    # through a float.
    data = read_json(record.body, "mailjet")
    batch = data if isinstance(data, list) else [data]
    return parse_batch(record, batch, "mailjet", parse_event)


def parse_event(record: RawRecord, item: dict[str, Any], index: int) -> Event:
    where = f"mailjet: event {index}"
    name = text(item, "event", where)
    if name is None or name not in EVENT_TYPES:
        raise ParseError(f"mailjet: unknown event {shown(name)} (event {index})")
    kind, bounce = EVENT_TYPES[name], None
    if name == "bounce":
        kind, bounce = bounce_type(item)
    elif name == "blocked":
        bounce = Bounce(None, None, error_text(item))
    email = text(item, "email", where)
    if email is None:
        raise ParseError(f"mailjet: {name} event {index} has no email")
    meta = metadata_fields(lookup(item), record.metadata_keys, where)
    engaged = kind in (EventType.OPENED, EventType.CLICKED)
    return make_event(
        record,
        native_type=name,
        type=kind,
        occurred_at=epoch_time(item.get("time"), "time", where),
        recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
        message_id=message_id(item, index),
        # No event id exists: make_event derives one from message, recipient, type, time, url.
        campaign_id=meta["campaign_id"],
        delivery_id=meta["delivery_id"],
        ab_version=meta["ab_version"],
        bounce=bounce,
        url=text(item, "url", where) if kind is EventType.CLICKED else None,
        ip=text(item, "ip", where) if engaged else None,
        user_agent=prose(item.get("agent")) if engaged else None,
    )


def bounce_type(item: dict[str, Any]) -> tuple[EventType, Bounce]:
    """`hard_bounce` decides the class; `blocked: true` only says Mailjet now blocks the address."""
    hard = item.get("hard_bounce")
    error = prose(item.get("error"))
    if error is not None and error.lower() == GREYLISTED and hard is not True:
        return EventType.DEFERRED, Bounce(None, None, error_text(item))
    bounce_class = "hard" if hard is True else "soft" if hard is False else None
    return EventType.BOUNCED, Bounce(bounce_class, None, error_text(item))


def error_text(item: dict[str, Any]) -> str | None:
    """`error_related_to: error` ("recipient: user unknown"), or the raw SMTP reply."""
    related, error = prose(item.get("error_related_to")), prose(item.get("error"))
    if error is not None:
        return f"{related}: {error}" if related else error
    return prose(item.get("smtp_reply"))


def message_id(item: dict[str, Any], index: int) -> str | None:
    """MessageID as the send API returns it, in decimal; grouped samples carry only the
    deprecated string `mj_message_id`."""
    value = item.get("MessageID")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, float):
        # Only an integer wider than 64 bits becomes a float here: its digits are already lost.
        raise ParseError(f"mailjet: MessageID of event {index} is not an exact integer")
    if value is not None and not isinstance(value, str):
        raise ParseError(f"mailjet: event {index}: MessageID must be an integer, not {kind(value)}")
    return text(item, "mj_message_id", f"mailjet: event {index}")


def lookup(item: dict[str, Any]) -> dict[str, Any]:
    """The send-time `Payload` (EventPayload, JSON text) plus CustomID and campaign fields, so an
    account may map an attribution id to any of them."""
    meta: dict[str, Any] = {}
    payload = item.get("Payload")
    if isinstance(payload, str) and payload.strip().startswith("{"):
        try:
            decoded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict):
            meta.update(decoded)
    elif isinstance(payload, dict):
        meta.update(payload)
    for key in ("CustomID", "customcampaign", "mj_campaign_id", "mj_contact_id"):
        if item.get(key) not in (None, "", 0, "0"):  # Mailjet sends 0 for "none"
            meta.setdefault(key, item[key])
    return meta


ADAPTER = Adapter(name="mailjet", verify=verify, parse=parse)
