"""SparkPost event webhooks: JSON arrays of `{"msys": {"<class>_event": {...}}}`, Basic auth.

Docs: developers.sparkpost.com/api/webhooks (event samples, the `[{"msys": {}}]` validation
batch), support.sparkpost.com/docs/deliverability/bounce-classification-codes,
sparkpost.com/docs/tech-resources/webhook-authentication, .../webhook-data-streams,
sparkpost.com/docs/user-guide/comparing-data (webhook vs Events API timestamps).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from service.errors import ParseError
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    HandshakeReply,
    RawRecord,
    WebhookRequest,
    epoch_time,
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

# SparkPost `type` -> canonical type. "bounce" and "out_of_band" are split by bounce_class below.
EVENT_TYPES: dict[str, EventType] = {
    "injection": EventType.SENT,
    "delivery": EventType.DELIVERED,
    "delay": EventType.DEFERRED,
    "bounce": EventType.BOUNCED,
    "out_of_band": EventType.BOUNCED,  # the remote MTA accepted, then bounced asynchronously
    "policy_rejection": EventType.DROPPED,
    "generation_failure": EventType.DROPPED,
    "generation_rejection": EventType.DROPPED,
    # "initial_open" is the pixel at the top of the message, "open" the one at the bottom: one
    # human view can produce both.
    "open": EventType.OPENED,
    "initial_open": EventType.OPENED,
    "amp_open": EventType.OPENED,
    "amp_initial_open": EventType.OPENED,
    "click": EventType.CLICKED,
    "amp_click": EventType.CLICKED,
    "list_unsubscribe": EventType.UNSUBSCRIBED,
    "link_unsubscribe": EventType.UNSUBSCRIBED,
    "spam_complaint": EventType.COMPLAINED,
}

# Documented event types that say nothing about a sent message's recipient; dropped on purpose:
# inbound relay, A/B test results, SMS status.
IGNORED_TYPES = frozenset(
    {
        "relay_injection",
        "relay_rejection",
        "relay_delivery",
        "relay_tempfail",
        "relay_permfail",
        "ab_test_completed",
        "ab_test_cancelled",
        "sms_status",
    }
)
# Event classes with no message event inside: inbound relay messages and Ingest API results
# (whose types are just "success" / "error").
IGNORED_CLASSES = frozenset({"relay_message", "ingest_event"})

# bounce_class -> bounce class, from SparkPost's classification table. Its "Block" category
# (50-54) is "usually temporary", so soft; 1 (Undetermined) says nothing, so null.
HARD_CLASSES = frozenset({"10", "30", "90"})
SOFT_CLASSES = frozenset(
    {"20", "21", "22", "23", "24", "40", "50", "51", "52", "53", "54", "60", "70", "100"}
)
# 25 "Admin Failure" is SparkPost refusing by its own policy (e.g. the suppression list): the
# message was never attempted, as with policy_rejection, so it is dropped even inside a bounce.
# 26 "Smart Send Suppression" is the same kind of refusal.
ADMIN_CLASSES = frozenset({"25", "26"})

BOUNCE_TYPES = frozenset({"bounce", "out_of_band"})
DETAIL_TYPES = frozenset(
    {"delay", "policy_rejection", "generation_failure", "generation_rejection"}
)
ENGAGEMENT_TYPES = frozenset(
    {"open", "initial_open", "amp_open", "amp_initial_open", "click", "amp_click"}
)

EPOCH = re.compile(r"\d+(\.\d+)?")


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless the request carries Basic credentials equal to a configured pair.

    SparkPost event webhooks are not signed; Basic auth set on the webhook is what proves the
    sender, so the body itself is not covered.
    """
    verify_basic(request, credentials, "sparkpost")


async def handshake(
    request: WebhookRequest, credentials: Credentials, ctx: Context
) -> HandshakeReply | None:
    """Answer SparkPost's validation batch `[{"msys": {}}]` (sent after verify has passed)."""
    try:
        batch = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(batch, list) and batch and all(item == {"msys": {}} for item in batch):
        return HandshakeReply(200, {"ok": True})
    return None


