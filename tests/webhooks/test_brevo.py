"""Brevo adapter: the documented payloads, each quirk, and Basic/Bearer verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.errors import ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import brevo
from service.webhooks.base import Credentials, MetadataKeys, RawRecord, WebhookRequest
from tests.webhooks.contract_brevo import SIGNER, basic, fresh_credentials, fresh_token

FIXTURES = Path(__file__).parent / "fixtures" / "brevo"
BODIES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
ACCOUNT = "acct-fixtures"
RECEIVED_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC)
URL = "https://hooks.example.com/webhooks/brevo/acct-fixtures"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return data


def parse(
    body: bytes | dict[str, Any] | list[Any], keys: MetadataKeys | None = None
) -> list[Event]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    record = RawRecord(
        ACCOUNT, "brevo", raw, "application/json", RECEIVED_AT, metadata_keys=keys or MetadataKeys()
    )
    return brevo.parse(record)


def only(body: dict[str, Any], keys: MetadataKeys | None = None) -> Event:
    (event,) = parse(body, keys)
    return event


def request(authorization: str | None) -> WebhookRequest:
    headers = {"authorization": authorization} if authorization else {}
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


def test_every_event_type_has_a_fixture() -> None:
    names = set()
    for body in BODIES:
        data = json.loads(body.read_bytes())
        names |= {item["event"] for item in (data if isinstance(data, list) else [data])}
    # Names only anymail's docs or code use have no captured payload of their own.
    assert set(brevo.EVENT_TYPES) - {"unique_proxy_opened", "unsubscribe"} <= names


# --- quirks ----------------------------------------------------------------------------------


def test_proxy_open_is_a_machine_open_only() -> None:
    for name in ("proxy_open", "unique_proxy_open", "unique_proxy_opened"):
        events = parse(load("proxy_open") | {"event": name})
        assert len(events) == 1, "one pixel load is one open, never a human one as well"
        (opened,) = events
        assert opened.type is EventType.OPENED
        assert (opened.machine, opened.machine_reason) == (True, "provider_flag")
        assert opened.agent_class == "apple_mpp"


def test_ordinary_open_is_brevos_word_that_no_proxy_was_seen() -> None:
    for name in ("opened", "unique_opened"):
        opened = only(load("opened") | {"event": name})
        assert (opened.machine, opened.machine_reason, opened.agent_class) == (
            False,
            "provider_flag",
            None,
        )


def test_proxy_open_and_open_of_the_same_second_are_two_events() -> None:
    proxy = only(load("opened") | {"event": "proxy_open"})
    human = only(load("opened"))
    assert proxy.event_id != human.event_id


def test_batched_mode_is_an_array_of_events() -> None:
    events = parse((FIXTURES / "batched.json").read_bytes())
    assert [e.type for e in events] == [EventType.DELIVERED, EventType.CLICKED]
    assert parse([]) == []


def test_ts_epoch_in_milliseconds() -> None:
    opened = only(load("opened") | {"ts_epoch": 1520363423123})
    assert opened.occurred_at == datetime(2018, 3, 6, 19, 10, 23, 123000, tzinfo=UTC)


def test_ts_epoch_in_seconds_as_the_docs_samples_give_it() -> None:
    opened = only(load("opened") | {"ts_epoch": 1520363423})
    assert opened.occurred_at == datetime(2018, 3, 6, 19, 10, 23, tzinfo=UTC)


def test_ts_event_when_ts_epoch_is_absent() -> None:
    delivered = only(load("delivered"))
    assert "ts_epoch" not in load("delivered")
    assert delivered.occurred_at == datetime(2020, 11, 9, 14, 54, 14, tzinfo=UTC)


def test_ts_epoch_wins_over_ts_event() -> None:
    both = only(load("hard_bounce") | {"ts_epoch": 1604933600000, "ts_event": 1604933654})
    assert both.occurred_at == datetime(2020, 11, 9, 14, 53, 20, tzinfo=UTC)


def test_local_date_is_never_used() -> None:
    item = load("delivered")
    del item["ts_event"]
    assert "date" in item
    with pytest.raises(ParseError, match="neither ts_epoch nor ts_event"):
        parse(item)


def test_message_id_keeps_the_send_apis_angle_brackets() -> None:
    assert only(load("delivered")).message_id == "<201798300811.5787683@relay.domain.com>"
    assert only(load("opened")).message_id == "<201803011158.9876543210@smtp-relay.mailin.fr>"


def test_reason_loses_its_leading_space() -> None:
    bounced = only(load("hard_bounce_live"))
    assert bounced.bounce is not None and bounced.bounce.reason is not None
    assert bounced.bounce.reason.startswith("RecipientError")


def test_bounce_classes() -> None:
    hard, soft = only(load("hard_bounce")), only(load("soft_bounce"))
    assert hard.bounce is not None and hard.bounce.bounce_class == "hard"
    assert soft.bounce is not None and soft.bounce.bounce_class == "soft"


@pytest.mark.parametrize("name", ["blocked", "invalid_email", "error"])
def test_never_sent_is_dropped(name: str) -> None:
    assert only(load(name)).type is EventType.DROPPED


def test_webhook_id_is_not_an_event_id() -> None:
    first = only(load("click"))
    assert first.provider_event_id is None
    assert first.event_id != only(load("click") | {"link": "https://domain.com/other"}).event_id


def test_custom_header_carries_the_attribution() -> None:
    sent = only(load("request_with_metadata"))
    assert (sent.campaign_id, sent.delivery_id, sent.recipient.contact_id) == (
        "spring-sale",
        "spring-sale-1",
        "c-77",
    )


@pytest.mark.parametrize("name", ["unsubscribed", "proxy_open", "request_with_metadata"])
def test_first_tag_can_carry_the_campaign(name: str) -> None:
    item = load(name) | {"X-Mailin-custom": ""}
    expected = {"unsubscribed": "transactionalTag", "proxy_open": "transactionalTag"}
    assert only(item, MetadataKeys(campaign_id="tag")).campaign_id == expected.get(name, "tag1")


def test_marketing_list_event_is_nothing() -> None:
    assert parse({"event": "list_addition", "email": "a@example.com", "ts_event": 1}) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b'{"items": []}', "inbound"),
        (b"[1]", "event 0 is not an object"),
        (b'{"event": "teleport", "email": "a@b.c", "ts_event": 1}', "unknown event 'teleport'"),
        (b'{"event": "delivered", "ts_event": 1}', "neither a recipient nor a message"),
    ],
)
def test_unreadable_body_goes_to_dead_letters(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------


async def test_right_basic_credentials_are_accepted() -> None:
    signed = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await brevo.verify(signed, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))


async def test_bearer_token_is_accepted() -> None:
    token = fresh_token()
    creds = Credentials(ACCOUNT, "brevo", secrets=(f"bearer:{token}",))
    await brevo.verify(request(f"Bearer {token}"), creds, SIGNER.context(NOW))


async def test_wrong_bearer_token_is_refused() -> None:
    creds = Credentials(ACCOUNT, "brevo", secrets=(f"bearer:{fresh_token()}",))
    with pytest.raises(Rejected, match="Bearer credentials do not match"):
        await brevo.verify(request(f"Bearer {fresh_token()}"), creds, SIGNER.context(NOW))


async def test_token_sent_as_basic_or_pair_sent_as_bearer_is_refused() -> None:
    pair, token = fresh_credentials(), fresh_token()
    creds = Credentials(ACCOUNT, "brevo", secrets=(pair, f"bearer:{token}"))
    with pytest.raises(Rejected):
        await brevo.verify(request(f"Bearer {pair}"), creds, SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await brevo.verify(request(basic(f"bearer:{token}")), creds, SIGNER.context(NOW))


async def test_basic_and_bearer_secrets_may_be_rotated_together() -> None:
    pair, token = fresh_credentials(), fresh_token()
    creds = Credentials(ACCOUNT, "brevo", secrets=(pair, f"bearer:{token}"))
    await brevo.verify(request(basic(pair)), creds, SIGNER.context(NOW))
    await brevo.verify(request(f"Bearer {token}"), creds, SIGNER.context(NOW))


async def test_wrong_password_is_refused() -> None:
    user = SIGNER.secret.split(":")[0]
    with pytest.raises(Rejected, match="Basic credentials do not match"):
        await brevo.verify(
            request(basic(f"{user}:guess")), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW)
        )


@pytest.mark.parametrize("value", [None, "Basic", "Bearer", "Basic !!!not-base64!!!", "Digest x"])
async def test_missing_or_malformed_authorization_is_refused(value: str | None) -> None:
    with pytest.raises(Rejected):
        await brevo.verify(request(value), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))


async def test_account_without_secrets_refuses_everything() -> None:
    signed = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    with pytest.raises(Rejected, match="no Basic credentials or Bearer token"):
        await brevo.verify(signed, Credentials(ACCOUNT, "brevo"), SIGNER.context(NOW))


async def test_contract_signer_signs_what_verify_accepts() -> None:
    signed = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await brevo.verify(signed, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await brevo.verify(signed, SIGNER.wrong_credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await brevo.verify(SIGNER.strip(signed), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    assert parse(SIGNER.sample_body())


def test_adapter_is_registered_under_its_one_name() -> None:
    assert brevo.ADAPTER.name == "brevo" and brevo.ADAPTER.handshake is None
