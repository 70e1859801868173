"""Standard Webhooks: a generic endpoint for any sender that follows the Standard Webhooks spec.

The body is what the Event API takes — one canonical event or an array of them — either bare or
wrapped in the spec's envelope `{"type", "timestamp", "data"}` with the event(s) as `data`. It is
signed with `webhook-id`, `webhook-timestamp` and `webhook-signature` over
`{id}.{timestamp}.{body}`: symmetric `v1` (HMAC-SHA256, secret `whsec_<base64>`) or asymmetric
`v1a` (ed25519, public key `whpk_<base64 of the 32 raw bytes>`). The account's secrets hold the
`whsec_` secrets and/or `whpk_` public keys, each with its prefix: the prefix says which scheme a
key is for (the spec's "secret serialization"). Svix (Resend) takes a bare base64 secret too.

Module `standard_webhooks`; its URL segment and `Event.source` are `standard-webhooks`.

Docs:
- https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
- https://github.com/standard-webhooks/standard-webhooks/tree/main/libraries/python
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service import events_api
from service.errors import ParseError, Rejected
from service.events import Event
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    Nonce,
    RawRecord,
    WebhookRequest,
    header,
)

NAME = "standard-webhooks"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
PRIVATE_KEY_PREFIX = "whsk_"
# A rotating sender signs with old and new keys; more entries than this is not a rotation.
MAX_SIGNATURES = 32
# The Event API's per-request cap is checked at its own endpoint; here the body is already
# accepted and signed, so every event in it is read.
MAX_EVENTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Keys:
    """An account's verification keys: HMAC secrets (`v1`) and ed25519 public keys (`v1a`), and
    why any configured value could not be used (never the value itself)."""

    secrets: tuple[bytes, ...] = ()
    public_keys: tuple[Ed25519PublicKey, ...] = ()
    problems: tuple[str, ...] = ()

    @classmethod
    def load(cls, configured: tuple[str, ...], *, prefixed: bool = True) -> Keys:
        """`prefixed`: every value must carry `whsec_` or `whpk_`; otherwise (Svix) a bare value
        is a symmetric secret, as the Svix libraries take it."""
        secrets: list[bytes] = []
        public_keys: list[Ed25519PublicKey] = []
        problems: list[str] = []
        for slot, value in enumerate(configured, 1):
            value = value.strip()
            if not prefixed and not value.startswith((SECRET_PREFIX, PUBLIC_KEY_PREFIX)):
                value = SECRET_PREFIX + value
            try:
                key = load_key(value)
            except ValueError as exc:
                problems.append(f"secret {slot}: {exc}")
                continue
            if isinstance(key, bytes):
                secrets.append(key)
            else:
                public_keys.append(key)
        return cls(tuple(secrets), tuple(public_keys), tuple(problems))


def load_key(value: str) -> bytes | Ed25519PublicKey:
    """A `whsec_` secret's bytes or a `whpk_` public key; ValueError says what is wrong."""
    if value.startswith(PUBLIC_KEY_PREFIX):
        raw = b64(value[len(PUBLIC_KEY_PREFIX) :])
        if raw is None or len(raw) != 32:
            raise ValueError("a whpk_ public key is base64 of the 32 bytes of an ed25519 key")
        return Ed25519PublicKey.from_public_bytes(raw)
    if value.startswith(SECRET_PREFIX):
        raw = b64(value[len(SECRET_PREFIX) :])
        if not raw:
            raise ValueError("a whsec_ secret is base64 of the secret's bytes")
        return raw
    if value.startswith(PRIVATE_KEY_PREFIX):
        raise ValueError(
            "a whsk_ value is the sender's private signing key, which only the sender should "
            "hold: configure its public key (whpk_...) instead"
        )
    raise ValueError(
        "a Standard Webhooks key starts with whsec_ (a symmetric secret, v1) or whpk_ (an "
        "ed25519 public key, v1a); this one has neither prefix, so its scheme is unknown"
    )


