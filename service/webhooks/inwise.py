"""inwise webhooks: the automation webhook (form-encoded, `contact[email]` bracket keys) and the
transactional webhook (JSON), one event per POST; both unsigned.

inwise signs nothing and documents no credentials, so the webhook URL carries a secret token
(`?token=...`, or an `X-Inwise-Token` header where a sender can set one), compared in constant
time with the account's secrets; `options["allowed_ips"]` (CIDRs; inwise posts from
193.169.246.40 and 193.169.247.40) restricts the source address when set.

Times carry no zone: they are the account's local time, whose zone (`options["time_zone"]`, an
IANA name) ingest records on the raw record as the `time-zone` header; UTC when absent.

Docs:
- https://developers.inwise.com/docs/webhook/
- https://developers.inwise.com/docs/webhook/set-up-webhook-via-automation-guide/received-data
- https://developers.inwise.com/docs/webhook/transactional-webhook/recived-data
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.auth import address_allowed
from service.errors import Forbidden, ParseError, Rejected
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    RawRecord,
    UnreadableTime,
    WebhookRequest,
    header,
    make_event,
    mapping,
    metadata_fields,
    prose,
    read_json,
    shown,
    text,
)

TOKEN_PARAM = "token"
TOKEN_HEADER = "x-inwise-token"
ZONE_HEADER = "time-zone"

# Automation "trigger_type" (compared lower-cased) -> canonical type.
TRIGGER_TYPES: dict[str, EventType] = {
    "emailsent": EventType.SENT,
    "emailopened": EventType.OPENED,
    "emailclicked": EventType.CLICKED,
    "emailunsubscribed": EventType.UNSUBSCRIBED,
    "emailbounced": EventType.BOUNCED,  # class from bounce_type
    "undelivered": EventType.DROPPED,  # never sent: unsubscribed, frequency limit, bounced...
}
# SMS, form and site triggers share the webhook but are not e-mail events.
IGNORED_TRIGGERS = frozenset(
    {
        "smssent",
        "smsclicked",
        "smsreply",
        "smsunsubscribed",
        "makecontactform",
        "onsite",
        "dynamicpage",
    }
)

# Transactional "event" -> canonical type.
EVENT_TYPES: dict[str, EventType] = {
    "send": EventType.SENT,
    "hard_bounce": EventType.BOUNCED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "reject": EventType.DROPPED,  # not sent: on the unsubscribe or bounce list
}

# `2022-02-10 15:58:01` (automation), `2022-11-16T15:44:00.0000000` (transactional, seven
# fraction digits), and `12/19/2021 13:48:29` (the automation table's example).
ISO_TIME = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?")
US_TIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?")


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless the URL's token (or X-Inwise-Token) is one of the account's; raise
    Forbidden when an allow list is set and the sender's address is not on it."""
    if not credentials.secrets:
        raise Rejected("inwise: no webhook token is configured for this account")
    given = given_tokens(request)
    if not given:
        raise Rejected("inwise: webhook token is missing")
    matched = False
    for token in given:  # every pair, so timing does not tell which matched
        for secret in credentials.secrets:
            matched |= hmac.compare_digest(token.encode(), secret.encode())
    if not matched:
        raise Rejected("inwise: webhook token does not match")
    allowed = credentials.options.get("allowed_ips")
    if isinstance(allowed, str):
        allowed = [allowed]
    try:
        permitted = not allowed or address_allowed(request.remote_addr, list(allowed))
    except ValueError as exc:  # a malformed CIDR in the account's settings
        raise Forbidden(f"inwise: the allow list is malformed ({exc})") from exc
    if not permitted:
        raise Forbidden(f"inwise: address {request.remote_addr} is not on the allow list")


def given_tokens(request: WebhookRequest) -> list[str]:
    query = parse_qs(urlsplit(request.url).query, keep_blank_values=False)
    tokens = [t for t in query.get(TOKEN_PARAM, []) if t]
    sent = header(request, TOKEN_HEADER)
    if sent and sent.strip():
        tokens.append(sent.strip())
    return tokens


def parse(record: RawRecord) -> list[Event]:
    """Turn one inwise POST (automation form or transactional JSON) into zero or one event."""
    zone = account_zone(record)
    if record.body.lstrip().startswith(b"{"):
        return transactional(record, zone)
    return automation(record, zone)


def account_zone(record: RawRecord) -> ZoneInfo:
    name = (record.headers.get(ZONE_HEADER) or "UTC").strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ParseError(f"inwise: unknown account time zone {name!r}") from exc


