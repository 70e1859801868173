"""What every provider adapter is made of, and the helpers adapters share.

An adapter is a module with an `ADAPTER = Adapter(...)`: `verify` checks a request's authenticity
over its raw bytes (raising `Rejected`), `parse` turns one raw record into canonical events
(raising `ParseError` for what it cannot read), and an optional `handshake` answers protocol
messages (SNS subscription confirmations, SparkPost's ping) without producing anything.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from service.errors import ParseError, Rejected
from service.events import (
    Bounce,
    Conversion,
    Event,
    EventType,
    Recipient,
    event_id,
    parse_time,
)
from service.ledger import MAX_TEXT, Unstorable, check_event

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MetadataKeys:
    """Which keys of a provider's per-message metadata carry Mailfold's attribution fields.

    Defaults are the canonical field names; an account may override them per provider with
    `mailfold providers set ... --metadata-key campaign_id=cid`.
    """

    campaign_id: str = "campaign_id"
    delivery_id: str = "delivery_id"
    contact_id: str = "contact_id"
    client_contact_id: str = "client_contact_id"
    ab_version: str = "ab_version"

    @classmethod
    def from_mapping(cls, data: Mapping[str, str] | None) -> MetadataKeys:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """An incoming webhook as received: the exact body bytes and the request line's facts."""

    body: bytes
    headers: Mapping[str, str]  # lower-cased names
    url: str  # the full URL the sender posted to (Mandrill signs it)
    remote_addr: str | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """One account's settings for one provider.

    `secrets` holds the active secrets in clear (one, or two while a key is rotated): signing
    keys, public keys (PEM or base64 DER), or `user:password` pairs for Basic auth. `options`
    holds what is not secret: Mandrill's signed webhook URL, SNS topic ARNs, metadata keys.
    """

    account: str
    provider: str
    secrets: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    disabled: bool = False  # the account is disabled: its webhooks are refused (403)


