"""Postal webhooks: one JSON event per POST, RSA-signed over the raw body with the instance's key.

`X-Postal-Signature-256` is base64(RSA PKCS#1 v1.5 SHA-256(body)); the legacy
`X-Postal-Signature` is the same over SHA-1. The account's secrets hold the Postal public key:
PEM, or base64 DER as `postal default-dkim-record` prints it (`p=...`).

Docs:
- https://docs.postalserver.io/developer/webhooks
- https://github.com/postalserver/postal: lib/postal/http.rb and signer.rb (signing),
  app/models/webhook_event.rb (event names), lib/postal/message_db/message.rb (payloads)
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
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
    prose,
    read_json,
    shown,
    text,
)

SHA256_HEADER = "x-postal-signature-256"
SHA1_HEADER = "x-postal-signature"

# Postal "event" -> canonical type.
EVENT_TYPES: dict[str, EventType] = {
    "MessageSent": EventType.DELIVERED,  # the remote MX accepted the message
    "MessageDelayed": EventType.DEFERRED,  # a soft failure; Postal retries
    "MessageDeliveryFailed": EventType.BOUNCED,  # a hard failure; Postal gives up
    "MessageBounced": EventType.BOUNCED,  # a bounce message came back; no class is given
    "MessageLoaded": EventType.OPENED,
    "MessageLinkClicked": EventType.CLICKED,
}
BOUNCE_CLASSES: dict[str, str | None] = {"MessageDeliveryFailed": "hard", "MessageBounced": None}

# Documented events that produce nothing: a message held back (suppression list, limits) has
# not been sent and is released or dropped by hand later; the rest concern the server itself.
IGNORED_EVENTS = frozenset(
    {"MessageHeld", "DomainDNSError", "SendLimitApproaching", "SendLimitExceeded"}
)


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless an account public key verifies the body's signature.

    The SHA-256 signature is checked when sent; only without it is the SHA-1 one accepted.
    """
    algorithm: hashes.HashAlgorithm = hashes.SHA256()
    signature = header(request, SHA256_HEADER)
    if not signature:
        signature, algorithm = header(request, SHA1_HEADER), hashes.SHA1()
    if not signature:
        raise Rejected("postal: X-Postal-Signature-256 / X-Postal-Signature header missing")
    try:
        decoded = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected("postal: signature is not base64") from exc
    keys = [key for key in map(load_key, credentials.secrets) if key is not None]
    if not keys:
        raise Rejected("postal: no usable RSA public key is configured")
    for key in keys:
        try:
            key.verify(decoded, request.body, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            continue
        return
    raise Rejected("postal: signature does not match")


def load_key(secret: str) -> rsa.RSAPublicKey | None:
    """An RSA public key from PEM or from base64 DER (the DKIM record's `p=` value); else None."""
    try:
        if "-----BEGIN" in secret:
            key = load_pem_public_key(secret.strip().encode())
        else:
            value = "".join(secret.split()).removeprefix("p=").rstrip(";")
            key = load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def parse(record: RawRecord) -> list[Event]:
    """Turn one Postal POST into zero or one canonical event."""
    data = read_json(record.body, "postal")
    if not isinstance(data, dict):
        raise ParseError("postal: body is not a JSON object")
    name = text(data, "event", "postal")
    if name is None and "rcpt_to" in data:
        raise ParseError("postal: an inbound message reached the events webhook")
    if name in IGNORED_EVENTS:
        return []
    if name is None or name not in EVENT_TYPES:
        raise ParseError(f"postal: unknown event {shown(name)}")
    payload = mapping(data, "payload", "postal")
    # A bounce names the outgoing message as original_message; `bounce` is the incoming reply.
    key = "message" if payload.get("message") else "original_message"
    message = mapping(payload, key, "postal: payload")
    if message.get("direction") == "incoming":
        return []  # about mail Postal received (a route's HTTP endpoint failing), not sent
    kind = EVENT_TYPES[name]
    where = f"postal: payload: {key}"
    email, msg_id = text(message, "to", where), text(message, "id", where)
    if email is None and msg_id is None:
        raise ParseError(f"postal: {name} names neither a recipient nor a message")
    meta = metadata_fields(lookup(message, where), record.metadata_keys, "postal")
    engaged = kind in (EventType.OPENED, EventType.CLICKED)
    event_id = text(data, "uuid", "postal")
    return [
        make_event(
            record,
            native_type=name,
            type=kind,
            # The top-level `timestamp` (float epoch seconds) is the event's time.
            occurred_at=epoch_time(data.get("timestamp"), "timestamp", f"postal: {name}"),
            recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
            # The send API answers `messages: {rcpt: {id, token}}`: the per-recipient id.
            message_id=msg_id,
            provider_event_id=event_id,
            id_discriminator=event_id,  # the same uuid on every retry
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=bounce(name, payload),
            url=text(payload, "url", "postal: payload") if kind is EventType.CLICKED else None,
            ip=text(payload, "ip_address", "postal: payload") if engaged else None,
            user_agent=prose(payload.get("user_agent")) if engaged else None,
        )
    ]


def bounce(name: str, payload: dict[str, Any]) -> Bounce | None:
    """The remote server's answer (`output`) or Postal's description (`details`)."""
    if name == "MessageBounced":
        return Bounce(None, None, prose(mapping(payload, "bounce", "postal").get("subject")))
    if name in BOUNCE_CLASSES or name == "MessageDelayed":
        reason = prose(payload.get("output")) or prose(payload.get("details"))
        return Bounce(BOUNCE_CLASSES.get(name), None, reason)
    return None


def lookup(message: dict[str, Any], where: str) -> dict[str, Any]:
    """Postal carries no per-message metadata; its tag can be mapped to an attribution id."""
    tag = text(message, "tag", where)
    return {"tag": tag} if tag else {}


ADAPTER = Adapter(name="postal", verify=verify, parse=parse)
