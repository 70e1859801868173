"""Mailgun webhooks: one JSON event per POST, HMAC-signed with the account's webhook signing key.

Only the `signature` block's timestamp and token are signed; the `event-data` is not.

Docs:
- https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks
- https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads
- https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/open-click-bot-detect
- https://github.com/mailgun/documentation/blob/master/source/api-events.rst (event types)
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from email.utils import getaddresses
from typing import Any

import orjson

from service.errors import ParseError, Rejected
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    Nonce,
    RawRecord,
    WebhookRequest,
    epoch_time,
    from_epoch,
    make_event,
    mapping,
    metadata_fields,
    prose,
    read_json,
    shown,
    text,
)

# Where a ParseError says a field was found.
WHERE = "mailgun: event-data"
CLIENT = f"{WHERE}: client-info"
HEADERS = f"{WHERE}: message.headers"

# Mailgun "event-data.event" -> canonical type. "failed" is split by severity and reason below.
EVENT_TYPES: dict[str, EventType] = {
    "accepted": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "complained": EventType.COMPLAINED,
    "rejected": EventType.DROPPED,  # Mailgun refused the send request itself
}

# Documented events that produce nothing: "stored" is an inbound message kept by a route, and
# the mailing-list events are about list uploads, not about a message to a recipient.
IGNORED_EVENTS = frozenset(
    {"stored", "list_member_uploaded", "list_member_upload_error", "list_uploaded"}
)

# client-info.bot on opens and clicks -> agent_class. "" means Mailgun saw no bot.
BOTS: dict[str, str] = {
    "apple": "apple_mpp",  # Apple Mail Privacy Protection
    "gmail": "gmail_prefetch",  # "a Gmail bot"; the image proxy acting for a reader is no bot
    "generic": "scanner",  # "most likely a firewall or anti virus scan"
}


# Mailgun retries a POST that did not get a 200 (or 406) for 8 hours: after 5 min, 10 min,
# 15 min, 1 h, 2 h and 4 h (documentation.mailgun.com, webhooks/webhook-retries). A retry carries
# the first attempt's signature (see `nonce`), so its timestamp may be that old: a tighter window
# would turn one 503 of ours into a 401 on every retry and lose the event. Replays within the
# span are refused by the token memory, which keeps each token as long.
RETRY_SPAN = timedelta(hours=8)


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless signature == HMAC-SHA256(key, timestamp + token) for an active key."""
    timestamp, token, signature = signature_fields(request.body)
    age = ctx.now().timestamp() - float(timestamp)
    window = ctx.replay_window.total_seconds()
    if not -window <= age <= RETRY_SPAN.total_seconds() + window:  # NaN is outside too
        raise Rejected("mailgun: timestamp outside the replay window")
    signed = (timestamp + token).encode()
    # Every active key is tried (rotation); each comparison is constant-time.
    given = signature.encode()
    matches = [hmac.compare_digest(given, sign(key, signed)) for key in credentials.secrets]
    if not any(matches):
        raise Rejected("mailgun: signature does not match")


def nonce(request: WebhookRequest, ctx: Context) -> Nonce:
    """The token of a verified request, remembered while its timestamp is within the window.

    Mailgun signs only the timestamp and the token, never the event data, so a signature seen
    once could carry any event data again: its docs advise to "cache the token value locally and
    not honor any subsequent request with the same token" (securing-webhooks). A retry sends the
    same signature object again (Hookdeck's Mailgun reference, references/verification.md;
    Mailgun's pages do not say), so the token is remembered only once the record is accepted: a
    retry after our 503 still lands, and a repeat after our 200 gets 200 and is not produced.
    """
    timestamp, token, _ = signature_fields(request.body)
    return Nonce(token, from_epoch(timestamp) + RETRY_SPAN + ctx.replay_window)


def sign(key: str, signed: bytes) -> bytes:
    """Lower-case hex HMAC-SHA256, as Mailgun's samples compute it."""
    return hmac.new(key.encode(), signed, hashlib.sha256).hexdigest().encode()


