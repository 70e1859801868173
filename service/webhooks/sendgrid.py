"""SendGrid Event Webhook: JSON arrays of events, optionally signed with ECDSA P-256 (SHA-256).

Docs:
- https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
- https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
- https://github.com/sendgrid/sendgrid-python/blob/main/sendgrid/helpers/eventwebhook/__init__.py
- https://support.sendgrid.com/hc/en-us/articles/4452853929115 (sg_machine_open)
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from service.errors import ParseError, Rejected
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    RawRecord,
    WebhookRequest,
    epoch_time,
    header,
    make_event,
    mapping,
    metadata_fields,
    parse_batch,
    prose,
    read_json,
    shown,
    text,
)

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"

# SendGrid "event" -> canonical type.
EVENT_TYPES: dict[str, EventType] = {
    "processed": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "bounce": EventType.BOUNCED,  # class from "type" below
    "dropped": EventType.DROPPED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spamreport": EventType.COMPLAINED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
}

# Documented events that produce nothing:
# - group_resubscribe: the recipient re-joined an unsubscribe group; no canonical type says that.
# - account_status_change: a compliance action on the SendGrid account itself, with no recipient.
IGNORED_EVENTS = frozenset({"group_resubscribe", "account_status_change"})

# A bounce's "type": "bounce" is a hard bounce, "blocked" a temporary refusal (event.md, "type").
# Payloads from before "blocked" existed carry no type; the docs describe "bounce" itself as
# permanent, so those are hard too.
BOUNCE_CLASSES: dict[str | None, str] = {"bounce": "hard", "blocked": "soft", None: "hard"}

# Batches are flushed "every 30 seconds or when the batch size reaches 768 kilobytes" per
# server, so one POST can run past 768 KB.
MAX_BODY_BYTES = 2 * 1024 * 1024


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless an active public key verifies the signature over timestamp + body."""
    signature = header(request, SIGNATURE_HEADER)
    timestamp = header(request, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise Rejected("sendgrid: signature or timestamp header missing")
    check_timestamp(timestamp, ctx)
    try:
        der_signature = base64.b64decode(signature, validate=True)
    except binascii.Error as exc:
        raise Rejected("sendgrid: signature is not base64") from exc
    keys = [key for key in map(load_key, credentials.secrets) if key is not None]
    if not keys:
        raise Rejected("sendgrid: no usable verification key is configured")
    # The signed bytes are the timestamp header exactly as sent, then the raw body.
    signed = timestamp.encode() + request.body
    for key in keys:
        try:
            key.verify(der_signature, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return
    raise Rejected("sendgrid: signature does not match")


def check_timestamp(timestamp: str, ctx: Context) -> None:
    # SendGrid documents no tolerance; the window is Mailfold's own replay protection.
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise Rejected("sendgrid: timestamp header is not epoch seconds")
    age = abs(ctx.now().timestamp() - int(timestamp))
    if age > ctx.replay_window.total_seconds():
        raise Rejected("sendgrid: timestamp outside the replay window")


def load_key(secret: str) -> ec.EllipticCurvePublicKey | None:
    """A P-256 public key from PEM or from base64 DER as the SendGrid UI shows it; else None."""
    try:
        if "BEGIN PUBLIC KEY" in secret:
            key = load_pem_public_key(secret.strip().encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(secret.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


def parse(record: RawRecord) -> list[Event]:
    """Turn one SendGrid POST (an array of events) into canonical events."""
    batch = read_json(record.body, "sendgrid")
    if not isinstance(batch, list):
        raise ParseError("sendgrid: body is not a JSON array of events")
    return parse_batch(record, batch, "sendgrid", parse_event)


def parse_event(record: RawRecord, item: dict[str, Any], index: int) -> Event | None:
    where = f"sendgrid: event {index}"
    name = text(item, "event", where)
    if name is None:
        raise ParseError(f"sendgrid: event {index} has no event name")
    native = name.lower()
    if native in IGNORED_EVENTS:
        return None
    type_ = EVENT_TYPES.get(native)
    if type_ is None:
        raise ParseError(f"sendgrid: unknown event {shown(name)} (event {index})")
    email = text(item, "email", where)
    if email is None:
        raise ParseError(f"sendgrid: {native} event {index} has no email")
    meta = metadata_fields(custom_args(item), record.metadata_keys, where)
    engaged = type_ in (EventType.OPENED, EventType.CLICKED)
    machine, reason, agent = machine_open(item) if native == "open" else (None, None, None)
    return make_event(
        record,
        native_type=native,
        type=type_,
        occurred_at=epoch_time(item.get("timestamp"), "timestamp", where),
        recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
        message_id=message_id(item, where),
        provider_event_id=text(item, "sg_event_id", where),
        id_discriminator=discriminator(native, item, where),
        campaign_id=meta["campaign_id"],
        delivery_id=meta["delivery_id"],
        ab_version=meta["ab_version"],
        bounce=bounce(native, item, where),
        url=text(item, "url", where) if type_ is EventType.CLICKED else None,
        # On delivery events "ip" is SendGrid's sending IP, not the recipient's.
        ip=text(item, "ip", where) if engaged else None,
        user_agent=prose(item.get("useragent")) if engaged else None,
        machine=machine,
        machine_reason=reason,
        agent_class=agent,
    )


def discriminator(native: str, item: dict[str, Any], where: str) -> str | None:
    """What tells two real events apart when message, recipient, second and URL agree.

    sg_event_id changes when SendGrid retries (sendgrid/sendgrid-nodejs#1435), so it cannot be
    used. These fields stay the same on a retry: the deferral's attempt number, the bounce type,
    and which copy of a repeated link was clicked (scanners click every link within a second).
    """
    if native == "deferred":
        return text(item, "attempt", where)
    if native == "bounce":
        return text(item, "type", where)
    if native == "click":
        return text(mapping(item, "url_offset", where), "index", f"{where}: url_offset")
    return None


def custom_args(item: dict[str, Any]) -> dict[str, Any]:
    """Custom/unique args arrive flattened into the event; a nested object is a fallback."""
    nested = item.get("unique_args") or item.get("custom_args")
    return {**nested, **item} if isinstance(nested, dict) else item


def message_id(item: dict[str, Any], where: str) -> str | None:
    """The send API's X-Message-Id: sg_message_id up to its first '.'.

    Async bounces carry no sg_message_id (or an empty one): the receiving server accepted the
    message and bounced it later, so SendGrid no longer knows which message it was.
    """
    value = text(item, "sg_message_id", where)
    prefix = value.split(".", 1)[0].strip() if value else ""
    return prefix or None


def bounce(native: str, item: dict[str, Any], where: str) -> Bounce | None:
    # status and reason are the receiving server's words: kept as text whatever their type.
    status, reason = prose(item.get("status")), prose(item.get("reason"))
    if native == "bounce":
        return Bounce(BOUNCE_CLASSES.get(text(item, "type", where)), status, reason)
    if native == "dropped":
        # Dropped before any attempt ("Bounced Address", "Unsubscribed Address", "Invalid"...).
        return Bounce(None, status, reason)
    if native == "deferred":
        return Bounce(None, None, prose(item.get("response")))
    return None


def machine_open(item: dict[str, Any]) -> tuple[bool | None, str | None, str | None]:
    """sg_machine_open: true means the open came through Apple Mail Privacy Protection.

    Some clients type it as a string, so "true"/"false" count too. Absent means SendGrid did
    not say, which stays unknown.
    """
    flag = item.get("sg_machine_open")
    if flag is True or flag == "true":
        return True, "provider_flag", "apple_mpp"
    if flag is False or flag == "false":
        return False, "provider_flag", None
    return None, None, None


ADAPTER = Adapter(name="sendgrid", verify=verify, parse=parse, max_body_bytes=MAX_BODY_BYTES)
