"""Amazon SES event publishing and identity notifications, delivered by Amazon SNS over HTTPS.

Docs: Amazon SES developer guide, "Contents of event data that Amazon SES publishes to Amazon SNS"
and "Examples of event data ..." (event-publishing-retrieving-sns-contents / -examples), "Amazon
SNS notification contents for Amazon SES" and its examples (notification-contents,
notification-examples). The SNS envelope and its signature: service/webhooks/sns.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from service.errors import ParseError, Rejected, Unavailable
from service.events import Bounce, Event, EventType, Recipient
from service.webhooks import sns
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    HandshakeReply,
    RawRecord,
    WebhookRequest,
    iso_time,
    items,
    make_event,
    mapping,
    metadata_fields,
    prose,
    read_json,
    shown,
    text,
)

# SES `eventType` (event publishing) or `notificationType` (identity notifications) -> canonical
# type, and the key of the object that describes the event.
EVENT_TYPES: dict[str, tuple[EventType, str]] = {
    "Send": (EventType.SENT, "send"),
    "Delivery": (EventType.DELIVERED, "delivery"),
    "DeliveryDelay": (EventType.DEFERRED, "deliveryDelay"),
    "Bounce": (EventType.BOUNCED, "bounce"),
    "Complaint": (EventType.COMPLAINED, "complaint"),
    "Reject": (EventType.DROPPED, "reject"),
    "Rendering Failure": (EventType.DROPPED, "failure"),
    "Open": (EventType.OPENED, "open"),
    "Click": (EventType.CLICKED, "click"),
    "Subscription": (EventType.UNSUBSCRIBED, "subscription"),
}
# These carry no time of their own: the message's send time is the event time.
MAIL_TIMED = frozenset({"Send", "Reject", "Rendering Failure"})

# SES publishes Transient bounces only once it stops retrying; Undetermined stays unclassified.
BOUNCE_CLASSES = {"Permanent": "hard", "Transient": "soft"}
# SES never attempted these: the address was on its (or the account's) suppression list.
SUPPRESSED = frozenset({"Suppressed", "OnAccountSuppressionList"})

# Sent once when a topic is attached to a configuration set / an identity: not events.
SETUP_NOTICE = "Successfully validated SNS topic for Amazon SES event publishing"
IGNORED_NOTIFICATIONS = frozenset({"AmazonSnsSubscriptionSucceeded"})


async def verify(request: WebhookRequest, credentials: Credentials, ctx: Context) -> None:
    """Raise Rejected unless SNS signed the body, its TopicArn is one the account pinned and a
    notification's Timestamp is within the span of SNS's retries.

    A valid SNS signature only proves that AWS sent the message, not that the topic is the
    account's, so the topic pin is what keeps other people's topics out. Confirmations carry no
    window: replaying one only repeats an idempotent confirmation or a recorded notice.
    """
    try:
        envelope = sns.load_envelope(request.body)
        pinned = credentials.options.get("topic_arns")
        if not isinstance(pinned, list | tuple) or envelope.get("TopicArn") not in pinned:
            raise Rejected("ses: TopicArn is not pinned for this account")
        if envelope["Type"] == "Notification":
            sns.check_timestamp(envelope, ctx.now(), ctx.replay_window)
        if ctx.fetch_certificate is None:  # the service's setup, not the caller: SNS retries a 503
            raise Unavailable("ses: no source of SNS signing certificates is configured")
        await sns.verify_signature(envelope, ctx.fetch_certificate, ctx.now())
    except sns.EnvelopeError as exc:
        raise Rejected(f"ses: {exc}") from exc


async def handshake(
    request: WebhookRequest, credentials: Credentials, ctx: Context
) -> HandshakeReply | None:
    """Confirm subscriptions and acknowledge unsubscriptions; notifications go on to Kafka."""
    try:
        envelope = sns.load_envelope(request.body)
    except sns.EnvelopeError as exc:
        raise Rejected(f"ses: {exc}") from exc
    topic_arn = envelope.get("TopicArn")
    if envelope["Type"] == "Notification":
        return None
    if envelope["Type"] == "UnsubscribeConfirmation":
        # Its SubscribeURL would re-subscribe the endpoint: the notice is only recorded.
        return _reply(envelope, "unsubscribe_requested", unsubscribed=True)
    url = envelope.get("SubscribeURL")
    if not isinstance(url, str) or not isinstance(topic_arn, str):
        raise Rejected("ses: SubscriptionConfirmation without SubscribeURL or TopicArn")
    if not sns.is_confirmation_url(url, topic_arn):
        raise Rejected("ses: SubscribeURL is not an Amazon SNS confirmation of this topic")
    if ctx.confirm_subscription is None:
        return HandshakeReply(200, {"confirmed": False, "topic_arn": topic_arn})
    await ctx.confirm_subscription(url)
    return _reply(envelope, "confirmed", confirmed=True)


def _reply(envelope: Mapping[str, Any], status: str, **flag: bool) -> HandshakeReply:
    """The answer to SNS, carrying the `subscription` the service records."""
    topic_arn = envelope.get("TopicArn")
    subscription = {
        "topic_arn": topic_arn,
        "status": status,
        "message_id": envelope.get("MessageId"),
    }
    return HandshakeReply(200, {**flag, "topic_arn": topic_arn, "subscription": subscription})


def parse(record: RawRecord) -> list[Event]:
    """Turn one SNS notification into canonical events: one per recipient it concerns."""
    envelope, message = _ses_message(record.body)
    if message is None:
        return []
    name = text(message, "eventType", "ses") or text(message, "notificationType", "ses")
    if name in IGNORED_NOTIFICATIONS:
        return []
    if name == "Received":
        raise ParseError("ses: an inbound (Received) notification reached the events webhook")
    if name is None or name not in EVENT_TYPES:
        raise ParseError(f"ses: unknown event {shown(name)}")
    canonical, detail_key = EVENT_TYPES[name]
    where = f"ses: {name}"
    mail = mapping(message, "mail", where)
    detail = mapping(message, detail_key, where)
    timed = (mail, "mail") if name in MAIL_TIMED else (detail, detail_key)
    occurred_at = iso_time(timed[0].get("timestamp"), "timestamp", f"{where}: {timed[1]}")
    rows = [row for row in _rows(name, canonical, detail, mail) if row[0]]
    if not rows and name != "Subscription":
        raise ParseError(f"ses: {name} names no recipients")
    tags = _first_values(mapping(mail, "tags", f"{where}: mail"))
    meta = metadata_fields(tags, record.metadata_keys, f"{where}: mail.tags")
    engaged = name in ("Open", "Click")
    return [
        make_event(
            record,
            native_type=name,
            type=kind,
            occurred_at=occurred_at,
            recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
            message_id=text(mail, "messageId", f"{where}: mail"),
            # Retries keep the SNS MessageId, but one id covers every recipient of the message;
            # it is not folded into event_id, so the same event published twice (identity
            # notification and event publishing) still gets one id.
            provider_event_id=text(envelope, "MessageId", "ses"),
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=bounce,
            url=text(detail, "link", where) if name == "Click" else None,
            ip=text(detail, "ipAddress", where) if engaged else None,
            user_agent=prose(detail.get("userAgent")) if engaged else None,
        )
        for email, kind, bounce in rows
    ]


def _ses_message(body: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The envelope and its decoded `Message`, or None where the message is not an SES event."""
    try:
        envelope = sns.load_envelope(body)
    except sns.EnvelopeError as exc:
        raise ParseError(f"ses: {exc}") from exc
    content = envelope.get("Message")
    if envelope["Type"] != "Notification":
        return envelope, None
    if not isinstance(content, str):
        raise ParseError("ses: notification has no Message")
    if content.strip().startswith(SETUP_NOTICE):
        return envelope, None
    message = read_json(content, "ses", "Message")  # a JSON document inside a JSON string
    if not isinstance(message, dict):
        raise ParseError("ses: Message is not a JSON object")
    return envelope, message