def signature_fields(body: bytes) -> tuple[str, str, str]:
    """timestamp, token and signature from the body's `signature` object, as the strings signed."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected("mailgun: body is not JSON") from exc
    block = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(block, dict):
        raise Rejected("mailgun: body has no signature object")
    timestamp, token, signature = (block.get(k) for k in ("timestamp", "token", "signature"))
    # The docs' table types the timestamp as an int, their payloads send a string: sign the text.
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not isinstance(timestamp, str) or not (timestamp.isascii() and timestamp.isdigit()):
        raise Rejected("mailgun: signature timestamp is not epoch seconds")
    if not isinstance(token, str) or not token or not isinstance(signature, str):
        raise Rejected("mailgun: signature token or signature missing")
    return timestamp, token, signature


def parse(record: RawRecord) -> list[Event]:
    """Turn one Mailgun POST into canonical events (zero or one)."""
    data = read_json(record.body, "mailgun")
    item = data.get("event-data") if isinstance(data, dict) else None
    if not isinstance(item, dict):
        raise ParseError("mailgun: body has no event-data object")
    name = text(item, "event", WHERE)
    if name is None:
        raise ParseError("mailgun: event-data has no event name")
    if name in IGNORED_EVENTS:
        return []
    type_ = failed_type(item) if name == "failed" else EVENT_TYPES.get(name)
    if type_ is None:
        raise ParseError(f"mailgun: unknown event {shown(name)}")
    meta = metadata_fields(user_variables(item), record.metadata_keys, WHERE)
    engaged = type_ in (EventType.OPENED, EventType.CLICKED)
    client = mapping(item, "client-info", WHERE)
    machine, reason, agent = machine_flag(client) if engaged else (None, None, None)
    event_id = text(item, "id", WHERE)
    return [
        make_event(
            record,
            native_type=name,
            type=type_,
            occurred_at=epoch_time(item.get("timestamp"), "timestamp", WHERE),
            recipient=Recipient(recipient(item), meta["contact_id"], meta["client_contact_id"]),
            message_id=message_id(item),
            provider_event_id=event_id,
            # event-data.id is unique only within a day; the id also hashes the event's
            # microsecond timestamp, so a repeat on another day is a different event.
            id_discriminator=event_id,
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=bounce(type_, item),
            url=text(item, "url", WHERE) if type_ is EventType.CLICKED else None,
            ip=(text(item, "ip", WHERE) or text(client, "ip", CLIENT)) if engaged else None,
            user_agent=prose(client.get("user-agent")) if engaged else None,
            machine=machine,
            machine_reason=reason,
            agent_class=agent,
        )
    ]


def failed_type(item: dict[str, Any]) -> EventType:
    """Mailgun reports deferrals, bounces and suppressed sends all as "failed"."""
    if item.get("severity") == "temporary":
        return EventType.DEFERRED  # Mailgun retries it
    reason = item.get("reason")
    if isinstance(reason, str) and reason.startswith("suppress-"):
        # suppress-bounce/-unsubscribe/-complaint (code 605...): never attempted, so dropped,
        # where anymail says bounced.
        return EventType.DROPPED
    # Every other permanent failure, delayed bounces (flags.is-delayed-bounce) included, is hard.
    # api-events.rst: permanent also covers messages that reached their retry limit.
    return EventType.BOUNCED


def bounce(type_: EventType, item: dict[str, Any]) -> Bounce | None:
    if type_ not in (EventType.BOUNCED, EventType.DEFERRED, EventType.DROPPED):
        return None
    status = mapping(item, "delivery-status", WHERE)
    reject = mapping(item, "reject", WHERE)
    # The receiving server's words: kept as text whatever their JSON type.
    reason = (
        prose(status.get("message"))
        or prose(status.get("description"))
        or prose(reject.get("reason"))
        or prose(item.get("reason"))
    )
    code = prose(status.get("code"))
    return Bounce("hard" if type_ is EventType.BOUNCED else None, code, reason)


def machine_flag(client: dict[str, Any]) -> tuple[bool | None, str | None, str | None]:
    """client-info.bot: a bot name flags a machine, "" says none was seen, absent says nothing."""
    if "bot" not in client or not isinstance(client["bot"], str):
        return None, None, None
    bot = client["bot"].strip().lower()
    if not bot:
        return False, "provider_flag", None
    return True, "provider_flag", BOTS.get(bot, "unknown")


def user_variables(item: dict[str, Any]) -> dict[str, Any]:
    value = item.get("user-variables")
    if isinstance(value, str):  # the Events API has been seen to send it as JSON text
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def headers(item: dict[str, Any]) -> dict[str, Any]:
    return mapping(mapping(item, "message", WHERE), "headers", f"{WHERE}: message")


def message_id(item: dict[str, Any]) -> str | None:
    """The Message-Id as the send API returns it: webhooks drop the <>, the API keeps them."""
    value = text(headers(item), "message-id", HEADERS)
    if value is None:
        return None
    return value if value.startswith("<") else f"<{value}>"


def recipient(item: dict[str, Any]) -> str:
    value = text(item, "recipient", WHERE)
    if value:
        return value
    # "rejected" events name no recipient; the To header does when it holds one address.
    to = text(headers(item), "to", HEADERS) or ""
    addresses = [addr for _, addr in getaddresses([to]) if addr]
    if len(addresses) != 1:
        raise ParseError(f"mailgun: {item.get('event')} event names no single recipient")
    return addresses[0]


ADAPTER = Adapter(name="mailgun", verify=verify, parse=parse, nonce=nonce)