def parse(record: RawRecord) -> list[Event]:
    """Turn one SparkPost batch into canonical events; pings and ignored types yield nothing."""
    batch = read_json(record.body, "sparkpost")
    if not isinstance(batch, list):
        raise ParseError("sparkpost: body is not a JSON array")
    events = []
    for index, item in enumerate(batch):
        unwrapped = unwrap(item, index)
        if unwrapped is not None:
            event = parse_event(record, *unwrapped, index)
            if event is not None:
                events.append(event)
    return events


def unwrap(item: Any, index: int) -> tuple[str, dict[str, Any]] | None:
    """`{"msys": {"<class>": {...}}}` -> (class, event); None for a ping (`{"msys": {}}`)."""
    msys = item.get("msys") if isinstance(item, dict) else None
    if not isinstance(msys, dict):
        raise ParseError(f"sparkpost: item {index} has no msys object")
    if not msys:
        return None
    if len(msys) != 1:
        raise ParseError(f"sparkpost: item {index} has several event classes {sorted(msys)}")
    ((event_class, event),) = msys.items()
    if not isinstance(event, dict):
        raise ParseError(f"sparkpost: item {index} {event_class} is not an object")
    return event_class, event


def parse_event(
    record: RawRecord, event_class: str, event: dict[str, Any], index: int
) -> Event | None:
    """One unwrapped SparkPost event -> a canonical event, or None when dropped on purpose."""
    where = f"sparkpost: item {index}"
    name = text(event, "type", where)
    if event_class in IGNORED_CLASSES or name in IGNORED_TYPES:
        return None
    if name is None or name not in EVENT_TYPES:
        raise ParseError(
            f"sparkpost: unknown event type {shown(name)} in {shown(event_class)} (item {index})"
        )
    kind, bounce = EVENT_TYPES[name], None
    if name in BOUNCE_TYPES:
        bounce_class = text(event, "bounce_class", where)
        if bounce_class in ADMIN_CLASSES:
            kind = EventType.DROPPED
        bounce = detail(event, classify(bounce_class))
    elif name in DETAIL_TYPES:
        bounce = detail(event, None)
    meta = merged_metadata(event, where)
    ids = metadata_fields(meta, record.metadata_keys, where)
    engagement = name in ENGAGEMENT_TYPES
    event_id = text(event, "event_id", where)
    return make_event(
        record,
        native_type=name,
        type=kind,
        occurred_at=occurred_at(event.get("timestamp"), where),
        recipient=Recipient(
            text(event, "rcpt_to", where), ids["contact_id"], ids["client_contact_id"]
        ),
        message_id=text(event, "transmission_id", where),
        provider_event_id=event_id,
        id_discriminator=event_id,  # "uniquely identifies a given event", stable across retries
        campaign_id=ids["campaign_id"],
        delivery_id=ids["delivery_id"],
        ab_version=ids["ab_version"],
        bounce=bounce,
        url=text(event, "target_link_url", where) if name in {"click", "amp_click"} else None,
        # On message events ip_address is the receiving MX; only on opens/clicks is it the reader.
        ip=text(event, "ip_address", where) if engagement else None,
        user_agent=prose(event.get("user_agent")) if engagement else None,
    )


def classify(bounce_class: str | None) -> str | None:
    """SparkPost bounce_class -> "hard", "soft" or None (undetermined or unlisted)."""
    if bounce_class in HARD_CLASSES:
        return "hard"
    if bounce_class in SOFT_CLASSES:
        return "soft"
    return None


def detail(event: Mapping[str, Any], bounce_class: str | None) -> Bounce:
    """The remote server's code and its unredacted answer (`reason` masks the address)."""
    reason = prose(event.get("raw_reason")) or prose(event.get("reason"))
    return Bounce(bounce_class, prose(event.get("error_code")), reason)


def merged_metadata(event: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Transmission `metadata` overlaid by the recipient's own `rcpt_meta`, which wins."""
    return {**mapping(event, "metadata", where), **mapping(event, "rcpt_meta", where)}


def occurred_at(value: Any, where: str) -> datetime:
    """Webhook timestamps are epoch seconds as a string ("1454442600"); accept a bare number
    and the Events API's ISO form too, both seen in published payloads."""
    if isinstance(value, str) and not EPOCH.fullmatch(value.strip()):
        return iso_time(value, "timestamp", where)
    return epoch_time(value, "timestamp", where)


ADAPTER = Adapter(name="sparkpost", verify=verify, parse=parse, handshake=handshake)
