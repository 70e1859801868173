"""Postmark webhooks: one JSON object per POST, authenticated only by HTTP Basic credentials.

Docs: postmarkapp.com/developer/webhooks/ (delivery, bounce, spam-complaint, open-tracking,
click, subscription-change webhook pages), postmarkapp.com/developer/api/bounce-api (bounce
types), postmarkapp.com/developer/api/webhooks-api (HttpAuth). Postmark signs nothing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from service.errors import ParseError
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    RawRecord,
    WebhookRequest,
    iso_time,
    make_event,
    mapping,
    metadata_fields,
    prose,
    read_json,
    shown,
    text,
    verify_basic,
)

# Postmark "RecordType" -> canonical type, and the field holding the event time.
# Bounce and SubscriptionChange are decided further by their Type / SuppressionReason.
RECORD_TYPES: dict[str, tuple[EventType | None, str]] = {
    "Delivery": (EventType.DELIVERED, "DeliveredAt"),
    "Bounce": (None, "BouncedAt"),
    "SpamComplaint": (EventType.COMPLAINED, "BouncedAt"),
    "Open": (EventType.OPENED, "ReceivedAt"),
    "Click": (EventType.CLICKED, "ReceivedAt"),
    "SubscriptionChange": (None, "ChangedAt"),
}

# Bounce "Type" -> (canonical type, bounce class); None: not an event about the recipient.
BOUNCE_TYPES: dict[str, tuple[EventType, str | None] | None] = {
    "HardBounce": (EventType.BOUNCED, "hard"),
    "SoftBounce": (EventType.BOUNCED, "soft"),
    "Unknown": (EventType.BOUNCED, None),  # "Unable to classify the NDR"
    "VirusNotification": (EventType.BOUNCED, None),
    # "delivered, but ... blocked by the user, or classified as spam": a filter, not a complaint.
    "SpamNotification": (EventType.BOUNCED, "soft"),
    "Transient": (EventType.DEFERRED, None),  # "Message delayed"
    "DnsError": (EventType.DEFERRED, None),  # "A temporary DNS error"
    "Unsubscribe": (EventType.UNSUBSCRIBED, None),
    "SpamComplaint": (EventType.COMPLAINED, None),
    # Postmark never tried: the address is invalid, deactivated or refused by policy.
    "BadEmailAddress": (EventType.DROPPED, None),
    "ManuallyDeactivated": (EventType.DROPPED, None),
    "Unconfirmed": (EventType.DROPPED, None),
    "Blocked": (EventType.DROPPED, None),
    "DMARCPolicy": (EventType.DROPPED, None),
    "SMTPApiError": (EventType.DROPPED, None),
    "TemplateRenderingFailed": (EventType.DROPPED, None),
    # Replies and probes that say nothing about delivery.
    "AutoResponder": None,
    "AddressChange": None,
    "ChallengeVerification": None,
    "OpenRelayTest": None,
    "Subscribe": None,
    "InboundError": None,
}

# SubscriptionChange "SuppressionReason" when SuppressSending is true. A recipient's unsubscribe
# is a ManualSuppression. Broadcast streams have no Bounce/SpamComplaint webhooks, so there the
# suppression is the only report of a hard bounce or a complaint.
SUPPRESSION_REASONS: dict[str | None, tuple[EventType, str | None]] = {
    "ManualSuppression": (EventType.UNSUBSCRIBED, None),
    None: (EventType.UNSUBSCRIBED, None),
    "HardBounce": (EventType.BOUNCED, "hard"),
    "SpamComplaint": (EventType.COMPLAINED, None),
}

BOUNCE_KINDS = frozenset({EventType.BOUNCED, EventType.DEFERRED, EventType.DROPPED})

# Postmark times carry up to 7 fractional digits; Python keeps 6.
_FRACTION = re.compile(r"(\.\d{6})\d+")


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless the Basic credentials equal one of the account's `user:password`."""
    verify_basic(request, credentials, "postmark")