Row = tuple[str | None, EventType, Bounce | None]


def _rows(
    name: str, kind: EventType, detail: Mapping[str, Any], mail: Mapping[str, Any]
) -> list[Row]:
    """(recipient, type, bounce) for each recipient the event concerns."""
    where = f"ses: {name}"
    bounce: Bounce | None = None
    if name == "Bounce":
        return _bounced(detail)
    if name == "Complaint":
        if detail.get("complaintSubType") == "OnAccountSuppressionList":
            # SES accepted the message but never sent it: the address is suppressed.
            kind, bounce = EventType.DROPPED, Bounce(None, None, "OnAccountSuppressionList")
        recipients = items(detail, "complainedRecipients", where, dict)
        return [(_address(r, "emailAddress", where), kind, bounce) for r in recipients]
    if name == "DeliveryDelay":
        return [
            (_address(r, "emailAddress", where), kind, _delay(r, detail))
            for r in items(detail, "delayedRecipients", where, dict)
        ]
    if name == "Delivery":
        return [(_parsed(r), kind, None) for r in items(detail, "recipients", where, str)]
    if name == "Subscription" and not _unsubscribes(detail):
        return []
    if kind is EventType.DROPPED:  # Reject, Rendering Failure
        bounce = Bounce(
            None, None, prose(detail.get("reason")) or prose(detail.get("errorMessage"))
        )
    # Send, Reject, Rendering Failure, Open, Click, Subscription: SES does not say which of the
    # message's recipients it concerns, so each destination gets one.
    return [(_parsed(r), kind, bounce) for r in items(mail, "destination", f"{where}: mail", str)]


