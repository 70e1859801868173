"""Brevo (ex-Sendinblue) transactional webhooks: one JSON event per POST, or an array of them in
batched mode; Basic or Bearer authentication.

Brevo signs nothing. A webhook carries either Basic credentials in its URL
(`https://user:pass@host/...`) or a Bearer token set at creation
(`"auth": {"type": "bearer", "token": "..."}`). Each account secret names which:

- `user:password` — the request must carry `Authorization: Basic base64(user:password)`;
- `bearer:<token>` — the request must carry `Authorization: Bearer <token>`. The lower-case
  prefix `bearer:` is reserved for this, so a Basic user may not be called `bearer`.

Docs:
- https://developers.brevo.com/docs/transactional-webhooks (event samples)
- https://developers.brevo.com/docs/batch-webhooks, .../docs/username-and-password-authentication
- https://developers.brevo.com/reference/createwebhook (the `auth` object)
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime, timedelta
from typing import Any

import orjson

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
    metadata_fields,
    parse_batch,
    prose,
    read_json,
    shown,
    text,
)

BEARER_PREFIX = "bearer:"

# Brevo "event" -> canonical type.
EVENT_TYPES: dict[str, EventType] = {
    "request": EventType.SENT,  # "Sent" in the docs' list; the payload says "request"
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "hard_bounce": EventType.BOUNCED,
    "soft_bounce": EventType.BOUNCED,
    # Brevo never tried: blocked address, invalid address, or an error on its side.
    "blocked": EventType.DROPPED,
    "invalid_email": EventType.DROPPED,
    "error": EventType.DROPPED,
    "spam": EventType.COMPLAINED,
    "complaint": EventType.COMPLAINED,  # seen in the wild by anymail
    # Brevo sends unique_opened for the first open and opened for later ones (anymail).
    "opened": EventType.OPENED,
    "unique_opened": EventType.OPENED,
    # The pixel was loaded by a privacy proxy (Apple Mail Privacy Protection): a machine open.
    "proxy_open": EventType.OPENED,
    "unique_proxy_open": EventType.OPENED,
    "unique_proxy_opened": EventType.OPENED,  # anymail's docs spell it so; its code does not
    "click": EventType.CLICKED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "unsubscribe": EventType.UNSUBSCRIBED,  # anymail's name for it
}
BOUNCE_CLASSES = {"hard_bounce": "hard", "soft_bounce": "soft"}
PROXY_OPENS = frozenset({"proxy_open", "unique_proxy_open", "unique_proxy_opened"})
HUMAN_OPENS = frozenset({"opened", "unique_opened"})
REASONED = frozenset({"deferred", "blocked", "invalid_email", "error"})

# Marketing-list events that can reach the same URL and say nothing about a message.
IGNORED_EVENTS = frozenset({"list_addition", "contact_updated", "contact_deleted"})

# ts_epoch is documented in milliseconds but several doc samples give seconds. Seconds stay
# below this until the year 5138; milliseconds pass it from 1973 on.
MILLISECONDS_FROM = 100_000_000_000


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless the request carries one of the account's Basic pairs or tokens."""
    if not credentials.secrets:
        raise Rejected("brevo: no Basic credentials or Bearer token are configured")
    scheme, _, token = (header(request, "authorization") or "").strip().partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme not in ("basic", "bearer") or not token:
        raise Rejected("brevo: Basic credentials or Bearer token are missing")
    given = basic_credentials(token) if scheme == "basic" else token.encode()
    matched = False
    for secret in credentials.secrets:  # every one, so timing does not tell which matched
        is_bearer = secret.startswith(BEARER_PREFIX)
        expected = secret[len(BEARER_PREFIX) :] if is_bearer else secret
        same = hmac.compare_digest(given, expected.encode())
        matched |= same and is_bearer == (scheme == "bearer")
    if not matched:
        raise Rejected(f"brevo: {scheme.capitalize()} credentials do not match")


def basic_credentials(token: str) -> bytes:
    try:
        return base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected("brevo: Basic credentials are not base64") from exc


def parse(record: RawRecord) -> list[Event]:
    """Turn one Brevo POST (an event, or an array of them in batched mode) into events."""
    data = read_json(record.body, "brevo")
    if isinstance(data, dict) and "items" in data:
        raise ParseError("brevo: an inbound-parsing post reached the events webhook")
    # The batched shape is not shown in any source read: an array of the usual events is assumed.
    batch = data if isinstance(data, list) else [data]
    return parse_batch(record, batch, "brevo", parse_event)


