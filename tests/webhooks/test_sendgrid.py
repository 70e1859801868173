"""SendGrid adapter: the documented payloads, each quirk, and signature verification."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.errors import ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import sendgrid
from service.webhooks.base import Context, Credentials, MetadataKeys, RawRecord
from tests.webhooks.contract_sendgrid import SIGNER, public_key_text, sign_request

FIXTURES = Path(__file__).parent / "fixtures" / "sendgrid"
BODIES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
ACCOUNT = "acct-fixtures"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://hooks.example.com/webhooks/sendgrid/acct-fixtures"


def parse(body: bytes | list[dict[str, Any]], **kwargs: Any) -> list[Event]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return sendgrid.parse(RawRecord(account=ACCOUNT, source="sendgrid", body=raw, **kwargs))


def event(**fields: Any) -> dict[str, Any]:
    """One event as SendGrid's docs show it, with `fields` replaced."""
    base = {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "delivered",
        "category": "cat facts",
        "sg_event_id": "rWVYmVk90MjZJ9iohOBa3w==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    }
    return {**base, **fields}


def only(body: list[dict[str, Any]], **kwargs: Any) -> Event:
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
    names = {item["event"] for body in BODIES for item in orjson.loads(body.read_bytes())}
    assert set(sendgrid.EVENT_TYPES) | sendgrid.IGNORED_EVENTS <= names


# --- quirks ----------------------------------------------------------------------------------


def test_bounce_is_hard() -> None:
    bounced = only(
        [event(event="bounce", type="bounce", status="5.1.1", reason="550 no such user")]
    )
    assert bounced.type is EventType.BOUNCED
    assert bounced.bounce is not None
    assert (bounced.bounce.bounce_class, bounced.bounce.code) == ("hard", "5.1.1")
    assert bounced.bounce.reason == "550 no such user"


def test_blocked_bounce_is_soft() -> None:
    blocked = only([event(event="bounce", type="blocked", status="4.0.0", reason="421 try later")])
    assert blocked.type is EventType.BOUNCED
    assert blocked.bounce is not None and blocked.bounce.bounce_class == "soft"


def test_bounce_without_a_type_is_hard() -> None:
    bounced = only([event(event="bounce", status="5.0.0", reason="500 unknown recipient")])
    assert bounced.bounce is not None and bounced.bounce.bounce_class == "hard"


def test_async_bounce_without_message_id_has_no_delivery() -> None:
    for missing in ({"sg_message_id": ""}, {}):
        item = event(event="bounce", type="bounce", **missing)
        if not missing:
            del item["sg_message_id"]
        bounced = only([item])
        assert bounced.message_id is None
        assert bounced.delivery_id is None and bounced.campaign_id is None
        assert bounced.recipient.email == "example@test.com"


def test_message_id_is_the_send_apis_x_message_id() -> None:
    sent = only([event(sg_message_id="wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.13037.57168B4A1D.0")])
    assert sent.message_id == "wrfRRvF7Q0GgwUo2CvDmEA"


def test_machine_open_is_flagged() -> None:
    for flag in (True, "true"):
        opened = only([event(event="open", sg_machine_open=flag, useragent="Mozilla/5.0")])
        assert opened.machine is True
        assert (opened.machine_reason, opened.agent_class) == ("provider_flag", "apple_mpp")


def test_open_sendgrid_calls_human_is_not_a_machine() -> None:
    opened = only([event(event="open", sg_machine_open=False)])
    assert opened.machine is False


def test_open_without_a_flag_leaves_machine_unknown() -> None:
    opened = only([event(event="open", useragent="Mozilla/5.0", ip="192.0.2.1")])
    assert (opened.machine, opened.machine_reason, opened.agent_class) == (None, None, None)
    clicked = only([event(event="click", url="https://example.com/", sg_machine_open=True)])
    assert clicked.machine is None  # SendGrid flags opens only


def test_open_and_click_keep_url_ip_and_user_agent() -> None:
    clicked = only(
        [event(event="click", url="https://example.com/a", ip="192.0.2.1", useragent="UA")]
    )
    assert (clicked.url, clicked.ip, clicked.user_agent) == (
        "https://example.com/a",
        "192.0.2.1",
        "UA",
    )


def test_sending_ip_of_a_delivery_is_not_the_recipients() -> None:
    delivered = only([event(ip="168.1.1.1", response="250 OK")])
    assert delivered.ip is None and delivered.url is None


def test_batch_is_split_into_events() -> None:
    events = parse((FIXTURES / "batch.json").read_bytes())
    assert [e.type for e in events] == [
        EventType.SENT,
        EventType.DEFERRED,
        EventType.DELIVERED,
        EventType.OPENED,
        EventType.CLICKED,
        EventType.BOUNCED,
        EventType.DROPPED,
        EventType.COMPLAINED,
        EventType.UNSUBSCRIBED,
        EventType.UNSUBSCRIBED,
    ]
    assert len({e.event_id for e in events}) == len(events)


def test_retried_event_keeps_its_event_id() -> None:
    first = only([event(event="open", sg_event_id="FOTFFO0ecsBE-zxFXfs6WA==")])
    retried = only([event(event="open", sg_event_id="a-new-id-on-the-retry")])
    assert first.event_id == retried.event_id
    assert retried.provider_event_id == "a-new-id-on-the-retry"


def test_repeated_deferrals_are_distinct_events() -> None:
    first, second = parse(
        [event(event="deferred", attempt="1"), event(event="deferred", attempt="2")]
    )
    assert first.event_id != second.event_id


def test_clicks_on_two_copies_of_a_link_are_distinct_events() -> None:
    link = {"event": "click", "url": "https://example.com/"}
    first, second = parse(
        [
            event(**link, url_offset={"index": 0, "type": "html"}),
            event(**link, url_offset={"index": 1, "type": "html"}),
        ]
    )
    assert first.event_id != second.event_id


def test_group_resubscribe_produces_nothing() -> None:
    assert parse([event(event="group_resubscribe", asm_group_id=10)]) == []


def test_unsubscribe_and_group_unsubscribe_are_unsubscribed() -> None:
    events = parse([event(event="unsubscribe"), event(event="group_unsubscribe", asm_group_id=10)])
    assert [e.type for e in events] == [EventType.UNSUBSCRIBED, EventType.UNSUBSCRIBED]


def test_custom_args_carry_campaign_delivery_contact_and_ab_version() -> None:
    sent = only([event(campaign_id="c1", delivery_id="d1", contact_id="p1", ab_version="B")])
    assert (sent.campaign_id, sent.delivery_id, sent.ab_version) == ("c1", "d1", "B")
    assert sent.recipient.contact_id == "p1"


def test_metadata_keys_can_be_renamed_per_account() -> None:
    keys = MetadataKeys(campaign_id="marketing_campaign_id", delivery_id="send_id")
    sent = only([event(marketing_campaign_id=12345, send_id="s-9")], metadata_keys=keys)
    assert (sent.campaign_id, sent.delivery_id) == ("12345", "s-9")


def test_nested_unique_args_are_read_too() -> None:
    sent = only([event(unique_args={"campaign_id": "c1", "delivery_id": "d1"})])
    assert (sent.campaign_id, sent.delivery_id) == ("c1", "d1")


def test_recipient_is_lower_cased_and_time_is_utc_seconds() -> None:
    sent = only([event(email="John.Doe@SendGrid.com", timestamp="1337966815")])
    assert sent.recipient.email == "john.doe@sendgrid.com"
    assert sent.occurred_at == datetime(2012, 5, 25, 17, 26, 55, tzinfo=UTC)


def test_event_name_case_does_not_matter() -> None:
    assert only([event(event="Processed")]).type is EventType.SENT


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b'{"event": "delivered"}', "not a JSON array"),
        (b"[1]", "not an object"),
        (orjson.dumps([event(event="bogus")]), "unknown event 'bogus'"),
        (orjson.dumps([event(email=None)]), "has no email"),
        (orjson.dumps([event(timestamp=None)]), "has no timestamp"),
        (orjson.dumps([event(timestamp="yesterday")]), "not epoch seconds"),
    ],
)
def test_unreadable_input_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def other_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def credentials(*keys: ec.EllipticCurvePrivateKey) -> Credentials:
    return Credentials(ACCOUNT, "sendgrid", secrets=tuple(public_key_text(k) for k in keys))


