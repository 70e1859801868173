"""Mailgun adapter: the documented payloads, each quirk, and signature verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.errors import ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import mailgun
from service.webhooks.base import (
    Context,
    Credentials,
    MetadataKeys,
    Nonce,
    RawRecord,
    WebhookRequest,
)
from tests.webhooks.contract_mailgun import SIGNER, sign_body

FIXTURES = Path(__file__).parent / "fixtures" / "mailgun"
BODIES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
ACCOUNT = "acct-fixtures"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://hooks.example.com/webhooks/mailgun/acct-fixtures"
KEY = "key-generated-for-this-test-0123456789ab"
OTHER_KEY = "key-generated-for-this-test-ba9876543210"


def parse(body: bytes | dict[str, Any], **kwargs: Any) -> list[Event]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return mailgun.parse(RawRecord(account=ACCOUNT, source="mailgun", body=raw, **kwargs))


def payload(**fields: Any) -> dict[str, Any]:
    """A delivered event as Mailgun posts it, with event-data `fields` replaced."""
    data = {
        "event": "delivered",
        "id": "hTWCTD81RtiDN-",
        "timestamp": 1534108637.153125,
        "recipient": "recipient@example.com",
        "message": {"headers": {"message-id": "20180812211713.1.DF5966851B4BAA99@example.org"}},
        "delivery-status": {"code": 250, "message": "OK"},
    }
    signature = {"timestamp": "1534108637", "token": "651869375b9df3c9", "signature": "0" * 64}
    return {"signature": signature, "event-data": {**data, **fields}}


def only(body: dict[str, Any], **kwargs: Any) -> Event:
    (result,) = parse(body, **kwargs)
    return result


# --- documented payloads ---------------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=lambda p: p.stem)
def test_fixture_parses_to_its_expected_events(body: Path) -> None:
    expected = orjson.loads(body.with_name(body.stem + ".expected.json").read_bytes())
    produced = [
        {k: v for k, v in to_dict(e).items() if k != "received_at"}
        for e in parse(body.read_bytes())
    ]
    assert produced == expected


def test_every_documented_event_type_has_a_fixture() -> None:
    names = {orjson.loads(body.read_bytes())["event-data"]["event"] for body in BODIES}
    assert set(mailgun.EVENT_TYPES) | {"failed", "stored"} <= names


# --- quirks ----------------------------------------------------------------------------------


def test_temporary_failure_is_deferred() -> None:
    failed = only(
        payload(
            event="failed",
            severity="temporary",
            reason="generic",
            **{"delivery-status": {"code": 421, "message": "try again later"}},
        )
    )
    assert failed.type is EventType.DEFERRED
    assert failed.bounce is not None
    assert (failed.bounce.bounce_class, failed.bounce.code) == (None, "421")
    assert failed.bounce.reason == "try again later"


@pytest.mark.parametrize(
    "reason", ["suppress-bounce", "suppress-unsubscribe", "suppress-complaint"]
)
def test_suppress_bounce_is_dropped(reason: str) -> None:
    status = {
        "code": 605,
        "message": "",
        "description": "Not delivering to previously bounced address",
    }
    failed = only(
        payload(event="failed", severity="permanent", reason=reason, **{"delivery-status": status})
    )
    assert failed.type is EventType.DROPPED
    assert failed.bounce is not None and failed.bounce.bounce_class is None
    assert failed.bounce.reason == "Not delivering to previously bounced address"


def test_permanent_failure_is_a_hard_bounce() -> None:
    status = {"code": 550, "message": "5.1.1 The email account does not exist"}
    failed = only(
        payload(
            event="failed", severity="permanent", reason="bounce", **{"delivery-status": status}
        )
    )
    assert failed.type is EventType.BOUNCED
    assert failed.bounce is not None
    assert (failed.bounce.bounce_class, failed.bounce.code) == ("hard", "550")


def test_delayed_bounce_is_a_hard_bounce() -> None:
    (failed,) = parse((FIXTURES / "failed_delayed_bounce.json").read_bytes())
    assert failed.type is EventType.BOUNCED
    assert failed.bounce is not None and failed.bounce.bounce_class == "hard"


def test_rejected_send_is_dropped_and_recipient_comes_from_to() -> None:
    (rejected,) = parse((FIXTURES / "rejected.json").read_bytes())
    assert rejected.type is EventType.DROPPED
    assert rejected.recipient.email == "recipient@example.org"
    assert rejected.bounce is not None
    assert rejected.bounce.reason == "Sandbox subdomains are for test purposes only."


def test_rejected_send_to_several_addresses_is_a_parse_error() -> None:
    data = payload(event="rejected", message={"headers": {"to": "a@example.com, b@example.com"}})
    del data["event-data"]["recipient"]
    with pytest.raises(ParseError, match="no single recipient"):
        parse(data)


def test_message_id_gets_angle_brackets() -> None:
    assert only(payload()).message_id == "<20180812211713.1.DF5966851B4BAA99@example.org>"
    kept = payload(message={"headers": {"message-id": "<already@example.org>"}})
    assert only(kept).message_id == "<already@example.org>"


@pytest.mark.parametrize(
    ("bot", "agent_class"),
    [
        ("apple", "apple_mpp"),
        ("gmail", "gmail_prefetch"),
        ("generic", "scanner"),
        ("new", "unknown"),
    ],
)
def test_bot_open_or_click_is_flagged(bot: str, agent_class: str) -> None:
    for name in ("opened", "clicked"):
        flagged = only(
            payload(event=name, **{"client-info": {"bot": bot, "user-agent": "Mozilla/5.0"}})
        )
        assert flagged.machine is True
        assert (flagged.machine_reason, flagged.agent_class) == ("provider_flag", agent_class)


def test_empty_bot_means_mailgun_saw_a_person() -> None:
    opened = only(payload(event="opened", **{"client-info": {"bot": "", "user-agent": "UA"}}))
    assert opened.machine is False


def test_open_without_bot_field_leaves_machine_unknown() -> None:
    opened = only(payload(event="opened", **{"client-info": {"user-agent": "UA"}}))
    assert (opened.machine, opened.machine_reason, opened.agent_class) == (None, None, None)


def test_click_keeps_url_ip_and_user_agent() -> None:
    client = {"user-agent": "UA", "bot": ""}
    clicked = only(
        payload(
            event="clicked", url="https://example.com/t", ip="192.0.2.1", **{"client-info": client}
        )
    )
    assert (clicked.url, clicked.ip, clicked.user_agent) == (
        "https://example.com/t",
        "192.0.2.1",
        "UA",
    )


def test_retried_event_keeps_its_event_id() -> None:
    first = payload()
    retried = payload()
    retried["signature"] = {
        "timestamp": "1534112237",
        "token": "another-token",
        "signature": "1" * 64,
    }
    assert only(first).event_id == only(retried).event_id


def test_event_id_repeated_on_another_day_is_another_event() -> None:
    today = only(payload(event="opened"))
    tomorrow = only(payload(event="opened", timestamp=1534108637.153125 + 86400))
    assert today.provider_event_id == tomorrow.provider_event_id
    assert today.event_id != tomorrow.event_id


def test_timestamp_keeps_microseconds() -> None:
    assert only(payload()).occurred_at == datetime(2018, 8, 12, 21, 17, 17, 153125, tzinfo=UTC)


def test_user_variables_carry_campaign_delivery_contact_and_ab_version() -> None:
    variables = {"campaign_id": "c1", "delivery_id": "d1", "contact_id": "p1", "ab_version": "A"}
    sent = only(payload(**{"user-variables": variables}))
    assert (sent.campaign_id, sent.delivery_id, sent.ab_version) == ("c1", "d1", "A")
    assert sent.recipient.contact_id == "p1"
    as_text = only(payload(**{"user-variables": orjson.dumps(variables).decode()}))
    assert as_text.delivery_id == "d1"


def test_metadata_keys_can_be_renamed_per_account() -> None:
    keys = MetadataKeys(campaign_id="cid")
    assert only(payload(**{"user-variables": {"cid": 7}}), metadata_keys=keys).campaign_id == "7"


@pytest.mark.parametrize("name", sorted(mailgun.IGNORED_EVENTS))
def test_stored_and_mailing_list_events_produce_nothing(name: str) -> None:
    assert parse(payload(event=name)) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"event=delivered&recipient=a%40example.com", "not JSON"),
        (b"[]", "no event-data"),
        (orjson.dumps({"event-data": {"timestamp": 1}}), "no event name"),
        (orjson.dumps(payload(event="bogus")), "unknown event 'bogus'"),
        (orjson.dumps(payload(timestamp=None)), "no timestamp"),
        (orjson.dumps(payload(timestamp="noon")), "not epoch seconds"),
    ],
)
def test_unreadable_input_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------

CONTEXT = Context(now=lambda: NOW)
BODY = orjson.dumps({"event-data": payload()["event-data"]})


def signed(at: datetime = NOW, key: str = KEY, token: str | None = None) -> WebhookRequest:
    return WebhookRequest(
        sign_body(key, BODY, at, token), {"content-type": "application/json"}, URL
    )


def credentials(*keys: str) -> Credentials:
    return Credentials(ACCOUNT, "mailgun", secrets=keys)


def resigned(request: WebhookRequest, **changes: Any) -> WebhookRequest:
    data = orjson.loads(request.body)
    data["signature"].update(changes)
    return WebhookRequest(orjson.dumps(data), request.headers, request.url)


async def test_valid_signature_is_accepted() -> None:
    await mailgun.verify(signed(), credentials(KEY), CONTEXT)


async def test_rotated_second_key_is_accepted() -> None:
    await mailgun.verify(signed(), credentials(OTHER_KEY, KEY), CONTEXT)


async def test_wrong_key_is_refused() -> None:
    with pytest.raises(Rejected, match="mailgun: signature does not match"):
        await mailgun.verify(signed(key=OTHER_KEY), credentials(KEY), CONTEXT)


@pytest.mark.parametrize("field", ["token", "timestamp", "signature"])
async def test_tampered_signature_block_is_refused(field: str) -> None:
    request = signed(token="1234567890abcdef")
    block = orjson.loads(request.body)["signature"]
    tampered = {
        "token": block["token"] + "0",
        "timestamp": str(int(block["timestamp"]) - 1),
        "signature": "0" * 64,
    }
    with pytest.raises(Rejected, match="does not match"):
        await mailgun.verify(
            resigned(request, **{field: tampered[field]}), credentials(KEY), CONTEXT
        )


async def test_changed_event_data_is_not_detected_because_mailgun_does_not_sign_it() -> None:
    request = signed()
    data = orjson.loads(request.body)
    data["event-data"]["event"] = "complained"
    await mailgun.verify(WebhookRequest(orjson.dumps(data), {}, URL), credentials(KEY), CONTEXT)


@pytest.mark.parametrize("skew", [timedelta(hours=-8, minutes=-6), timedelta(minutes=6)])
async def test_stale_or_future_timestamp_is_refused(skew: timedelta) -> None:
    with pytest.raises(Rejected, match="replay window"):
        await mailgun.verify(signed(at=NOW + skew), credentials(KEY), CONTEXT)


@pytest.mark.parametrize("age", [timedelta(minutes=6), timedelta(hours=4), timedelta(hours=8)])
async def test_a_retry_signed_at_the_first_attempt_is_accepted_for_mailguns_8_hours(
    age: timedelta,
) -> None:
    """Mailgun retries for 8 hours with the first attempt's signature: our own 503 must not turn
    into a 401 on each retry (the token memory refuses replays instead)."""
    await mailgun.verify(signed(at=NOW - age), credentials(KEY), CONTEXT)


async def test_a_timestamp_of_any_size_outside_the_span_is_refused() -> None:
    request = signed()
    token = orjson.loads(request.body)["signature"]["token"]
    for value in ("9" * 400, "0", str(2**64)):
        # Correctly signed, so only the window can refuse it.
        signature = mailgun.sign(KEY, (value + token).encode()).decode()
        forged = resigned(request, timestamp=value, signature=signature)
        with pytest.raises(Rejected, match="replay window"):
            await mailgun.verify(forged, credentials(KEY), CONTEXT)


async def test_integer_timestamp_is_signed_as_its_digits() -> None:
    request = signed(token="1234567890abcdef")
    as_int = resigned(request, timestamp=int(orjson.loads(request.body)["signature"]["timestamp"]))
    await mailgun.verify(as_int, credentials(KEY), CONTEXT)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"timestamp=1&token=t&signature=s", "not JSON"),
        (BODY, "no signature object"),
        (
            orjson.dumps({"signature": {"timestamp": "soon", "token": "t", "signature": "s"}}),
            "epoch",
        ),
        (orjson.dumps({"signature": {"timestamp": "1", "signature": "s"}}), "token or signature"),
    ],
)
async def test_missing_or_malformed_signature_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        await mailgun.verify(WebhookRequest(body, {}, URL), credentials(KEY), CONTEXT)


async def test_contract_signer_signs_what_verify_accepts() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await mailgun.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await mailgun.verify(request, SIGNER.wrong_credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await mailgun.verify(SIGNER.strip(request), SIGNER.credentials(ACCOUNT), CONTEXT)
    assert parse(request.body)


def test_the_nonce_is_the_signed_token_until_its_timestamp_leaves_the_window() -> None:
    """Mailgun signs no event data, so the token is what the service remembers once accepted."""
    token = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
    request = signed(at=NOW - timedelta(seconds=30), token=token)
    nonce = mailgun.nonce(request, CONTEXT)
    expires = NOW - timedelta(seconds=30) + mailgun.RETRY_SPAN + CONTEXT.replay_window
    assert nonce == Nonce(token, expires)
    assert mailgun.ADAPTER.nonce is mailgun.nonce