def automation(record: RawRecord, zone: ZoneInfo) -> list[Event]:
    """The automation webhook: one form-encoded event, keys in varying case (`timeStamp`, `lP`)."""
    try:
        pairs = parse_qsl(record.body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ParseError(f"inwise: body is neither JSON nor a form ({exc})") from exc
    form = {key.lower(): value.strip() for key, value in pairs}
    trigger = form.get("trigger_type", "")
    if trigger.lower() in IGNORED_TRIGGERS or form.get("channel_type", "").lower() == "sms":
        return []
    kind = TRIGGER_TYPES.get(trigger.lower())
    if kind is None:
        raise ParseError(f"inwise: unknown trigger_type {trigger!r}")
    email = form.get("contact[email]") or None
    ids = {
        "campaign_id": form.get("campaign_id"),
        "group_id": form.get("group_id"),
        "contact_id": form.get("contact[id]"),
        "client_contact_id": form.get("contact[external_id]"),
        "account_code": form.get("account_code"),
    }
    if email is None and not ids["contact_id"]:
        raise ParseError(f"inwise: {trigger} names neither contact[email] nor contact[id]")
    meta = metadata_fields(ids, record.metadata_keys, "inwise")
    engaged = kind in (EventType.OPENED, EventType.CLICKED)
    return [
        make_event(
            record,
            native_type=trigger,
            type=kind,
            occurred_at=occurred_at(form.get("timestamp"), zone, "timeStamp"),
            recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
            # No message id: a message is a campaign sent to a contact, so the campaign tells two
            # messages apart; on a click, remarks (the link's number) tells two links to one URL.
            id_discriminator=automation_discriminator(kind, form),
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=automation_bounce(kind, form),
            url=(form.get("additional_details") or None) if kind is EventType.CLICKED else None,
            # The table names the field "lP" (an l, not an I); "ip" is accepted too.
            ip=(form.get("ip") or form.get("lp") or None) if engaged else None,
        )
    ]


def automation_discriminator(kind: EventType, form: Mapping[str, str]) -> str:
    link = form.get("remarks", "") if kind is EventType.CLICKED else ""
    return f"{form.get('campaign_id', '')}/{link}"


def automation_bounce(kind: EventType, form: Mapping[str, str]) -> Bounce | None:
    if kind is EventType.BOUNCED:
        # "hardBounce or SoftBounce": the casing differs between the two.
        bounce_type = form.get("bounce_type", "").lower()
        bounce_class = "hard" if bounce_type.startswith("hard") else None
        if bounce_type.startswith("soft"):
            bounce_class = "soft"
        return Bounce(bounce_class, form.get("bounce_type") or None, None)
    if kind is EventType.DROPPED:
        return Bounce(None, None, form.get("reason") or None)  # unsubscribed, frequency_limit...
    return None


def transactional(record: RawRecord, zone: ZoneInfo) -> list[Event]:
    """The transactional webhook: one JSON event; key casing varies (`transaction_Id`)."""
    data = read_json(record.body, "inwise")
    if not isinstance(data, dict):
        raise ParseError("inwise: body is not a JSON object")
    item = lower_keys(data)
    name = text(item, "event", "inwise")
    if name is None or name.lower() not in EVENT_TYPES:
        raise ParseError(f"inwise: unknown transactional event {shown(name)}")
    native = name.lower()
    kind = EVENT_TYPES[native]
    extra = lower_keys(mapping(item, "additional_data", "inwise"))
    email, msg_id = text(item, "email", "inwise"), text(item, "transaction_id", "inwise")
    if email is None and msg_id is None:
        raise ParseError(f"inwise: {native} names neither an email nor a transaction_id")
    meta = metadata_fields(extra, record.metadata_keys, "inwise")
    link_id = text(extra, "link_id", "inwise: additional_data")
    return [
        make_event(
            record,
            native_type=native,
            type=kind,
            occurred_at=occurred_at(item.get("created_at"), zone, "created_at"),
            recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
            message_id=msg_id,
            # `id` is the webhook's (the same on every post), so it tells no events apart.
            id_discriminator=link_id if kind is EventType.CLICKED else None,
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=transactional_bounce(native, extra),
            url=(
                text(extra, "link_text", "inwise: additional_data")
                if kind is EventType.CLICKED
                else None
            ),
        )
    ]


def transactional_bounce(native: str, extra: Mapping[str, Any]) -> Bounce | None:
    if native == "hard_bounce":
        return Bounce("hard", None, prose(extra.get("bounce_reason")))
    if native == "reject":
        return Bounce(None, None, prose(extra.get("reject_reason")))  # unsubscribe, bounced
    return None


def occurred_at(value: Any, zone: ZoneInfo, field: str) -> datetime | UnreadableTime:
    """The event's time read in the account's zone (a time with a zone keeps its own). A time
    that is there but cannot be read, or leaves years 1-9999 once moved to UTC, is kept as sent:
    the event is folded at the time it was received, flagged (the transactional docs' own
    samples carry a month 15, "2022-15-16 03:11:00"). No time at all is refused."""
    if not isinstance(value, str) or not value.strip():
        raise ParseError(f"inwise: no {field}")
    try:
        return local_time(value.strip(), zone)
    except (ValueError, OverflowError):
        return UnreadableTime(value[:200])


def local_time(text: str, zone: ZoneInfo) -> datetime:
    """A zone-less inwise time read in `zone`; ValueError or OverflowError if it is not one."""
    if match := ISO_TIME.fullmatch(text):
        year, month, day, hour, minute, second, fraction = match.groups()
        micro = int((fraction or "0")[:6].ljust(6, "0"))
    elif match := US_TIME.fullmatch(text):
        month, day, year, hour, minute, second = match.groups()
        micro = 0
    else:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("unrecognised form")
        return parsed.astimezone(UTC)
    local = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro
    )
    return local.replace(tzinfo=zone).astimezone(UTC)


def lower_keys(value: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in value.items()} if isinstance(value, dict) else {}


ADAPTER = Adapter(name="inwise", verify=verify, parse=parse)
