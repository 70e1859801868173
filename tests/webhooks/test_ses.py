"""Amazon SES via SNS: documented payloads, SNS signatures, the subscription handshake."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ParseError, Rejected, Unavailable
from service.events import Event, EventType, to_dict
from service.sns_client import SnsClient
from service.webhooks import ses, sns
from service.webhooks.base import Context, Credentials, MetadataKeys, RawRecord, WebhookRequest
from tests.webhooks.contract_ses import (
    CERT_URL,
    OTHER_TOPIC_ARN,
    SIGNER,
    TOPIC_ARN,
    FakeSns,
    make_certificate,
    request,
    sign_envelope,
)

# Text from a fixed alphabet (ASCII, a NUL, controls, non-ASCII, an emoji, a lone surrogate):
# text over all of Unicode makes Hypothesis build its character table on the first draw, which
# its too_slow health check can count against a test on a cold, busy machine.
ALPHABET = "abcxyzABC0189 .,;:/@-_()[]{}\"'\\\x00\t\n\x7féß😀\ud83d"

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
BODIES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
ACCOUNT = "acct-fixtures"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CREDENTIALS = SIGNER.credentials(ACCOUNT)


def load(name: str) -> dict[str, Any]:
    """A fixture's SNS envelope."""
    envelope: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return envelope


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def message(name: str) -> dict[str, Any]:
    """A fixture's SES event: the JSON document inside the envelope's `Message` string."""
    ses_message: dict[str, Any] = json.loads(load(name)["Message"])
    return ses_message


def body_of(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, indent=2).encode()


def parse(body: bytes, keys: MetadataKeys | None = None) -> list[Event]:
    record = RawRecord(
        ACCOUNT, "ses", body, SIGNER.content_type, metadata_keys=keys or MetadataKeys()
    )
    return ses.parse(record)


def notify(ses_message: dict[str, Any], **envelope: Any) -> bytes:
    """A notification of `ses_message`, as SNS would post it."""
    return body_of(load("event_delivery") | envelope | {"Message": json.dumps(ses_message)})


def signed(envelope: dict[str, Any], version: str = "1", cert_url: str = CERT_URL) -> Any:
    return request(sign_envelope(envelope, SIGNER.key, version=version, cert_url=cert_url))


def fake_sns() -> FakeSns:
    return FakeSns({CERT_URL: SIGNER.certificate})