def _bounced(detail: Mapping[str, Any]) -> list[Row]:
    kind = EventType.BOUNCED
    bounce_type = text(detail, "bounceType", "ses: Bounce")
    sub_type = text(detail, "bounceSubType", "ses: Bounce")
    bounce_class = BOUNCE_CLASSES.get(bounce_type or "")
    if sub_type in SUPPRESSED:
        kind, bounce_class = EventType.DROPPED, None
    # Without a diagnostic the reason is SES's own classification, "Permanent/General".
    summary = "/".join(filter(None, (bounce_type, sub_type))) or None
    return [
        (_address(r, "emailAddress", "ses: Bounce"), kind, _bounce(bounce_class, r, summary))
        for r in items(detail, "bouncedRecipients", "ses: Bounce", dict)
    ]


def _delay(recipient: Mapping[str, Any], delay: Mapping[str, Any]) -> Bounce:
    reason = prose(recipient.get("diagnosticCode")) or prose(delay.get("delayType"))
    return Bounce(None, prose(recipient.get("status")), reason)


def _bounce(bounce_class: str | None, recipient: Mapping[str, Any], summary: str | None) -> Bounce:
    reason = prose(recipient.get("diagnosticCode")) or summary
    return Bounce(bounce_class, prose(recipient.get("status")), reason)


def _unsubscribes(subscription: Mapping[str, Any]) -> bool:
    """Unsubscribed from everything, or newly opted out of a topic (a List-Unsubscribe click)."""
    where = "ses: Subscription"
    new = mapping(subscription, "newTopicPreferences", where)
    if new.get("unsubscribeAll") is True:
        return True
    old = mapping(subscription, "oldTopicPreferences", where)
    opted_out_before = _opted_out(old, f"{where}: oldTopicPreferences")
    return bool(_opted_out(new, f"{where}: newTopicPreferences") - opted_out_before)


def _opted_out(preferences: Mapping[str, Any], where: str) -> set[str | None]:
    """The topics `preferences` opts out of."""
    statuses = items(preferences, "topicSubscriptionStatus", where, dict)
    return {
        text(t, "topicName", where)
        for t in statuses
        if text(t, "subscriptionStatus", where) == "OptOut"
    }


def _first_values(tags: Mapping[str, Any]) -> dict[str, Any]:
    """SES message tags map each name to a list of values; the first one is the value."""
    return {k: v[0] if isinstance(v, list) else v for k, v in tags.items() if v != []}


def _address(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = text(obj, key, where)
    return _parsed(value) if value else None


def _parsed(value: str) -> str | None:
    """The bare address, also where a list holds `Name <addr>`."""
    return parseaddr(value)[1] or value.strip() or None


ADAPTER = Adapter(name="ses", verify=verify, parse=parse, handshake=handshake)
