"""Amazon SES event publishing and identity notifications, delivered by Amazon SNS over HTTPS.

Docs: Amazon SES developer guide, "Contents of event data that Amazon SES publishes to Amazon SNS"
and "Examples of event data ..." (event-publishing-retrieving-sns-contents / -examples), "Amazon
SNS notification contents for Amazon SES" and its examples (notification-contents,
notification-examples). The SNS envelope and its signature: service/webhooks/sns.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from service.errors import ParseError, Rejected, Unavailable
from service.events import Bounce, Event, EventType, Recipient, parse_time
from service.webhooks import sns
from service.webhooks.base import (
    Adapter,
    Context,
    Credentials,
    HandshakeReply,
    RawRecord,
    WebhookRequest,
    make_event,
    metadata_fields,
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
    name = message.get("eventType") or message.get("notificationType")
    if name in IGNORED_NOTIFICATIONS:
        return []
    if name == "Received":
        raise ParseError("ses: an inbound (Received) notification reached the events webhook")
    if name not in EVENT_TYPES:
        raise ParseError(f"ses: unknown event {name!r}")
    canonical, detail_key = EVENT_TYPES[name]
    mail = _object(message, "mail")
    detail = _object(message, detail_key)
    occurred_at = _time(mail if name in MAIL_TIMED else detail, name)
    rows = [row for row in _rows(name, canonical, detail, mail) if row[0]]
    if not rows and name != "Subscription":
        raise ParseError(f"ses: {name} names no recipients")
    meta = metadata_fields(_first_values(mail.get("tags")), record.metadata_keys)
    return [
        make_event(
            record,
            native_type=name,
            type=kind,
            occurred_at=occurred_at,
            recipient=Recipient(email, meta["contact_id"], meta["client_contact_id"]),
            message_id=mail.get("messageId"),
            # Retries keep the SNS MessageId, but one id covers every recipient of the message;
            # it is not folded into event_id, so the same event published twice (identity
            # notification and event publishing) still gets one id.
            provider_event_id=envelope.get("MessageId"),
            campaign_id=meta["campaign_id"],
            delivery_id=meta["delivery_id"],
            ab_version=meta["ab_version"],
            bounce=bounce,
            url=detail.get("link") if name == "Click" else None,
            ip=detail.get("ipAddress") if name in ("Open", "Click") else None,
            user_agent=detail.get("userAgent") if name in ("Open", "Click") else None,
        )
        for email, kind, bounce in rows
    ]


def _ses_message(body: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The envelope and its decoded `Message`, or None where the message is not an SES event."""
    try:
        envelope = sns.load_envelope(body)
    except sns.EnvelopeError as exc:
        raise ParseError(f"ses: {exc}") from exc
    text = envelope.get("Message")
    if envelope["Type"] != "Notification":
        return envelope, None
    if not isinstance(text, str):
        raise ParseError("ses: notification has no Message")
    if text.strip().startswith(SETUP_NOTICE):
        return envelope, None
    try:
        message = json.loads(text)  # a JSON document inside a JSON string
    except ValueError as exc:
        raise ParseError("ses: Message is not JSON") from exc
    if not isinstance(message, dict):
        raise ParseError("ses: Message is not a JSON object")
    return envelope, message


Row = tuple[str | None, EventType, Bounce | None]


def _rows(
    name: str, kind: EventType, detail: Mapping[str, Any], mail: Mapping[str, Any]
) -> list[Row]:
    """(recipient, type, bounce) for each recipient the event concerns."""
    bounce: Bounce | None = None
    if name == "Bounce":
        return _bounced(detail)
    if name == "Complaint":
        if detail.get("complaintSubType") == "OnAccountSuppressionList":
            # SES accepted the message but never sent it: the address is suppressed.
            kind, bounce = EventType.DROPPED, Bounce(None, None, "OnAccountSuppressionList")
        recipients = _list(detail.get("complainedRecipients"))
        return [(_address(r.get("emailAddress")), kind, bounce) for r in recipients]
    if name == "DeliveryDelay":
        return [
            (_address(r.get("emailAddress")), kind, _delay(r, detail))
            for r in _list(detail.get("delayedRecipients"))
        ]
    if name == "Delivery":
        return [(_address(r), kind, None) for r in _list(detail.get("recipients"), str)]
    if name == "Subscription" and not _unsubscribes(detail):
        return []
    if kind is EventType.DROPPED:  # Reject, Rendering Failure
        bounce = Bounce(None, None, detail.get("reason") or detail.get("errorMessage"))
    # Send, Reject, Rendering Failure, Open, Click, Subscription: SES does not say which of the
    # message's recipients it concerns, so each destination gets one.
    return [(_address(r), kind, bounce) for r in _list(mail.get("destination"), str)]


def _bounced(detail: Mapping[str, Any]) -> list[Row]:
    kind = EventType.BOUNCED
    bounce_class = BOUNCE_CLASSES.get(detail.get("bounceType", ""))
    if detail.get("bounceSubType") in SUPPRESSED:
        kind, bounce_class = EventType.DROPPED, None
    return [
        (_address(r.get("emailAddress")), kind, _bounce(bounce_class, r, detail))
        for r in _list(detail.get("bouncedRecipients"))
    ]


def _delay(recipient: Mapping[str, Any], delay: Mapping[str, Any]) -> Bounce:
    return Bounce(
        None, recipient.get("status"), recipient.get("diagnosticCode") or delay.get("delayType")
    )


def _bounce(
    bounce_class: str | None, recipient: Mapping[str, Any], bounce: Mapping[str, Any]
) -> Bounce:
    reason = recipient.get("diagnosticCode")
    if not reason:
        reason = "/".join(filter(None, (bounce.get("bounceType"), bounce.get("bounceSubType"))))
    return Bounce(bounce_class, recipient.get("status"), reason or None)


def _unsubscribes(subscription: Mapping[str, Any]) -> bool:
    """Unsubscribed from everything, or newly opted out of a topic (a List-Unsubscribe click)."""
    new = _object(subscription, "newTopicPreferences")
    if new.get("unsubscribeAll") is True:
        return True
    old = _object(subscription, "oldTopicPreferences")
    opted_out_before = {
        t.get("topicName")
        for t in _list(old.get("topicSubscriptionStatus"))
        if t.get("subscriptionStatus") == "OptOut"
    }
    return any(
        t.get("subscriptionStatus") == "OptOut" and t.get("topicName") not in opted_out_before
        for t in _list(new.get("topicSubscriptionStatus"))
    )


def _time(obj: Mapping[str, Any], name: str) -> datetime:
    value = obj.get("timestamp")
    if not isinstance(value, str):
        raise ParseError(f"ses: {name} has no timestamp")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ParseError(f"ses: {name} timestamp {value!r} is not ISO-8601") from exc


def _first_values(tags: Any) -> dict[str, Any]:
    """SES message tags map each name to a list of values; the first one is the value."""
    if not isinstance(tags, dict):
        return {}
    return {k: v[0] if isinstance(v, list) else v for k, v in tags.items() if v != []}


def _address(value: Any) -> str | None:
    """The bare address, also where a list holds `Name <addr>`."""
    if not isinstance(value, str):
        return None
    return parseaddr(value)[1] or value


def _object(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _list(value: Any, item: type = dict) -> list[Any]:
    return [v for v in value if isinstance(v, item)] if isinstance(value, list) else []


ADAPTER = Adapter(name="ses", verify=verify, parse=parse, handshake=handshake)
