"""Mandrill (Mailchimp Transactional) webhooks: a form field `mandrill_events` holding a JSON array.

Docs: mandrill.zendesk.com 360038740594 (Webhook Format), 205583307 (Message Event Webhook
Format), 360039233253 (Sync Event Webhook Format), 205583217 (Introduction to Webhooks: the
HEAD check and the `test-webhook` key), help.mandrill.com 23704122 (Authenticating webhook
requests: HMAC-SHA1 over the URL plus the sorted POST fields).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from service.errors import ParseError, Rejected
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    HandshakeReply,
    RawRecord,
    WebhookRequest,
    epoch_time,
    header,
    items,
    make_event,
    mapping,
    metadata_fields,
    parse_batch,
    prose,
    read_json,
    shown,
    text,
)

# Mandrill "event" -> canonical type. Mandrill has no delivered event: "send" is the last word.
EVENT_TYPES: dict[str, EventType] = {
    "send": EventType.SENT,
    "deferral": EventType.DEFERRED,
    "hard_bounce": EventType.BOUNCED,
    "soft_bounce": EventType.BOUNCED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spam": EventType.COMPLAINED,
    "unsub": EventType.UNSUBSCRIBED,
    "reject": EventType.DROPPED,  # refused before sending (rejection denylist)
}
BOUNCE_CLASSES = {"hard_bounce": "hard", "soft_bounce": "soft"}
# Inbound-route messages share the format but are mail received, not mail sent.
IGNORED_EVENTS = frozenset({"inbound"})

FIELD = "mandrill_events"
# When Mandrill's HEAD check of a new webhook fails it POSTs an empty batch signed with this
# literal key instead of the webhook's own key (which it only reveals once the webhook exists).
SETUP_KEY = "test-webhook"


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless X-Mandrill-Signature == base64(HMAC-SHA1(key, url + sorted fields)).

    Mandrill signs the webhook URL exactly as configured in it (scheme, `user:pass@`, port,
    query), so behind a proxy `options["webhook_url"]` names it; else the request's URL is used.
    """
    signature = (header(request, "x-mandrill-signature") or "").strip()
    if not signature:
        raise Rejected("mandrill: missing X-Mandrill-Signature header")
    try:
        fields = form(request.body)
    except ValueError as exc:
        raise Rejected(f"mandrill: unreadable form body ({exc})") from exc
    url = str(credentials.options.get("webhook_url") or request.url)
    keys = list(credentials.secrets)
    if fields == {FIELD: "[]"}:
        keys.append(SETUP_KEY)
    if not keys:
        raise Rejected("mandrill: no webhook key configured")
    message = signed_bytes(url, fields)
    matched = False
    for key in keys:  # every key is tried, so timing reveals no index
        expected = base64.b64encode(hmac.new(key.encode(), message, hashlib.sha1).digest())
        matched |= hmac.compare_digest(expected, signature.encode())
    if not matched:
        # The URL is not echoed: it may hold Basic credentials (`https://user:pass@...`).
        raise Rejected("mandrill: signature does not match the webhook key and URL")


def signed_bytes(url: str, fields: Mapping[str, str]) -> bytes:
    """The URL, then each field's key and value in key order, with no separators, as UTF-8."""
    return (url + "".join(key + fields[key] for key in sorted(fields))).encode()


def form(body: bytes) -> dict[str, str]:
    """Decode an application/x-www-form-urlencoded body; a repeated field is refused.

    verify and parse read the body through this one function, so a field cannot be signed in
    one reading and parsed in another.
    """
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise ValueError("a form field is repeated")
    return fields


async def handshake(
    request: WebhookRequest, credentials: Credentials, ctx: Context
) -> HandshakeReply | None:
    """Answer the empty batch Mandrill posts when a webhook is added (sent after verify)."""
    try:
        empty = orjson.loads(form(request.body).get(FIELD, "null")) == []
    except ValueError:
        return None
    return HandshakeReply(200, {"ok": True}) if empty else None


def parse(record: RawRecord) -> list[Event]:
    """Turn one Mandrill POST into canonical events; sync and inbound events yield nothing."""
    try:
        fields = form(record.body)
    except ValueError as exc:
        raise ParseError(f"mandrill: unreadable form ({exc})") from exc
    if FIELD not in fields:
        raise ParseError(f"mandrill: no {FIELD} field in the form")
    batch = read_json(fields[FIELD], "mandrill", FIELD)
    if not isinstance(batch, list):
        raise ParseError(f"mandrill: {FIELD} is not a JSON array")
    return parse_batch(record, batch, "mandrill", parse_event)


def parse_event(record: RawRecord, item: dict[str, Any], index: int) -> Event | None:
    """One Mandrill event -> a canonical event, or None for sync and inbound events."""
    where = f"mandrill: event {index}"
    name = text(item, "event", where)
    if name is None and "type" in item:
        return None  # a sync event (type blacklist/whitelist): a list change, not a message event
    if name in IGNORED_EVENTS:
        return None
    if name is None or name not in EVENT_TYPES:
        raise ParseError(f"mandrill: unknown event {shown(name)} (event {index})")
    msg = item.get("msg")
    if not isinstance(msg, dict):
        raise ParseError(f"mandrill: {name} event {index} has no msg object")
    ids = metadata_fields(mapping(msg, "metadata", f"{where}: msg"), record.metadata_keys, where)
    engagement = name in {"open", "click"}
    robot = engagement and is_robot(item)
    return make_event(
        record,
        native_type=name,
        type=EVENT_TYPES[name],
        # The top-level `ts` (integer epoch seconds) is the event's time; `msg.ts` is the send's.
        occurred_at=epoch_time(item.get("ts"), "ts", where),
        recipient=Recipient(
            text(msg, "email", f"{where}: msg"), ids["contact_id"], ids["client_contact_id"]
        ),
        message_id=text(item, "_id", where) or text(msg, "_id", f"{where}: msg"),
        # No event id exists: make_event derives one from message, recipient, type, ts and url.
        campaign_id=ids["campaign_id"],
        delivery_id=ids["delivery_id"],
        ab_version=ids["ab_version"],
        bounce=bounce(name, msg, where),
        url=text(item, "url", where) if name == "click" else None,
        ip=text(item, "ip", where) if engagement else None,
        user_agent=prose(item.get("user_agent")) if engagement else None,
        machine=True if robot else None,
        machine_reason="provider_flag" if robot else None,
        agent_class="scanner" if robot else None,
    )


def bounce(name: str, msg: Mapping[str, Any], where: str) -> Bounce | None:
    """Bounce class from the event name; code = Mandrill's bounce_description, reason = diag."""
    if name in BOUNCE_CLASSES:
        description, diag = prose(msg.get("bounce_description")), prose(msg.get("diag"))
        return Bounce(BOUNCE_CLASSES[name], description, diag)
    if name == "deferral":
        attempts = items(msg, "smtp_events", f"{where}: msg", dict)
        return Bounce(None, None, prose(attempts[-1].get("diag"))) if attempts else None
    return None


def is_robot(item: Mapping[str, Any]) -> bool:
    """Whether Mandrill's parsed user agent has `type` "robot", a value its key list names.

    That is the only machine signal Mandrill documents; "Email Client", "Browser" and the rest
    say nothing either way, so `machine` stays null for them.
    """
    parsed = item.get("user_agent_parsed")
    agent_type = parsed.get("type") if isinstance(parsed, dict) else None
    return isinstance(agent_type, str) and agent_type.strip().lower() == "robot"


ADAPTER = Adapter(name="mandrill", verify=verify, parse=parse, handshake=handshake)
