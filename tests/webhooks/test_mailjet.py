"""Mailjet adapter: the documented payloads, each quirk, and Basic-auth verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.errors import ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import mailjet
from service.webhooks.base import Credentials, MetadataKeys, RawRecord, WebhookRequest
from tests.webhooks.contract_mailjet import SIGNER, basic, fresh_credentials

FIXTURES = Path(__file__).parent / "fixtures" / "mailjet"
BODIES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
ACCOUNT = "acct-fixtures"
RECEIVED_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC)
URL = "https://hooks.example.com/webhooks/mailjet/acct-fixtures"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return data


def parse(
    body: bytes | dict[str, Any] | list[Any], keys: MetadataKeys | None = None
) -> list[Event]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    record = RawRecord(
        ACCOUNT,
        "mailjet",
        raw,
        "application/json",
        RECEIVED_AT,
        metadata_keys=keys or MetadataKeys(),
    )
    return mailjet.parse(record)


def only(body: dict[str, Any], keys: MetadataKeys | None = None) -> Event:
    (event,) = parse(body, keys)
    return event


def authorized(pair: str) -> WebhookRequest:
    return WebhookRequest(SIGNER.sample_body(), {"authorization": basic(pair)}, URL)


# --- documented payloads ---------------------------------------------------------------------


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
        data = json.loads(body.read_bytes())
        names |= {item["event"] for item in (data if isinstance(data, list) else [data])}
    assert set(mailjet.EVENT_TYPES) <= names


# --- quirks ----------------------------------------------------------------------------------


def test_message_id_beyond_2_53_stays_exact() -> None:
    big = 2**53 + 1
    raw = b'{"event": "sent", "time": 1433333949, "MessageID": %d, "email": "a@example.com"}' % big
    assert float(big) != big  # a float would have turned it into 2^53
    assert only(orjson.loads(raw)).message_id == "9007199254740993"
    assert parse(raw)[0].message_id == "9007199254740993"


def test_documented_message_id_is_kept_digit_for_digit() -> None:
    raw = (FIXTURES / "sent.json").read_bytes()
    assert b"19421777835146490" in raw and 19421777835146490 > 2**53
    assert parse(raw)[0].message_id == "19421777835146490"


def test_message_id_wider_than_64_bits_goes_to_dead_letters() -> None:
    raw = b'{"event": "sent", "time": 1, "MessageID": 123456789012345678901234, "email": "a@b.c"}'
    with pytest.raises(ParseError, match="not an exact integer"):
        parse(raw)


def test_grouped_events_without_message_id_use_mj_message_id() -> None:
    events = parse((FIXTURES / "grouped.json").read_bytes())
    assert [e.message_id for e in events][:2] == ["18858825588804172", "18858825588803684"]


def test_bare_object_and_array_of_one_give_the_same_event() -> None:
    assert parse(load("open")) == parse([load("open")])


def test_sent_means_delivered() -> None:
    assert only(load("sent")).type is EventType.DELIVERED


def test_hard_bounce_decides_the_bounce_class() -> None:
    hard = only(load("bounce_hard") | {"blocked": False})
    soft = only(load("bounce_hard") | {"hard_bounce": False, "blocked": True})
    unknown = load("bounce_hard")
    del unknown["hard_bounce"]
    classes = [e.bounce and e.bounce.bounce_class for e in (hard, soft, only(unknown))]
    assert classes == ["hard", "soft", None]
    assert {hard.type, soft.type} == {EventType.BOUNCED}


def test_greylisted_is_deferred() -> None:
    # "Delivery will be re-attempted" (error table), though Mailjet posts it as a bounce.
    (deferred,) = parse((FIXTURES / "bounce_greylisted.json").read_bytes())
    assert deferred.type is EventType.DEFERRED
    assert deferred.bounce is not None and deferred.bounce.bounce_class is None
    assert deferred.bounce.reason == "domain: greylisted"


def test_blocked_is_dropped() -> None:
    blocked = only(load("blocked"))
    assert blocked.type is EventType.DROPPED
    assert blocked.bounce is not None and blocked.bounce.reason == "recipient: user unknown"


def test_event_payload_carries_the_attribution() -> None:
    sent = only(load("sent"))
    assert (sent.campaign_id, sent.delivery_id) == ("welcome", "welcome-2015-06")
    assert sent.recipient.contact_id == "c-4"


def test_custom_id_can_carry_the_delivery() -> None:
    opened = only(load("open"), MetadataKeys(delivery_id="CustomID"))
    assert opened.delivery_id == "helloworld"


def test_zero_campaign_id_means_none() -> None:
    assert only(load("blocked"), MetadataKeys(campaign_id="mj_campaign_id")).campaign_id is None


def test_recipient_is_lower_cased() -> None:
    assert only(load("open") | {"email": "Api@MailJet.com"}).recipient.email == "api@mailjet.com"


def test_two_clicks_in_one_second_on_different_links_differ() -> None:
    first = only(load("click"))
    other = only(load("click") | {"url": "https://mailjet.com/pricing"})
    assert first.event_id != other.event_id
    assert first.event_id == only(load("click")).event_id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "event 0 is not an object"),
        (b'{"event": "teleport", "time": 1, "email": "a@b.c"}', "unknown event 'teleport'"),
        (b'{"event": "open", "time": 1}', "has no email"),
        (b'{"event": "open", "email": "a@b.c"}', "has no time"),
        (b'{"event": "open", "email": "a@b.c", "time": "soon"}', "not epoch seconds"),
    ],
)
def test_unreadable_body_goes_to_dead_letters(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------


async def test_right_credentials_are_accepted() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await mailjet.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))


async def test_either_credential_is_accepted_while_rotating() -> None:
    old, new = fresh_credentials(), fresh_credentials()
    both = Credentials(ACCOUNT, "mailjet", secrets=(old, new))
    for pair in (old, new):
        await mailjet.verify(authorized(pair), both, SIGNER.context(NOW))


async def test_wrong_password_is_refused() -> None:
    user = SIGNER.secret.split(":")[0]
    with pytest.raises(Rejected, match="do not match"):
        await mailjet.verify(
            authorized(f"{user}:guess"), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW)
        )


async def test_missing_credentials_are_refused() -> None:
    stripped = SIGNER.strip(SIGNER.sign(SIGNER.sample_body(), URL, NOW))
    with pytest.raises(Rejected, match="missing"):
        await mailjet.verify(stripped, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))


@pytest.mark.parametrize("value", ["Bearer abc", "Basic", "Basic !!!not-base64!!!", "Digest x"])
async def test_malformed_authorization_is_refused(value: str) -> None:
    request = WebhookRequest(SIGNER.sample_body(), {"authorization": value}, URL)
    with pytest.raises(Rejected):
        await mailjet.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))


async def test_account_without_credentials_refuses_everything() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    with pytest.raises(Rejected, match="no Basic credentials"):
        await mailjet.verify(request, Credentials(ACCOUNT, "mailjet"), SIGNER.context(NOW))


async def test_contract_signer_signs_what_verify_accepts() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await mailjet.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await mailjet.verify(request, SIGNER.wrong_credentials(ACCOUNT), SIGNER.context(NOW))
    assert parse(SIGNER.sample_body())


def test_adapter_is_registered_under_its_one_name() -> None:
    assert mailjet.ADAPTER.name == "mailjet" and mailjet.ADAPTER.handshake is None