@dataclass(frozen=True, slots=True)
class Context:
    """What verification may use besides the request: the clock and a few allowed fetches.

    `fetch_certificate(url)` returns PEM bytes and must only be called with URLs the provider's
    protocol names (SNS signing certificates); the service's implementation refuses any host that
    is not Amazon SNS's and caches what it fetched. `confirm_subscription(url)` likewise.
    """

    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    replay_window: timedelta = timedelta(minutes=5)
    fetch_certificate: Callable[[str], Awaitable[bytes]] | None = None
    confirm_subscription: Callable[[str], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class HandshakeReply:
    """A protocol message answered by the endpoint itself; nothing goes to Kafka."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: {"ok": True})


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record of mailfold.raw: the body byte for byte plus what ingest recorded about it."""

    account: str
    source: str
    body: bytes
    content_type: str = "application/json"
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    request_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # those the adapter keeps
    metadata_keys: MetadataKeys = field(default_factory=MetadataKeys)


@dataclass(frozen=True, slots=True)
class Nonce:
    """What a verified request carries that marks a repeat (Mailgun's token, a message id), and
    until when a repeat must be recognised: after that the timestamp check refuses it anyway."""

    value: str
    expires_at: datetime


Verify = Callable[[WebhookRequest, Credentials, Context], Awaitable[None]]
Parse = Callable[[RawRecord], list[Event]]
Handshake = Callable[[WebhookRequest, Credentials, Context], Awaitable[HandshakeReply | None]]
NonceOf = Callable[[WebhookRequest, Context], Nonce]


@dataclass(frozen=True, slots=True)
class Adapter:
    name: str
    verify: Verify
    parse: Parse
    handshake: Handshake | None = None
    keep_headers: tuple[str, ...] = ()  # request headers parse() needs (e.g. svix-id)
    max_body_bytes: int | None = None  # overrides the service default (SendGrid batches are big)
    # Parse at ingest too and answer 400 with the reason for an unreadable body, instead of
    # accepting it and dead-lettering it later (for senders that can act on a 400).
    parse_at_ingest: bool = False
    # The nonce of a verified request. The service remembers it, for every process, once the
    # record is on the broker; a repeat is then answered 200 and not produced again.
    nonce: NonceOf | None = None
    # Raise ValueError saying what is wrong with a secret, before `providers set` stores it.
    check_secret: Callable[[str], None] | None = None


@dataclass(frozen=True, slots=True)
class UnreadableTime:
    """A provider's event time that cannot be read, as it was sent. `make_event` then dates the
    event when Mailfold received it and flags it (`occurred_at_estimated`), and hashes this text
    into the event's identity in place of the time, so a retry of the same body agrees."""

    text: str


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_event(
    record: RawRecord,
    *,
    native_type: str,
    type: EventType,
    occurred_at: datetime | UnreadableTime,
    recipient: Recipient,
    message_id: str | None = None,
    provider_event_id: str | None = None,
    id_discriminator: str | None = None,
    campaign_id: str | None = None,
    delivery_id: str | None = None,
    bounce: Bounce | None = None,
    url: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    machine: bool | None = None,
    machine_reason: str | None = None,
    agent_class: str | None = None,
    ab_version: str | None = None,
    conversion: Conversion | None = None,
    name: str | None = None,
    payload: Any = None,
) -> Event:
    """Build a canonical event for `record`, deriving its stable `event_id` (DESIGN.md).

    `id_discriminator` is folded into the id; pass the provider's event id only where the
    provider keeps it stable across retries.
    """
    # Descriptive text is kept as the ledger can hold it rather than refused with the event.
    user_agent = prose(user_agent)
    if bounce is not None:
        bounce = Bounce(bounce.bounce_class, prose(bounce.code), prose(bounce.reason))
    email = recipient.email.strip().lower() if recipient.email else None
    if email != recipient.email:
        recipient = Recipient(
            email,
            recipient.contact_id,
            recipient.client_contact_id,
            recipient.first_name,
            recipient.surname,
        )
    if not recipient.key():
        # The ledger keys every row by its recipient, so the fold could not take this event.
        raise ParseError(
            f"{record.source}: {native_type}: names no recipient (email or contact id)"
        )
    estimated = isinstance(occurred_at, UnreadableTime)
    if isinstance(occurred_at, UnreadableTime):
        id_discriminator = f"{id_discriminator or ''}\x1etime:{occurred_at.text}"
        id_time, occurred_at = EPOCH, record.received_at
    else:
        id_time = occurred_at
    eid = event_id(
        account=record.account,
        source=record.source,
        native_type=native_type,
        message_id=message_id,
        recipient=recipient.key(),
        occurred_at=id_time,
        url=url,
        discriminator=id_discriminator,
    )
    event = Event(
        event_id=eid,
        account=record.account,
        source=record.source,
        native_type=native_type,
        type=type,
        occurred_at=occurred_at.astimezone(UTC),
        received_at=record.received_at,
        recipient=recipient,
        provider_event_id=provider_event_id,
        campaign_id=campaign_id,
        delivery_id=delivery_id,
        message_id=message_id,
        bounce=bounce,
        url=url,
        ip=ip,
        user_agent=user_agent,
        machine=machine,
        machine_reason=machine_reason,
        agent_class=agent_class,
        ab_version=ab_version,
        conversion=conversion,
        name=name,
        payload=payload,
        occurred_at_estimated=estimated,
    )
    try:
        return check_event(event)
    except Unstorable as exc:
        # The adapter refuses what the ledger cannot hold: the raw record goes to the DLQ with
        # this reason, and `mailfold replay` re-derives it once the adapter reads it better.
        raise ParseError(f"{record.source}: {native_type}: {exc.field} {exc.message}") from exc


def prose(value: Any, limit: int = MAX_TEXT) -> str | None:
    """Descriptive text a provider sends (a bounce diagnostic, a user agent) as the ledger keeps
    it: a string, a number as its text, an object or list as compact JSON, cut to `limit`
    characters, without NULs or lone surrogates. None when absent or empty."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = str(value)
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            return None
    text = text[:limit].replace("\x00", "")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode()
    return text or None


def parse_batch(
    record: RawRecord,
    batch: list[Any],
    provider: str,
    parse_event: Callable[[RawRecord, dict[str, Any], int], Event | None],
) -> list[Event]:
    """Split a provider's batch into events: every item must be an object; `parse_event` may
    return None for an event the provider documents and Mailfold ignores on purpose."""
    events: list[Event] = []
    for index, item in enumerate(batch):
        if not isinstance(item, dict):
            raise ParseError(f"{provider}: event {index} is not an object")
        event = parse_event(record, item, index)
        if event is not None:
            events.append(event)
    return events


def from_epoch(value: Any) -> datetime:
    """Epoch seconds (int, float or a numeric string) to an aware UTC datetime."""
    return datetime.fromtimestamp(float(value), UTC)


# Reading a provider's body. Every adapter reads JSON through `read_json` and every field
# through an accessor, so what a sender gets wrong is refused as a ParseError that names the
# provider and the field, and never becomes a TypeError halfway through a parse.
# `provider` is the start of the message: "sendgrid", or "sendgrid: event 3" inside a batch.


def read_json(body: bytes | str, provider: str, what: str = "body") -> Any:
    """The JSON value of `body`, read strictly (orjson): invalid UTF-8, lone surrogates
    (`\\ud83d`), NaN and numbers past a double's range are refused, where the standard library's
    `json` lets a lone surrogate through to fail later, in the ledger."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"{provider}: {what} is not JSON: {exc}") from exc


def text(obj: Mapping[str, Any], key: str, provider: str) -> str | None:
    """An identity field (an address, an id, an event name): a string stripped of surrounding
    blanks, or an integer's decimal text (providers send numeric ids); None when absent, null
    or blank. Anything else is a ParseError naming the field."""
    value = obj.get(key)
    if isinstance(value, str):
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ParseError(f"{provider}: {key} must be text, not {kind(value)}")


def number(obj: Mapping[str, Any], key: str, provider: str) -> int | float | None:
    """A JSON number (not a boolean); None when absent or null, else a ParseError."""
    value = obj.get(key)
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise ParseError(f"{provider}: {key} must be a number, not {kind(value)}")


def mapping(obj: Mapping[str, Any], key: str, provider: str) -> dict[str, Any]:
    """A JSON object; {} when absent or null, else a ParseError naming the field."""
    value = obj.get(key)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise ParseError(f"{provider}: {key} must be an object, not {kind(value)}")


def items(obj: Mapping[str, Any], key: str, provider: str, of: type[T]) -> list[T]:
    """A JSON array whose every item is an `of` (dict: objects, str: strings); [] when absent or
    null, else a ParseError naming the field and the item."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ParseError(f"{provider}: {key} must be an array, not {kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, of) or isinstance(item, bool):
            raise ParseError(f"{provider}: {key}[{index}] must be {KINDS[of]}, not {kind(item)}")
    return value


def epoch_time(value: Any, field: str, provider: str) -> datetime:
    """Epoch seconds (a number or its text) as an aware UTC time; a ParseError naming `field`
    for anything else, a time before year 1 or after 9999 included."""
    if value is None:
        raise ParseError(f"{provider}: has no {field}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParseError(f"{provider}: {field} must be epoch seconds, not {kind(value)}")
    try:
        return from_epoch(value)
    except (ValueError, OverflowError, OSError) as exc:
        raise ParseError(f"{provider}: {field} {shown(value)} is not epoch seconds") from exc


def iso_time(value: Any, field: str, provider: str) -> datetime:
    """An ISO-8601 time with a zone as an aware UTC time; a ParseError naming `field` otherwise."""
    if value is None:
        raise ParseError(f"{provider}: has no {field}")
    if not isinstance(value, str):
        raise ParseError(f"{provider}: {field} must be an ISO-8601 time, not {kind(value)}")
    try:
        return parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise ParseError(f"{provider}: {field} {shown(value)} is not an ISO-8601 time") from exc


KINDS: dict[type, str] = {dict: "an object", list: "an array", str: "text", bool: "a boolean"}


def kind(value: Any) -> str:
    """What a JSON value is, in the words of a ParseError."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return KINDS.get(type(value), type(value).__name__)


def shown(value: Any, limit: int = 80) -> str:
    """`value` as a ParseError quotes it: its repr (lone surrogates escaped), cut to `limit`."""
    text_ = repr(value)
    return text_ if len(text_) <= limit else text_[: limit - 3] + "..."


def verify_basic(request: WebhookRequest, credentials: Credentials, provider: str) -> None:
    """Raise Rejected unless `Authorization: Basic` carries one of the account's `user:password`
    secrets (the scheme of providers that sign nothing: Postmark, SparkPost, Mailjet).

    Every secret is compared, in constant time, so timing tells neither whether nor which matched.
    """
    if not credentials.secrets:
        raise Rejected(f"{provider}: no Basic credentials are configured for this account")
    scheme, _, token = (header(request, "authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Rejected(f"{provider}: Basic credentials are missing")
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected(f"{provider}: Basic credentials are not base64") from exc
    matched = False
    for secret in credentials.secrets:
        matched |= hmac.compare_digest(given, secret.encode())
    if not matched:
        raise Rejected(f"{provider}: Basic credentials do not match")


def header(request: WebhookRequest, name: str) -> str | None:
    return request.headers.get(name.lower())


def metadata_fields(
    meta: Mapping[str, Any] | None, keys: MetadataKeys, provider: str = "metadata"
) -> dict[str, str | None]:
    """Pick campaign, delivery, contact and A/B ids out of a provider's metadata object.

    An id is text or an integer (`text`); any other value under a mapped key is a ParseError,
    never its Python repr.
    """
    meta = meta or {}
    where = f"{provider} metadata"
    return {
        "campaign_id": text(meta, keys.campaign_id, where),
        "delivery_id": text(meta, keys.delivery_id, where),
        "contact_id": text(meta, keys.contact_id, where),
        "client_contact_id": text(meta, keys.client_contact_id, where),
        "ab_version": text(meta, keys.ab_version, where),
    }