def sns_time(at: datetime) -> str:
    """A time as SNS writes `Timestamp`: ISO-8601, milliseconds, `Z`."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notification(**changes: Any) -> dict[str, Any]:
    """The bounce fixture, published on the pinned topic a moment before NOW."""
    published = {"TopicArn": TOPIC_ARN, "Timestamp": sns_time(NOW - timedelta(seconds=2))}
    return load("event_bounce") | published | changes


def confirmation(kind: str = "SubscriptionConfirmation", **changes: Any) -> dict[str, Any]:
    # SNS developer guide, sns-message-and-json-formats: SubscriptionConfirmation example.
    return {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3",
        "TopicArn": TOPIC_ARN,
        "Message": f"You have chosen to subscribe to the topic {TOPIC_ARN}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={TOPIC_ARN}&Token=2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5",
        "Timestamp": "2012-04-26T20:45:04.751Z",
    } | changes


# --- parsing documented payloads ------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=lambda p: p.stem)
def test_documented_payload_gives_its_canonical_events(body: Path) -> None:
    expected = json.loads(body.with_name(body.stem + ".expected.json").read_bytes())
    produced = [
        {k: v for k, v in to_dict(e).items() if k != "received_at"}
        for e in parse(body.read_bytes())
    ]
    assert produced == expected


def test_every_event_type_has_a_fixture() -> None:
    names = set()
    for body in BODIES:
        text = json.loads(body.read_bytes())["Message"]
        if text.startswith("{"):
            data = json.loads(text)
            names.add(data.get("eventType") or data.get("notificationType"))
    assert set(ses.EVENT_TYPES) <= names


def test_envelope_time_is_not_event_time() -> None:
    envelope = load("event_bounce")
    [event] = parse(body_of(envelope))
    assert envelope["Timestamp"] == "2017-08-05T00:41:03.101Z"  # when SNS published it
    assert event.occurred_at == datetime(2017, 8, 5, 0, 41, 2, 669000, tzinfo=UTC)


def test_send_and_reject_take_the_time_of_the_mail() -> None:
    [sent] = parse(raw("event_send"))
    [rejected] = parse(raw("event_reject"))
    assert sent.occurred_at == datetime(2016, 10, 14, 5, 2, 16, 645000, tzinfo=UTC)
    assert rejected.occurred_at == datetime(2016, 10, 14, 17, 38, 15, 211000, tzinfo=UTC)


def test_multi_recipient_bounce_gives_one_event_each() -> None:
    events = parse(raw("notification_bounce_without_dsn"))
    assert [e.recipient.email for e in events] == ["jane@example.com", "richard@example.com"]
    assert len({e.provider_event_id for e in events}) == 1  # one SNS MessageId for both
    assert len({e.event_id for e in events}) == 2


def test_open_with_several_destinations_gives_one_event_each() -> None:
    opened = message("event_open")
    opened["mail"]["destination"] = ["a@example.com", "B@Example.com"]
    events = parse(notify(opened))
    assert [e.recipient.email for e in events] == ["a@example.com", "b@example.com"]
    assert all(e.type is EventType.OPENED for e in events)


def test_transient_bounce_is_soft() -> None:
    bounce = message("event_bounce")
    bounce["bounce"] |= {"bounceType": "Transient", "bounceSubType": "MailboxFull"}
    [event] = parse(notify(bounce))
    assert (event.type, event.bounce and event.bounce.bounce_class) == (EventType.BOUNCED, "soft")


def test_undetermined_bounce_has_no_class() -> None:
    bounce = message("event_bounce")
    bounce["bounce"] |= {"bounceType": "Undetermined", "bounceSubType": "Undetermined"}
    [event] = parse(notify(bounce))
    assert event.type is EventType.BOUNCED
    assert event.bounce is not None and event.bounce.bounce_class is None


@pytest.mark.parametrize("subtype", ["Suppressed", "OnAccountSuppressionList"])
def test_bounce_from_a_suppression_list_is_dropped(subtype: str) -> None:
    bounce = message("event_bounce")
    bounce["bounce"]["bounceSubType"] = subtype
    [event] = parse(notify(bounce))
    assert event.type is EventType.DROPPED


def test_complaint_on_the_suppression_list_is_dropped() -> None:
    complaint = message("event_complaint")
    complaint["complaint"]["complaintSubType"] = "OnAccountSuppressionList"
    [event] = parse(notify(complaint))
    assert event.type is EventType.DROPPED


def test_topic_opt_out_is_an_unsubscribe() -> None:
    change = message("event_subscription")
    change["subscription"]["newTopicPreferences"]["unsubscribeAll"] = False
    change["subscription"]["oldTopicPreferences"]["topicSubscriptionStatus"][0][
        "subscriptionStatus"
    ] = "OptIn"
    [event] = parse(notify(change))
    assert event.type is EventType.UNSUBSCRIBED


def test_opting_back_in_is_nothing() -> None:
    change = message("event_subscription")
    change["subscription"]["newTopicPreferences"] = {
        "unsubscribeAll": False,
        "topicSubscriptionStatus": [
            {"topicName": "ExampleTopicName", "subscriptionStatus": "OptIn"}
        ],
    }
    assert parse(notify(change)) == []


def test_message_tags_give_the_metadata_ids() -> None:
    [event] = parse(raw("event_click"))
    assert (event.campaign_id, event.delivery_id) == ("spring-sale", "d-2017-08")
    assert event.recipient.contact_id == "c-1001"
    keys = MetadataKeys(campaign_id="ses:configuration-set")
    [event] = parse(raw("event_click"), keys)
    assert event.campaign_id == "ConfigSet"


def test_same_event_as_notification_and_as_event_publishing_has_one_id() -> None:
    published = message("notification_delivery") | {"eventType": "Delivery"}
    del published["notificationType"]
    [a] = parse(raw("notification_delivery"))
    [b] = parse(notify(published, MessageId="11111111-2222-5333-8444-555555555555"))
    assert a.provider_event_id != b.provider_event_id
    assert a.event_id == b.event_id


def test_setup_notices_give_no_events() -> None:
    assert parse(raw("setup_notice")) == []
    assert parse(raw("subscription_succeeded")) == []
    assert parse(body_of(confirmation())) == []


@pytest.mark.parametrize(
    ("ses_message", "reason"),
    [
        ({"notificationType": "Received", "mail": {}}, "inbound"),
        ({"eventType": "Teleport", "mail": {}}, "unknown event 'Teleport'"),
        ({"eventType": "Bounce", "mail": {}, "bounce": {}}, "has no timestamp"),
    ],
)
def test_unreadable_message_goes_to_dead_letters(ses_message: dict[str, Any], reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(notify(ses_message))


def test_message_that_is_not_json_goes_to_dead_letters() -> None:
    body = load("event_send") | {"Message": "hello"}
    with pytest.raises(ParseError, match="not JSON"):
        parse(body_of(body))


# --- verification ---------------------------------------------------------------------------


def test_string_to_sign_matches_the_documented_example() -> None:
    envelope = {
        "Type": "Notification",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "My subject",
        "Message": "My Test Message",
        "Timestamp": "2019-01-31T04:37:04.321Z",
        "UnsubscribeURL": "https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe",
    }
    assert sns.string_to_sign(envelope) == (
        b"Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\n"
        b"Subject\nMy subject\nTimestamp\n2019-01-31T04:37:04.321Z\n"
        b"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
        b"Type\nNotification\n"
    )


async def test_signed_notification_is_accepted() -> None:
    fake = fake_sns()
    await ses.verify(signed(notification()), CREDENTIALS, fake.context(NOW))
    assert fake.fetched == [CERT_URL]


async def test_signature_version_2() -> None:
    await ses.verify(signed(notification(), version="2"), CREDENTIALS, fake_sns().context(NOW))


async def test_signature_version_1_signature_claimed_as_2_is_refused() -> None:
    envelope = sign_envelope(notification(), SIGNER.key, version="1") | {"SignatureVersion": "2"}
    with pytest.raises(Rejected, match="signature does not match"):
        await ses.verify(request(envelope), CREDENTIALS, fake_sns().context(NOW))


async def test_unknown_signature_version_is_refused() -> None:
    envelope = sign_envelope(notification(), SIGNER.key) | {"SignatureVersion": "3"}
    with pytest.raises(Rejected, match="SignatureVersion"):
        await ses.verify(request(envelope), CREDENTIALS, fake_sns().context(NOW))


async def test_subject_is_signed_only_when_present() -> None:
    without = notification()
    del without["Subject"]
    await ses.verify(signed(without), CREDENTIALS, fake_sns().context(NOW))
    envelope = sign_envelope(without, SIGNER.key) | {"Subject": "added later"}
    with pytest.raises(Rejected, match="signature does not match"):
        await ses.verify(request(envelope), CREDENTIALS, fake_sns().context(NOW))


async def test_message_with_newlines_is_verified_over_its_decoded_text() -> None:
    envelope = notification(Message=json.dumps(message("event_open"), indent=2))
    assert "\n" in envelope["Message"] and "\\n" in body_of(envelope).decode()
    await ses.verify(signed(envelope), CREDENTIALS, fake_sns().context(NOW))


async def test_tampered_message_is_refused() -> None:
    good = SIGNER.sign(SIGNER.sample_body(), "https://mailfold.test/webhooks/ses/acme", NOW)
    await ses.verify(good, CREDENTIALS, SIGNER.context(NOW))
    with pytest.raises(Rejected, match="signature does not match"):
        await ses.verify(SIGNER.tamper(good), CREDENTIALS, SIGNER.context(NOW))


async def test_missing_signature_is_refused() -> None:
    stripped = SIGNER.strip(signed(notification()))
    with pytest.raises(Rejected, match="SignatureVersion"):
        await ses.verify(stripped, CREDENTIALS, fake_sns().context(NOW))


async def test_signature_by_another_key_is_refused() -> None:
    other_key, _ = make_certificate()
    envelope = sign_envelope(notification(), other_key)
    with pytest.raises(Rejected, match="signature does not match"):
        await ses.verify(request(envelope), CREDENTIALS, fake_sns().context(NOW))


async def test_certificate_sns_never_issued_is_refused() -> None:
    other = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem"
    with pytest.raises(Rejected, match="no SNS certificate"):
        await ses.verify(
            signed(notification(), cert_url=other), CREDENTIALS, fake_sns().context(NOW)
        )


async def test_expired_certificate_is_refused() -> None:
    key, pem = make_certificate(datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
    fake = FakeSns({CERT_URL: pem})
    with pytest.raises(Rejected, match="not valid now"):
        await ses.verify(
            request(sign_envelope(notification(), key)), CREDENTIALS, fake.context(NOW)
        )


@pytest.mark.parametrize(
    "cert_url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.evil.example/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-abc.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/SimpleNotificationService-abc.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.txt",
        "https://sns.us-east-1.amazonaws.com/redirect?to=https://evil.example/x.pem",
        "https://s3.amazonaws.com/SimpleNotificationService-abc.pem",
    ],
)
async def test_certificate_from_foreign_host_is_refused_without_fetch(cert_url: str) -> None:
    fake = fake_sns()
    with pytest.raises(Rejected, match="SigningCertURL"):
        await ses.verify(signed(notification(), cert_url=cert_url), CREDENTIALS, fake.context(NOW))
    assert fake.fetched == []


@pytest.mark.parametrize(
    ("topic_arn", "host"),
    [
        (TOPIC_ARN, "sns.us-east-1.amazonaws.com"),
        ("arn:aws-cn:sns:cn-north-1:123456789012:t", "sns.cn-north-1.amazonaws.com.cn"),
        ("arn:aws:sns:us-gov-west-1:123456789012:t", "sns.us-gov-west-1.amazonaws.com"),
        ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:t", "sns.us-gov-west-1.amazonaws.com"),
        ("arn:aws:sns:eu-central-2:123456789012:t.fifo", "sns.eu-central-2.amazonaws.com:443"),
    ],
)
def test_certificate_urls_of_every_sns_partition_are_accepted(topic_arn: str, host: str) -> None:
    assert sns.is_certificate_url(f"https://{host}/SimpleNotificationService-a1.pem", topic_arn)


@pytest.mark.parametrize(
    ("topic_arn", "url"),
    [
        # A bucket called `sns` on S3's endpoint is anyone's to own.
        (TOPIC_ARN, "https://sns.s3.amazonaws.com/SimpleNotificationService-a.pem"),
        (TOPIC_ARN, "https://sns.amazonaws.com/SimpleNotificationService-a.pem"),
        (TOPIC_ARN, "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-a.pem"),
        (TOPIC_ARN, "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem"),
        (TOPIC_ARN, "https://SNS.us-east-1.amazonaws.com/SimpleNotificationService-a.pem"),
        (TOPIC_ARN, "https://sns.us-east-1.amazonaws.com./SimpleNotificationService-a.pem"),
        (TOPIC_ARN, "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem#x"),
        (TOPIC_ARN, "https://sns.us-east-1.amazonaws.com/x/SimpleNotificationService-a.pem"),
        (TOPIC_ARN, "https://sns.us-east-1.amazonaws.com\\@evil.example/S-a.pem"),
        ("arn:aws-cn:sns:cn-north-1:123456789012:t",
         "https://sns.cn-north-1.amazonaws.com/SimpleNotificationService-a.pem"),
        ("arn:aws:sns:us-east-1:123456789012:t",
         "https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService-a.pem"),
        ("arn:aws:s3:::sns", "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem"),
        ("not an arn", "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem"),
    ],
)  # fmt: skip
def test_certificate_url_off_the_topics_own_endpoint_is_refused(topic_arn: str, url: str) -> None:
    assert not sns.is_certificate_url(url, topic_arn)


async def test_certificate_of_another_region_is_refused_without_fetch() -> None:
    other = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-a.pem"
    fake = FakeSns({other: SIGNER.certificate})
    with pytest.raises(Rejected, match="SigningCertURL"):
        await ses.verify(signed(notification(), cert_url=other), CREDENTIALS, fake.context(NOW))
    assert fake.fetched == []


async def test_sns_client_never_fetches_off_an_sns_endpoint(tmp_path: Path) -> None:
    client = SnsClient(str(tmp_path))
    (tmp_path / "SimpleNotificationService-a.pem").write_bytes(SIGNER.certificate)
    with pytest.raises(Rejected):
        await client.fetch_certificate(
            "https://sns.s3.amazonaws.com/SimpleNotificationService-a.pem"
        )
    with pytest.raises(Rejected):
        await client.confirm_subscription(
            "https://sns.s3.amazonaws.com/?Action=ConfirmSubscription"
        )
    good = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem"
    assert await client.fetch_certificate(good) == SIGNER.certificate


# Pieces of URLs that parsers are known to read differently, around the one genuine shape.
SCHEMES = st.sampled_from(["https://", "http://", "HTTPS://", "https:/", "https:///", "//", ""])
USERINFO = st.sampled_from(["", "user@", ":@", "@", "sns.us-east-1.amazonaws.com@", "a:b@"])
HOSTS = st.sampled_from([
    "sns.us-east-1.amazonaws.com", "sns.us-east-1.amazonaws.com.", "SNS.US-EAST-1.AMAZONAWS.COM",
    "sns.s3.amazonaws.com", "sns.us-east-1.amazonaws.com.evil.example", "evil.example",
    "sns.us-east-1.amazonaws.com\\.evil.example", "sns.us-east-1.amazonaws.com%2eevil.example",
    "[::1]", "127.0.0.1", "sns.us-east-1.amazonaws.co", "sns.us-east-1.amazonaws.com.cn",
    "sns.us-west-2.amazonaws.com", "sns..amazonaws.com", "xn--sns-.us-east-1.amazonaws.com",
    "sns.us-east-1.amazonaws.com\x00", "sns.us-east-1.amazonaws.com\u3002evil.example",
])  # fmt: skip
PORTS = st.sampled_from(["", ":443", ":8443", ":", ":0443", ":443:443", ":80"])
PATHS = st.sampled_from([
    "/SimpleNotificationService-abc.pem", "/SimpleNotificationService-abc.pem?x=1",
    "/SimpleNotificationService-abc.pem#f", "//evil.example/SimpleNotificationService-a.pem",
    "/../SimpleNotificationService-a.pem", "/SimpleNotificationService-a.pem/..", "",
    "/%53impleNotificationService-a.pem", "\\evil.example/SimpleNotificationService-a.pem",
    " /SimpleNotificationService-a.pem", "/SimpleNotificationService-a.pem\n",
])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.builds(lambda *p: "".join(p), SCHEMES, USERINFO, HOSTS, PORTS, PATHS),
        st.text(ALPHABET, max_size=80),
    )
)
def test_every_accepted_certificate_url_leads_to_the_topics_sns_endpoint(url: str) -> None:
    """A hostile SigningCertURL: whatever is accepted, a client fetching it (urllib, as the
    service does, and httpx as a second reader) goes to the topic's endpoint over https, with
    no credentials, to a certificate's path."""
    if not sns.is_certificate_url(url, TOPIC_ARN):
        return
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port in (None, 443)) == (
        "https", "sns.us-east-1.amazonaws.com", True)  # fmt: skip
    assert parts.username is None and parts.password is None and not parts.query
    assert urllib.request.Request(url).host in ("sns.us-east-1.amazonaws.com",
                                                "sns.us-east-1.amazonaws.com:443")  # fmt: skip
    second = httpx.URL(url)
    assert (second.scheme, second.host, second.userinfo) == (
        "https", "sns.us-east-1.amazonaws.com", b"")  # fmt: skip
    assert second.path.startswith("/SimpleNotificationService-") and second.path.endswith(".pem")


