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

from email.utils import parseaddr
from typing import Any

from service.errors import ParseError
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    Nonce,
    RawRecord,
    WebhookRequest,
    iso_time,
    items,
    make_event,
    mapping,
    metadata_fields,
    prose,
    read_json,
    shown,
    text,
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
    data = read_json(record.body, "resend")
    if not isinstance(data, dict):
        raise ParseError("resend: body is not a JSON object")
    name = text(data, "type", "resend")
    if name is None:
        raise ParseError("resend: body has no type")
    if name in IGNORED_EVENTS or not name.startswith("email."):
        return []
    if name not in EVENT_TYPES:
        raise ParseError(f"resend: unknown event type {shown(name)}")
    item = mapping(data, "data", "resend")
    where = f"resend: {name}: data"
    kind, bounce = EVENT_TYPES[name], None
    if name == "email.bounced":
        kind, bounce = bounced(mapping(item, "bounce", where), f"{where}: bounce")
    elif name == "email.suppressed":
        suppressed = mapping(item, "suppressed", where)
        bounce = Bounce(None, prose(suppressed.get("type")), prose(suppressed.get("message")))
    elif name == "email.failed":
        bounce = Bounce(None, None, prose(mapping(item, "failed", where).get("reason")))
    email, msg_id = recipient(item, where), text(item, "email_id", where)
    if email is None and msg_id is None:
        raise ParseError(f"resend: {name} names neither a recipient nor an email_id")
    meta = metadata_fields(tags(item), record.metadata_keys, where)
    click = mapping(item, "click", where)
    event_id = record.headers.get(ID_HEADER) or None
    return [
        make_event(
            record,
            native_type=name,
            type=kind,
            # The top-level created_at is the event's; data.created_at is the email's creation.
            occurred_at=iso_time(data.get("created_at"), "created_at", f"resend: {name}"),
            recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
            message_id=msg_id,
            provider_event_id=event_id,
            id_discriminator=event_id,  # svix-id stays the same across retries and replays
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=bounce,
            # Opens carry no reader details; clicks carry them in data.click.
            url=text(click, "link", f"{where}: click") if kind is EventType.CLICKED else None,
            ip=text(click, "ipAddress", f"{where}: click") if kind is EventType.CLICKED else None,
            user_agent=prose(click.get("userAgent")) if kind is EventType.CLICKED else None,
        )
    ]


def bounced(detail: dict[str, Any], where: str) -> tuple[EventType, Bounce]:
    kind, sub_type = text(detail, "type", where), text(detail, "subType", where)
    message = prose(detail.get("message"))
    if sub_type is not None and sub_type.lower() == SUPPRESSED:
        return EventType.DROPPED, Bounce(None, sub_type, message)
    bounce_class = BOUNCE_CLASSES.get(kind.lower()) if kind else None
    return EventType.BOUNCED, Bounce(bounce_class, sub_type, message)


def recipient(item: dict[str, Any], where: str) -> str | None:
    """The first `to` address, which may come as `"Name <addr>"`.

    A message to several recipients yields an event per recipient that does not say which one
    it is about (anymail), so only a single-recipient message names its recipient exactly.
    """
    if isinstance(item.get("to"), list):
        addresses = items(item, "to", where, str)
        first = addresses[0] if addresses else None
    else:
        first = text(item, "to", where)
    if first is None:
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


ADAPTER = Adapter(name="resend", verify=verify, parse=parse, keep_headers=(ID_HEADER,), nonce=nonce)
