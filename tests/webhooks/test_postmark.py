"""Postmark adapter: the documented payloads, each quirk, and Basic-auth verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.errors import ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import postmark
from service.webhooks.base import Credentials, MetadataKeys, RawRecord, WebhookRequest
from tests.webhooks.contract_postmark import SIGNER, basic, fresh_credentials

FIXTURES = Path(__file__).parent / "fixtures" / "postmark"
BODIES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
ACCOUNT = "acct-fixtures"
RECEIVED_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC)
URL = "https://hooks.example.com/webhooks/postmark/acct-fixtures"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return data


def parse(body: bytes | dict[str, Any], keys: MetadataKeys | None = None) -> list[Event]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    record = RawRecord(
        ACCOUNT,
        "postmark",
        raw,
        "application/json",
        RECEIVED_AT,
        metadata_keys=keys or MetadataKeys(),
    )
    return postmark.parse(record)


def only(body: dict[str, Any], keys: MetadataKeys | None = None) -> Event:
    (event,) = parse(body, keys)
    return event


def bounce(type_: str) -> dict[str, Any]:
    return load("bounce") | {"Type": type_}


def authorized(*pairs: str) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if pairs:
        headers["authorization"] = basic(pairs[0])
    return WebhookRequest(SIGNER.sample_body(), headers, URL)


# --- documented payloads ---------------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=lambda p: p.stem)
def test_documented_payload_gives_its_canonical_events(body: Path) -> None:
    expected = json.loads(body.with_name(body.stem + ".expected.json").read_bytes())
    if isinstance(expected, dict):  # {"refused": reason}: dead-lettered with that reason
        with pytest.raises(ParseError, match=expected["refused"]):
            parse(body.read_bytes())
        return
    produced = [
        {k: v for k, v in to_dict(e).items() if k != "received_at"}
        for e in parse(body.read_bytes())
    ]
    assert produced == expected


def test_every_record_type_has_a_fixture() -> None:
    assert set(postmark.RECORD_TYPES) <= {load(p.stem)["RecordType"] for p in BODIES}


# --- quirks ----------------------------------------------------------------------------------


def test_seven_fraction_digits() -> None:
    delivered = only(load("delivery") | {"DeliveredAt": "2019-11-05T16:33:54.9070259Z"})
    assert delivered.occurred_at == datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)


def test_offset_time_is_read_in_utc() -> None:
    bounced = only(load("bounce_with_offset"))
    assert bounced.occurred_at == datetime(2016, 4, 27, 20, 28, 50, 396393, tzinfo=UTC)


def test_transient_bounce_is_deferred() -> None:
    for type_ in ("Transient", "DnsError"):
        deferred = only(bounce(type_))
        assert deferred.type is EventType.DEFERRED
        assert deferred.bounce is not None and deferred.bounce.bounce_class is None


def test_soft_bounce_is_soft() -> None:
    soft = only(bounce("SoftBounce"))
    assert (soft.type, soft.bounce and soft.bounce.bounce_class) == (EventType.BOUNCED, "soft")


@pytest.mark.parametrize(
    "type_", ["Blocked", "BadEmailAddress", "ManuallyDeactivated", "DMARCPolicy"]
)
def test_bounce_postmark_never_attempted_is_dropped(type_: str) -> None:
    assert only(bounce(type_)).type is EventType.DROPPED


def test_unsubscribe_bounce_is_an_unsubscribe() -> None:
    assert only(bounce("Unsubscribe")).type is EventType.UNSUBSCRIBED


@pytest.mark.parametrize("type_", ["AutoResponder", "AddressChange", "ChallengeVerification"])
def test_automatic_reply_is_nothing(type_: str) -> None:
    assert parse(bounce(type_)) == []


def test_unknown_bounce_type_goes_to_dead_letters() -> None:
    with pytest.raises(ParseError, match="unknown bounce Type 'Meteorite'"):
        parse(bounce("Meteorite"))


def test_bounce_id_beyond_2_53_is_kept_exactly() -> None:
    raw = (FIXTURES / "bounce.json").read_bytes()
    assert b"4323372036854775807" in raw
    assert parse(raw)[0].provider_event_id == "4323372036854775807"


def test_bounce_without_time_takes_the_time_received() -> None:
    unsubscribed = only(load("bounce_unsubscribe_sparse") | {"Email": "a@example.com"})
    assert unsubscribed.type is EventType.UNSUBSCRIBED
    assert unsubscribed.message_id == "5555555-5555555-5555-5555555"
    assert unsubscribed.occurred_at == RECEIVED_AT


def test_bounce_without_email_is_dead_lettered() -> None:
    # The ledger keys every row by its recipient: the fold could not store it.
    with pytest.raises(ParseError, match="names no recipient"):
        parse(load("bounce_unsubscribe_sparse"))


def test_subscription_change_without_suppression_is_nothing() -> None:
    assert parse(load("subscription_change_reactivation")) == []


def test_suppression_after_a_hard_bounce_is_a_hard_bounce_not_an_unsubscribe() -> None:
    bounced = only(load("subscription_change_hard_bounce"))
    assert bounced.type is EventType.BOUNCED
    assert bounced.bounce is not None and bounced.bounce.bounce_class == "hard"


def test_suppression_after_a_complaint_is_a_complaint() -> None:
    change = load("subscription_change_hard_bounce") | {"SuppressionReason": "SpamComplaint"}
    assert only(change).type is EventType.COMPLAINED


def test_unknown_suppression_reason_goes_to_dead_letters() -> None:
    change = load("subscription_change_hard_bounce") | {"SuppressionReason": "Whim"}
    with pytest.raises(ParseError, match="SuppressionReason 'Whim'"):
        parse(change)


def test_open_and_click_events_without_an_id_still_differ_by_time_and_url() -> None:
    first = only(load("click"))
    later = only(load("click") | {"ReceivedAt": "2017-10-25T15:21:12.0000001Z"})
    other = only(load("click") | {"OriginalLink": "https://example.com/other"})
    assert len({first.event_id, later.event_id, other.event_id}) == 3
    assert first.event_id == only(load("click")).event_id


def test_recipient_is_lower_cased() -> None:
    assert only(load("delivery") | {"Recipient": "John@Example.COM"}).recipient.email == (
        "john@example.com"
    )


def test_tag_can_carry_the_campaign() -> None:
    delivered = only(load("delivery") | {"Metadata": {}}, MetadataKeys(campaign_id="Tag"))
    assert delivered.campaign_id == "welcome-email"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"FromFull": {"Email": "from@example.org"}}', "inbound"),
        (b'{"RecordType": "Inbound"}', "inbound"),
        (b'{"RecordType": "Teleport"}', "unknown RecordType 'Teleport'"),
        (
            b'{"RecordType": "Open", "Recipient": "a@example.com", "MessageID": "m"}',
            "no ReceivedAt",
        ),
        (b'{"RecordType": "Delivery", "DeliveredAt": "2019-11-05T16:33:54Z"}', "neither"),
    ],
)
def test_unreadable_body_goes_to_dead_letters(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------


async def test_right_credentials_are_accepted() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await postmark.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))


async def test_either_credential_is_accepted_while_rotating() -> None:
    old, new = fresh_credentials(), fresh_credentials()
    both = Credentials(ACCOUNT, "postmark", secrets=(old, new))
    for pair in (old, new):
        await postmark.verify(authorized(pair), both, SIGNER.context(NOW))


async def test_wrong_password_is_refused() -> None:
    user = SIGNER.secret.split(":")[0]
    with pytest.raises(Rejected, match="do not match"):
        await postmark.verify(
            authorized(f"{user}:guess"), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW)
        )


async def test_missing_credentials_are_refused() -> None:
    stripped = SIGNER.strip(SIGNER.sign(SIGNER.sample_body(), URL, NOW))
    with pytest.raises(Rejected, match="missing"):
        await postmark.verify(stripped, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))


@pytest.mark.parametrize("value", ["Bearer abc", "Basic", "Basic !!!not-base64!!!", "Digest x"])
async def test_malformed_authorization_is_refused(value: str) -> None:
    request = WebhookRequest(SIGNER.sample_body(), {"authorization": value}, URL)
    with pytest.raises(Rejected):
        await postmark.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))


async def test_account_without_credentials_refuses_everything() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    with pytest.raises(Rejected, match="no Basic credentials"):
        await postmark.verify(request, Credentials(ACCOUNT, "postmark"), SIGNER.context(NOW))


def test_adapter_is_registered_under_its_one_name() -> None:
    assert postmark.ADAPTER.name == "postmark" and postmark.ADAPTER.handshake is None