@pytest.mark.parametrize("age", [timedelta(0), timedelta(minutes=20), timedelta(seconds=3600)])
async def test_notification_sns_may_still_be_retrying_is_accepted(age: timedelta) -> None:
    envelope = notification(Timestamp=sns_time(NOW - age))
    await ses.verify(signed(envelope), CREDENTIALS, fake_sns().context(NOW))


@pytest.mark.parametrize(
    "timestamp",
    [
        sns_time(NOW - timedelta(seconds=3600) - timedelta(minutes=5, seconds=1)),
        sns_time(NOW + timedelta(minutes=5, seconds=1)),
        "2016-01-27T14:59:39.100Z",
        "2024-05-01T11:59:00",  # no zone
        "yesterday",
        None,
    ],
)
async def test_notification_outside_the_window_of_sns_retries_is_refused(
    timestamp: str | None,
) -> None:
    fake = fake_sns()
    envelope = notification(Timestamp=timestamp)
    with pytest.raises(Rejected, match="Timestamp"):
        await ses.verify(signed(envelope), CREDENTIALS, fake.context(NOW))
    assert fake.fetched == []


async def test_notification_window_widens_with_the_services_tolerance() -> None:
    envelope = notification(Timestamp=sns_time(NOW - timedelta(hours=2)))
    context = replace(fake_sns().context(NOW), replay_window=timedelta(hours=1, seconds=1))
    await ses.verify(signed(envelope), CREDENTIALS, context)