def parse_event(record: RawRecord, item: dict[str, Any], index: int) -> Event | None:
    where = f"brevo: event {index}"
    name = text(item, "event", where)
    if name in IGNORED_EVENTS:
        return None
    if name is None or name not in EVENT_TYPES:
        raise ParseError(f"brevo: unknown event {shown(name)} (event {index})")
    kind = EVENT_TYPES[name]
    email, msg_id = text(item, "email", where), message_id(item, where)
    if email is None and msg_id is None:
        raise ParseError(f"brevo: {name} event {index} names neither a recipient nor a message")
    meta = metadata_fields(lookup(item), record.metadata_keys, where)
    engaged = kind in (EventType.OPENED, EventType.CLICKED)
    machine, reason, agent = machine_flag(name)
    return make_event(
        record,
        native_type=name,
        type=kind,
        occurred_at=occurred_at(item, name, where),
        recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
        message_id=msg_id,
        # No event id exists (`id` is the webhook's): make_event derives one from the fields.
        campaign_id=meta["campaign_id"],
        delivery_id=meta["delivery_id"],
        ab_version=meta["ab_version"],
        bounce=bounce(name, item),
        url=text(item, "link", where) if kind is EventType.CLICKED else None,
        # sending_ip is Brevo's own outgoing address, never the reader's.
        ip=text(item, "ip", where) if engaged else None,
        user_agent=prose(item.get("user_agent")) if engaged else None,
        machine=machine,
        machine_reason=reason,
        agent_class=agent,
    )


def machine_flag(name: str) -> tuple[bool | None, str | None, str | None]:
    """Brevo reports proxy loads as their own event types, so an ordinary open is its word that
    no proxy was seen, and a proxy open is only ever a machine open."""
    if name in PROXY_OPENS:
        return True, "provider_flag", "apple_mpp"
    if name in HUMAN_OPENS:
        return False, "provider_flag", None
    return None, None, None


def occurred_at(item: dict[str, Any], name: str, where: str) -> datetime:
    """ts_epoch (UTC; milliseconds, or seconds as in some doc samples), else ts_event (UTC
    seconds). `date` is local time in the account's zone (CET/CEST by default), so never."""
    # The docs' proxy_open sample spells ts_epoch "s_epoch".
    for key in ("ts_epoch", "s_epoch"):
        value = epoch(item.get(key))
        if value is not None:
            if value >= MILLISECONDS_FROM:
                seconds = epoch_time(value // 1000, key, where)
                return seconds + timedelta(milliseconds=value % 1000)
            return epoch_time(value, key, where)
    value = epoch(item.get("ts_event"))
    if value is not None:
        return epoch_time(value, "ts_event", where)
    raise ParseError(f"{where}: {name} has neither ts_epoch nor ts_event")


def epoch(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def message_id(item: dict[str, Any], where: str) -> str | None:
    """The Message-Id as the send API returns it (`<...@smtp-relay.mailin.fr>`); some payloads
    drop the angle brackets, which are put back."""
    value = text(item, "message-id", where)
    if value and "@" in value and not value.startswith("<"):
        return f"<{value}>"
    return value


def bounce(name: str, item: dict[str, Any]) -> Bounce | None:
    # `reason` may start with a space (anymail's captures).
    reason = prose(item.get("reason"))
    reason = reason.strip() if reason else None
    if name in BOUNCE_CLASSES:
        return Bounce(BOUNCE_CLASSES[name], None, reason)
    if name in REASONED:
        return Bounce(None, None, reason)
    return None


def lookup(item: dict[str, Any]) -> dict[str, Any]:
    """The X-Mailin-custom header's JSON object, plus the first tag under "tag" and the template
    id, so an account may map an attribution id to either."""
    meta: dict[str, Any] = {}
    custom = item.get("X-Mailin-custom")
    if isinstance(custom, str) and custom.strip().startswith("{"):
        try:
            decoded = orjson.loads(custom)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict):
            meta.update(decoded)
    tags = tag_list(item)
    if tags:
        meta.setdefault("tag", tags[0])
    if item.get("template_id") not in (None, ""):
        meta.setdefault("template_id", item["template_id"])
    return meta


def tag_list(item: dict[str, Any]) -> list[str]:
    """`tags` is an array; `tag` is a string, a JSON-encoded array, or (one sample) an array."""
    tags = item.get("tags")
    if not isinstance(tags, list):
        tags = item.get("tag")
        if isinstance(tags, str) and tags.strip().startswith("["):
            try:
                tags = orjson.loads(tags)
            except orjson.JSONDecodeError:
                tags = [tags]
        elif isinstance(tags, str):
            tags = [tags]
    if not isinstance(tags, list):
        return []
    # Tags only name an attribution id an account maps; one that is not text is left out.
    return [tag.strip() for tag in tags if isinstance(tag, str) and tag.strip()]


ADAPTER = Adapter(name="brevo", verify=verify, parse=parse)