BODY = (FIXTURES / "batch.json").read_bytes()
CONTEXT = Context(now=lambda: NOW)


async def test_valid_signature_is_accepted(key: ec.EllipticCurvePrivateKey) -> None:
    await sendgrid.verify(sign_request(key, BODY, URL, NOW), credentials(key), CONTEXT)


async def test_pem_public_key_is_accepted(key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    creds = Credentials(ACCOUNT, "sendgrid", secrets=(pem.decode(),))
    await sendgrid.verify(sign_request(key, BODY, URL, NOW), creds, CONTEXT)


async def test_rotated_second_key_is_accepted(
    key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey
) -> None:
    request = sign_request(key, BODY, URL, NOW)
    await sendgrid.verify(request, credentials(other_key, key), CONTEXT)


async def test_wrong_key_is_refused(
    key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(Rejected, match="sendgrid: signature does not match"):
        await sendgrid.verify(sign_request(key, BODY, URL, NOW), credentials(other_key), CONTEXT)


async def test_tampered_body_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    request = sign_request(key, BODY, URL, NOW)
    tampered = request.body.replace(b'"bounce"', b'"delivered"', 1)
    with pytest.raises(Rejected, match="does not match"):
        await sendgrid.verify(
            type(request)(tampered, request.headers, request.url), credentials(key), CONTEXT
        )


async def test_reserialized_body_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    request = sign_request(key, BODY, URL, NOW)
    pretty = orjson.dumps(orjson.loads(BODY), option=orjson.OPT_INDENT_2)
    with pytest.raises(Rejected):
        await sendgrid.verify(
            type(request)(pretty, request.headers, request.url), credentials(key), CONTEXT
        )


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
async def test_stale_or_future_timestamp_is_refused(
    key: ec.EllipticCurvePrivateKey, skew: timedelta
) -> None:
    with pytest.raises(Rejected, match="replay window"):
        await sendgrid.verify(sign_request(key, BODY, URL, NOW + skew), credentials(key), CONTEXT)


async def test_timestamp_inside_the_window_is_accepted(key: ec.EllipticCurvePrivateKey) -> None:
    request = sign_request(key, BODY, URL, NOW - timedelta(minutes=4))
    await sendgrid.verify(request, credentials(key), CONTEXT)


@pytest.mark.parametrize("drop", [sendgrid.SIGNATURE_HEADER, sendgrid.TIMESTAMP_HEADER])
async def test_missing_header_is_refused(key: ec.EllipticCurvePrivateKey, drop: str) -> None:
    request = sign_request(key, BODY, URL, NOW)
    headers = {k: v for k, v in request.headers.items() if k != drop}
    with pytest.raises(Rejected, match="header missing"):
        await sendgrid.verify(type(request)(BODY, headers, URL), credentials(key), CONTEXT)


async def test_garbage_signature_and_keys_are_refused(key: ec.EllipticCurvePrivateKey) -> None:
    request = sign_request(key, BODY, URL, NOW)
    garbage = {**request.headers, sendgrid.SIGNATURE_HEADER: "not base64!"}
    with pytest.raises(Rejected, match="not base64"):
        await sendgrid.verify(type(request)(BODY, garbage, URL), credentials(key), CONTEXT)
    not_p256 = ec.generate_private_key(ec.SECP384R1())
    bad = Credentials(ACCOUNT, "sendgrid", secrets=("bm90IGEga2V5", public_key_text(not_p256)))
    with pytest.raises(Rejected, match="no usable verification key"):
        await sendgrid.verify(request, bad, CONTEXT)


def test_public_key_text_matches_sendgrids_format(key: ec.EllipticCurvePrivateKey) -> None:
    # SendGrid shows P-256 SubjectPublicKeyInfo keys, which all start like this.
    assert public_key_text(key).startswith("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")
    assert base64.b64decode(public_key_text(key))


async def test_contract_signer_signs_what_verify_accepts() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await sendgrid.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await sendgrid.verify(request, SIGNER.wrong_credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await sendgrid.verify(SIGNER.strip(request), SIGNER.credentials(ACCOUNT), CONTEXT)
    assert parse(SIGNER.sample_body())