async def test_confirmations_are_not_held_to_the_window() -> None:
    """Replaying one only repeats an idempotent confirmation at SNS (the example is from 2012)."""
    await ses.verify(signed(confirmation()), CREDENTIALS, fake_sns().context(NOW))


async def test_topic_not_pinned_is_refused() -> None:
    fake = fake_sns()
    envelope = signed(notification(TopicArn=OTHER_TOPIC_ARN))
    with pytest.raises(Rejected, match="TopicArn is not pinned"):
        await ses.verify(envelope, CREDENTIALS, fake.context(NOW))
    assert fake.fetched == []


@pytest.mark.parametrize("options", [{}, {"topic_arns": []}, {"topic_arns": TOPIC_ARN}])
async def test_account_without_pinned_topics_refuses_everything(options: dict[str, Any]) -> None:
    bare = Credentials("acme", "ses", options=options)
    with pytest.raises(Rejected, match="TopicArn is not pinned"):
        await ses.verify(signed(notification()), bare, fake_sns().context(NOW))


async def test_service_without_a_certificate_source_asks_sns_to_retry() -> None:
    with pytest.raises(Unavailable):
        await ses.verify(signed(notification()), CREDENTIALS, Context(now=lambda: NOW))


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"Type": "Surprise"}', b"\xff"])
async def test_body_that_is_not_an_sns_envelope_is_refused(body: bytes) -> None:
    req = WebhookRequest(body=body, headers={}, url="https://mailfold.test/webhooks/ses/acme")
    with pytest.raises(Rejected):
        await ses.verify(req, CREDENTIALS, fake_sns().context(NOW))