def parse(record: RawRecord) -> list[Event]:
    """Turn one Postmark POST into zero or one canonical event."""
    data = read_json(record.body, "postmark")
    if not isinstance(data, dict):
        raise ParseError("postmark: body is not a JSON object")
    name = text(data, "RecordType", "postmark")
    if name not in RECORD_TYPES:
        if name in (None, "Inbound"):
            raise ParseError("postmark: an inbound message reached the events webhook")
        raise ParseError(f"postmark: unknown RecordType {shown(name)}")
    kind, time_field = RECORD_TYPES[name]
    bounce_class: str | None = None
    if name == "Bounce":
        kind, bounce_class = _bounce_type(data)
    elif name == "SubscriptionChange":
        kind, bounce_class = _suppression(data)
    if kind is None:
        return []
    where = f"postmark: {name}"
    # Email: Bounce, SpamComplaint; Recipient: the others.
    email = text(data, "Email", where) or text(data, "Recipient", where)
    message_id = text(data, "MessageID", where)
    if not email and not message_id:
        raise ParseError(f"postmark: {name} names neither a recipient nor a message")
    meta = metadata_fields(_lookup(data, where), record.metadata_keys, where)
    event_id = text(data, "ID", where)  # an integer beyond 2^53, kept digit for digit
    engaged = name in ("Open", "Click")
    return [
        make_event(
            record,
            native_type=name,
            type=kind,
            occurred_at=_time(data, time_field, record),
            recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
            message_id=message_id,
            provider_event_id=event_id,
            id_discriminator=event_id,  # Bounce/SpamComplaint ids are fixed for the record
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=_bounce(data, bounce_class) if kind in BOUNCE_KINDS else None,
            url=text(data, "OriginalLink", where) if name == "Click" else None,
            ip=text(mapping(data, "Geo", where), "IP", f"{where}: Geo") if engaged else None,
            user_agent=prose(data.get("UserAgent")) if engaged else None,
        )
    ]


def _bounce_type(data: dict[str, Any]) -> tuple[EventType | None, str | None]:
    name = text(data, "Type", "postmark: Bounce")
    if name not in BOUNCE_TYPES:
        raise ParseError(f"postmark: unknown bounce Type {shown(name)}")
    return BOUNCE_TYPES[name] or (None, None)


def _suppression(data: dict[str, Any]) -> tuple[EventType | None, str | None]:
    if data.get("SuppressSending") is not True:
        return None, None  # a reactivation: the address may be mailed again
    reason = text(data, "SuppressionReason", "postmark: SubscriptionChange")
    if reason not in SUPPRESSION_REASONS:
        raise ParseError(f"postmark: unknown SuppressionReason {shown(reason)}")
    return SUPPRESSION_REASONS[reason]


def _bounce(data: dict[str, Any], bounce_class: str | None) -> Bounce:
    # The receiving server's words and Postmark's: kept as text whatever their JSON type.
    reason = prose(data.get("Details")) or prose(data.get("Description"))
    reason = reason or prose(data.get("SuppressionReason"))
    return Bounce(bounce_class, prose(data.get("TypeCode")), reason)


def _time(data: dict[str, Any], field: str, record: RawRecord) -> datetime:
    value = data.get(field)
    if value is None and data.get("RecordType") == "Bounce":
        # Some bounce records (Type Unsubscribe) come without BouncedAt or Email (anymail #447):
        # the time Mailfold received them is the closest known.
        return record.received_at
    if isinstance(value, str):
        value = _FRACTION.sub(r"\1", value)
    return iso_time(value, field, f"postmark: {data.get('RecordType')}")


def _lookup(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Metadata, plus the message's Tag under "Tag" so an account may map an id to it."""
    meta = dict(mapping(data, "Metadata", where))
    if data.get("Tag"):
        meta.setdefault("Tag", data["Tag"])
    return meta


ADAPTER = Adapter(name="postmark", verify=verify, parse=parse)