def check_secret(value: str) -> None:
    """Raise ValueError, with what to do, unless `value` is a usable `whsec_`/`whpk_` key
    (`mailfold providers set` refuses it before it is stored)."""
    load_key(value.strip())


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless a `v1` or `v1a` signature by an account key covers id, time, body."""
    verify_signed(request, credentials, ctx, provider=NAME, prefix="webhook")


def verify_signed(
    request: WebhookRequest,
    credentials: Credentials,
    ctx: Context,
    *,
    provider: str,
    prefix: str,
    prefixed_keys: bool = True,
) -> None:
    """The Standard Webhooks check under `<prefix>-id/-timestamp/-signature` headers.

    Svix (Resend's sender) is the same scheme under `svix-` headers, and takes bare secrets
    (`prefixed_keys=False`).
    """
    msg_id = header(request, f"{prefix}-id")
    timestamp = header(request, f"{prefix}-timestamp")
    signatures = header(request, f"{prefix}-signature")
    if not msg_id or not timestamp or not signatures:
        raise Rejected(f"{provider}: {prefix}-id, -timestamp or -signature header missing")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise Rejected(f"{provider}: {prefix}-timestamp is not epoch seconds")
    if abs(ctx.now().timestamp() - int(timestamp)) > ctx.replay_window.total_seconds():
        raise Rejected(f"{provider}: timestamp outside the replay window")
    keys = Keys.load(credentials.secrets, prefixed=prefixed_keys)
    unusable = f" ({'; '.join(keys.problems)})" if keys.problems else ""
    if not keys.secrets and not keys.public_keys:
        raise Rejected(
            f"{provider}: no usable signing secret or public key is configured{unusable}"
        )
    entries = signatures.split()
    if len(entries) > MAX_SIGNATURES:
        raise Rejected(f"{provider}: more than {MAX_SIGNATURES} signatures in one header")
    # The timestamp is signed exactly as sent; the body as its raw bytes.
    signed = f"{msg_id}.{timestamp}.".encode() + request.body
    if not any(matches(entry, signed, keys) for entry in entries):
        raise Rejected(f"{provider}: signature does not match{unusable}")


def message_nonce(request: WebhookRequest, ctx: Context, prefix: str) -> Nonce:
    """A verified message's id, remembered while its timestamp is within the window.

    The id "remains the same no matter how many times a webhook that has failed is retried" and
    is the spec's idempotency key ("save the IDs ... for 5 minutes"); a retry is signed anew with
    the attempt's timestamp, and a replay of this very request is refused as stale once the id
    is forgotten.
    """
    msg_id, timestamp = header(request, f"{prefix}-id"), header(request, f"{prefix}-timestamp")
    assert msg_id and timestamp, "called only for a verified request"
    return Nonce(msg_id, datetime.fromtimestamp(int(timestamp), UTC) + ctx.replay_window)


def nonce(request: WebhookRequest, ctx: Context) -> Nonce:
    return message_nonce(request, ctx, "webhook")


def matches(entry: str, signed: bytes, keys: Keys) -> bool:
    """Whether one `version,base64` entry verifies; versions other than v1/v1a are ignored."""
    version, _, encoded = entry.partition(",")
    signature = b64(encoded)
    if signature is None:
        return False
    if version == "v1":
        found = False
        for secret in keys.secrets:  # every secret, each comparison constant-time
            expected = hmac.new(secret, signed, hashlib.sha256).digest()
            found |= hmac.compare_digest(expected, signature)
        return found
    if version == "v1a":
        for key in keys.public_keys:
            try:
                key.verify(signature, signed)
            except InvalidSignature:
                continue
            return True
    return False


def b64(value: str) -> bytes | None:
    """Standard base64 with or without padding; None when it is not base64."""
    value = value.strip()
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def unwrap(body: bytes) -> bytes:
    """The canonical event(s) of a body: the body itself, or the `data` of the spec's envelope.

    The spec's payload is `{"type", "timestamp", "data"}`, with `data` "passed as part of the
    data property, or squashed as part of the top-level object"; a canonical event has no
    `data` field, so an object with one is the envelope, whose other fields are the sender's
    metadata. A body is decoded twice only when it holds the text "data" at all.
    """
    if b'"data"' not in body:
        return body
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # events_api.validate names the problem
    if not isinstance(decoded, dict) or "data" not in decoded:
        return body
    data = decoded["data"]
    if not isinstance(data, dict | list):
        raise ParseError(f"{NAME}: the envelope's data must be an event or an array of events")
    return orjson.dumps(data)


def parse(record: RawRecord) -> list[Event]:
    """Canonical events of one signed body, read exactly as the Event API reads its own.

    An event without an `id` takes the message's `webhook-id` (the spec's idempotency key, the
    same on every retry), with its index when the body holds an array.
    """
    body = unwrap(record.body)
    items, problems = events_api.validate(body, max_events=MAX_EVENTS)
    if problems:
        first = problems[0]
        if first["index"] is None:
            raise ParseError(f"{NAME}: {first['message']}")
        field = f" field {first['field']!r}" if first["field"] else ""
        raise ParseError(f"{NAME}: event {first['index']}{field}: {first['message']}")
    webhook_id = record.headers.get(ID_HEADER)
    batched = len(items) > 1 or body.lstrip().startswith(b"[")
    events = []
    for index, item in enumerate(items):
        if item.get("id") is None and webhook_id:
            item = {**item, "id": f"{webhook_id}/{index}" if batched else webhook_id}
        events.append(sender_flagged(events_api.build_event(record, item), item))
    return events


def sender_flagged(event: Event, item: dict[str, Any]) -> Event:
    """`machine` here is the sender's own word about its event, as a provider's flag is."""
    if item.get("machine") is None:
        return event
    return replace(event, machine_reason="provider_flag")


ADAPTER = Adapter(
    name=NAME,
    verify=verify,
    parse=parse,
    keep_headers=(ID_HEADER,),
    parse_at_ingest=True,
    nonce=nonce,
    check_secret=check_secret,
)