# --- handshake ------------------------------------------------------------------------------


async def test_signed_subscription_confirmation_verifies_and_is_confirmed_at_sns() -> None:
    fake = fake_sns()
    req = signed(confirmation())
    await ses.verify(req, CREDENTIALS, fake.context(NOW))
    reply = await ses.handshake(req, CREDENTIALS, fake.context(NOW))
    assert reply is not None and reply.status == 200
    assert reply.body["confirmed"] is True
    assert reply.body["subscription"] == {
        "topic_arn": TOPIC_ARN,
        "status": "confirmed",
        "message_id": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
    }
    assert fake.confirmed == [confirmation()["SubscribeURL"]]


@pytest.mark.parametrize(
    "subscribe_url",
    [
        "https://evil.example/?Action=ConfirmSubscription&TopicArn=" + TOPIC_ARN,
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC_ARN,
        "https://sns.us-east-1.amazonaws.com.evil.example/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&TopicArn=" + TOPIC_ARN,
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
        + OTHER_TOPIC_ARN,
        "https://sns.s3.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC_ARN,
        "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC_ARN,
        "https://sns.us-east-1.amazonaws.com/x?Action=ConfirmSubscription&TopicArn=" + TOPIC_ARN,
    ],
)
async def test_subscribe_url_off_sns_is_never_fetched(subscribe_url: str) -> None:
    fake = fake_sns()
    req = signed(confirmation(SubscribeURL=subscribe_url))
    with pytest.raises(Rejected, match="SubscribeURL"):
        await ses.handshake(req, CREDENTIALS, fake.context(NOW))
    assert fake.confirmed == []


async def test_unsubscribe_confirmation_is_recorded_not_visited() -> None:
    fake = fake_sns()
    req = signed(confirmation("UnsubscribeConfirmation"))
    await ses.verify(req, CREDENTIALS, fake.context(NOW))
    reply = await ses.handshake(req, CREDENTIALS, fake.context(NOW))
    assert reply is not None and reply.body["unsubscribed"] is True
    assert reply.body["subscription"]["status"] == "unsubscribe_requested"
    assert fake.confirmed == []


async def test_notification_goes_on_to_kafka() -> None:
    assert await ses.handshake(signed(notification()), CREDENTIALS, fake_sns().context(NOW)) is None


def test_adapter_is_registered_under_its_one_name() -> None:
    assert ses.ADAPTER.name == "ses" and ses.ADAPTER.handshake is ses.handshake
