"""Resend webhooks: one JSON event per POST, signed by Svix (`svix-id`, `svix-timestamp`,
`svix-signature`: HMAC-SHA256 over `{id}.{timestamp}.{body}` with the endpoint's `whsec_` secret).

The event's id is only in the `svix-id` header (the same on retries and replays), which ingest
keeps for `parse`.

Docs:
- https://resend.com/docs/dashboard/webhooks/event-types, https://resend.com/docs/webhooks/emails/
- https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests
- https://docs.svix.com/receiving/verifying-payloads/how-manual
- https://github.com/resend/resend-node/blob/main/src/webhooks/interfaces/webhook-event.interface.ts
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parseaddr
from typing import Any

import orjson

from service.errors import ParseError
from service.events import Bounce, Event, EventType, Recipient, parse_time
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    Nonce,
    RawRecord,
    WebhookRequest,
    make_event,
    metadata_fields,
)
from service.webhooks.standard_webhooks import message_nonce, verify_signed

ID_HEADER = "svix-id"

# Resend "type" -> canonical type. "email.bounced" is split by bounce type below.
EVENT_TYPES: dict[str, EventType] = {
    "email.sent": EventType.SENT,
    "email.delivered": EventType.DELIVERED,
    "email.delivery_delayed": EventType.DEFERRED,
    "email.bounced": EventType.BOUNCED,
    "email.complained": EventType.COMPLAINED,
    "email.opened": EventType.OPENED,
    "email.clicked": EventType.CLICKED,
    # Resend did not send: the address is suppressed, or the send itself failed.
    "email.suppressed": EventType.DROPPED,
    "email.failed": EventType.DROPPED,
}

# Email events that say nothing about delivery: a send planned for later, and inbound mail.
# Events outside "email." (contact.*, domain.*, suppression.*, inbox.*) are about the account.
IGNORED_EVENTS = frozenset({"email.scheduled", "email.received"})

# email.bounced "bounce.type" -> class. Resend's bounce types are SES's.
BOUNCE_CLASSES = {"permanent": "hard", "transient": "soft"}
# A bounce with subType "Suppressed" was never attempted: Resend refused to send to an address
# on its suppression list (older payloads; newer ones are email.suppressed).
SUPPRESSED = "suppressed"


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless a `v1` Svix signature by an endpoint secret covers id, time, body."""
    verify_signed(request, credentials, ctx, provider="resend", prefix="svix", prefixed_keys=False)


def nonce(request: WebhookRequest, ctx: Context) -> Nonce:
    """The svix-id of a verified request: Svix sends a message again under the same id."""
    return message_nonce(request, ctx, "svix")


def parse(record: RawRecord) -> list[Event]:
    """Turn one Resend POST into zero or one canonical event."""
    try:
        data = orjson.loads(record.body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"resend: body is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ParseError("resend: body is not a JSON object")
    name = data.get("type")
    if not isinstance(name, str):
        raise ParseError("resend: body has no type")
    if name in IGNORED_EVENTS or not name.startswith("email."):
        return []
    if name not in EVENT_TYPES:
        raise ParseError(f"resend: unknown event type {name!r}")
    item = obj(data.get("data"))
    kind, bounce = EVENT_TYPES[name], None
    if name == "email.bounced":
        kind, bounce = bounced(obj(item.get("bounce")))
    elif name == "email.suppressed":
        suppressed = obj(item.get("suppressed"))
        bounce = Bounce(None, text(suppressed.get("type")), text(suppressed.get("message")))
    elif name == "email.failed":
        bounce = Bounce(None, None, text(obj(item.get("failed")).get("reason")))
    email, msg_id = recipient(item), text(item.get("email_id"))
    if email is None and msg_id is None:
        raise ParseError(f"resend: {name} names neither a recipient nor an email_id")
    meta = metadata_fields(tags(item), record.metadata_keys)
    click = obj(item.get("click"))
    event_id = record.headers.get(ID_HEADER) or None
    return [
        make_event(
            record,
            native_type=name,
            type=kind,
            # The top-level created_at is the event's; data.created_at is the email's creation.
            occurred_at=occurred_at(data.get("created_at"), name),
            recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
            message_id=msg_id,
            provider_event_id=event_id,
            id_discriminator=event_id,  # svix-id stays the same across retries and replays
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=bounce,
            # Opens carry no reader details; clicks carry them in data.click.
            url=text(click.get("link")) if kind is EventType.CLICKED else None,
            ip=text(click.get("ipAddress")) if kind is EventType.CLICKED else None,
            user_agent=text(click.get("userAgent")) if kind is EventType.CLICKED else None,
        )
    ]


def bounced(detail: dict[str, Any]) -> tuple[EventType, Bounce]:
    kind, sub_type = text(detail.get("type")), text(detail.get("subType"))
    message = text(detail.get("message"))
    if sub_type is not None and sub_type.lower() == SUPPRESSED:
        return EventType.DROPPED, Bounce(None, sub_type, message)
    bounce_class = BOUNCE_CLASSES.get(kind.lower()) if kind else None
    return EventType.BOUNCED, Bounce(bounce_class, sub_type, message)


def recipient(item: dict[str, Any]) -> str | None:
    """The first `to` address, which may come as `"Name <addr>"`.

    A message to several recipients yields an event per recipient that does not say which one
    it is about (anymail), so only a single-recipient message names its recipient exactly.
    """
    to = item.get("to")
    first = to[0] if isinstance(to, list) and to else to
    if not isinstance(first, str):
        return None
    address = parseaddr(first)[1].strip()
    return address or None


def tags(item: dict[str, Any]) -> dict[str, Any]:
    """Resend tags are `{name: value}`; the send API takes them as `[{name, value}]`, a shape
    older payloads echo."""
    value = item.get("tags")
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        pairs = [t for t in value if isinstance(t, dict) and isinstance(t.get("name"), str)]
        return {t["name"]: t.get("value") for t in pairs}
    return {}


def occurred_at(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ParseError(f"resend: {name} has no created_at")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ParseError(f"resend: created_at {value!r} is not an ISO-8601 time") from exc


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    value = str(value).strip()
    return value or None


ADAPTER = Adapter(name="resend", verify=verify, parse=parse, keep_headers=(ID_HEADER,), nonce=nonce)
