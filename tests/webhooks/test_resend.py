"""Resend adapter: the documented payloads, each quirk, and Svix signature verification."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.errors import ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import resend
from service.webhooks.base import Context, Credentials, MetadataKeys, Nonce, RawRecord
from tests.webhooks.contract_resend import SIGNER, sign_request
from tests.webhooks.contract_standard_webhooks import new_secret

FIXTURES = Path(__file__).parent / "fixtures" / "resend"
BODIES = sorted(
    p for p in FIXTURES.glob("*.json") if not p.name.endswith((".expected.json", ".headers.json"))
)
ACCOUNT = "acct-fixtures"
RECEIVED_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC)
CONTEXT = Context(now=lambda: NOW)
URL = "https://hooks.example.com/webhooks/resend/acct-fixtures"
SVIX_ID = "msg_2W2D3qXLS5fOaPja1GDg7rF2CwB"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return data


def kept_headers(body: Path) -> dict[str, str]:
    path = body.with_name(body.stem + ".headers.json")
    return json.loads(path.read_bytes()) if path.exists() else {}


def parse(
    body: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    keys: MetadataKeys | None = None,
) -> list[Event]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    record = RawRecord(
        ACCOUNT,
        "resend",
        raw,
        "application/json",
        RECEIVED_AT,
        headers={"svix-id": SVIX_ID} if headers is None else headers,
        metadata_keys=keys or MetadataKeys(),
    )
    return resend.parse(record)


def only(body: dict[str, Any], **kwargs: Any) -> Event:
    (event,) = parse(body, **kwargs)
    return event


def with_bounce(**bounce: str) -> dict[str, Any]:
    item = load("bounced_permanent")
    item["data"]["bounce"] = bounce
    return item


# --- documented payloads ---------------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=lambda p: p.stem)
def test_documented_payload_gives_its_canonical_events(body: Path) -> None:
    expected = json.loads(body.with_name(body.stem + ".expected.json").read_bytes())
    produced = [
        {k: v for k, v in to_dict(e).items() if k != "received_at"}
        for e in parse(body.read_bytes(), kept_headers(body))
    ]
    assert produced == expected


def test_every_event_type_has_a_fixture() -> None:
    names = {json.loads(body.read_bytes())["type"] for body in BODIES}
    assert set(resend.EVENT_TYPES) | resend.IGNORED_EVENTS <= names


# --- quirks ----------------------------------------------------------------------------------


def test_event_id_is_the_svix_id_header() -> None:
    sent = only(load("sent"))
    assert sent.provider_event_id == SVIX_ID
    retried = only(load("sent"))
    other = only(load("sent"), headers={"svix-id": "msg_other"})
    assert sent.event_id == retried.event_id != other.event_id


def test_adapter_keeps_the_svix_id_header_for_parse() -> None:
    assert resend.ADAPTER.keep_headers == ("svix-id",)


def test_record_without_svix_id_still_parses() -> None:
    assert only(load("delivered"), headers={}).provider_event_id is None


def test_event_time_is_the_top_level_created_at() -> None:
    sent = only(load("sent"))
    assert sent.occurred_at == datetime(2023, 9, 28, 17, 19, 43, 736000, tzinfo=UTC)
    assert load("sent")["data"]["created_at"] != load("sent")["created_at"]


def test_named_recipient_is_reduced_to_the_address() -> None:
    assert load("sent")["data"]["to"][0] == "Recipient <To@Example.org>"
    assert only(load("sent")).recipient.email == "to@example.org"


def test_message_id_is_the_send_apis_email_id() -> None:
    assert only(load("delivered")).message_id == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@pytest.mark.parametrize(
    ("bounce_type", "expected"),
    [("Permanent", "hard"), ("Transient", "soft"), ("Undetermined", None)],
)
def test_bounce_type_decides_the_class(bounce_type: str, expected: str | None) -> None:
    bounced = only(with_bounce(type=bounce_type, subType="General", message="m"))
    assert bounced.type is EventType.BOUNCED
    assert bounced.bounce is not None and bounced.bounce.bounce_class == expected


def test_suppressed_bounce_was_never_attempted() -> None:
    dropped = only(load("bounced_suppressed"))
    assert dropped.type is EventType.DROPPED
    assert dropped.bounce is not None and dropped.bounce.code == "Suppressed"


@pytest.mark.parametrize("name", ["suppressed", "failed"])
def test_resend_not_sending_is_dropped(name: str) -> None:
    assert only(load(name)).type is EventType.DROPPED


def test_click_carries_link_address_and_agent() -> None:
    clicked = only(load("clicked"))
    assert (clicked.url, clicked.ip, clicked.user_agent) == (
        "https://example.com/test",
        "192.168.1.101",
        "Mozilla/5.0 ...",
    )


def test_open_carries_no_reader_details() -> None:
    opened = only(load("opened"))
    assert (opened.ip, opened.user_agent, opened.machine) == (None, None, None)


def test_tags_carry_the_attribution() -> None:
    sent = only(load("sent"))
    assert (sent.campaign_id, sent.delivery_id, sent.recipient.contact_id) == (
        "autumn",
        "autumn-1",
        "c-9",
    )


def test_tags_in_the_send_apis_list_shape_are_read_too() -> None:
    item = load("delivered")
    item["data"]["tags"] = [{"name": "campaign_id", "value": "autumn"}]
    assert only(item).campaign_id == "autumn"


@pytest.mark.parametrize("name", ["contact_updated", "scheduled"])
def test_account_and_scheduling_events_are_nothing(name: str) -> None:
    assert parse(load(name)) == []


def test_unlisted_account_event_is_nothing() -> None:
    assert parse({"type": "domain.updated", "created_at": "2025-01-01T00:00:00Z", "data": {}}) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"data": {}}', "no type"),
        (b'{"type": "email.teleported", "data": {}}', "unknown event type 'email.teleported'"),
        (b'{"type": "email.sent", "data": {"email_id": "e"}}', "no created_at"),
        (
            b'{"type": "email.sent", "created_at": "2023-09-28 17:19", "data": {"to": ["a@b.c"]}}',
            "not an ISO-8601",
        ),
        (b'{"type": "email.sent", "created_at": "2023-09-28T17:19:43Z", "data": {}}', "neither"),
    ],
)
def test_unreadable_body_goes_to_dead_letters(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------


BODY = (FIXTURES / "delivered.json").read_bytes()


def credentials(*secrets: str) -> Credentials:
    return Credentials(ACCOUNT, "resend", secrets=secrets)


async def test_signed_request_is_accepted() -> None:
    secret = new_secret()
    await resend.verify(sign_request((secret,), BODY, URL, NOW), credentials(secret), CONTEXT)


async def test_several_signatures_in_one_header() -> None:
    # While a secret rotates, Svix signs with each, space-separated; any one may verify.
    old, new, unknown = new_secret(), new_secret(), new_secret()
    signed = sign_request((unknown, old, new), BODY, URL, NOW)
    assert len(signed.headers["svix-signature"].split(" ")) == 3
    await resend.verify(signed, credentials(new), CONTEXT)
    await resend.verify(signed, credentials(old), CONTEXT)
    with pytest.raises(Rejected, match="does not match"):
        await resend.verify(signed, credentials(new_secret()), CONTEXT)


async def test_secret_without_its_prefix_is_accepted() -> None:
    secret = new_secret()
    signed = sign_request((secret,), BODY, URL, NOW)
    await resend.verify(signed, credentials(secret.removeprefix("whsec_")), CONTEXT)


async def test_wrong_secret_is_refused() -> None:
    signed = sign_request((new_secret(),), BODY, URL, NOW)
    with pytest.raises(Rejected, match="resend: signature does not match"):
        await resend.verify(signed, credentials(new_secret()), CONTEXT)


async def test_tampered_body_is_refused() -> None:
    secret = new_secret()
    signed = sign_request((secret,), BODY, URL, NOW)
    tampered = replace(signed, body=BODY.replace(b"email.delivered", b"email.bounced"))
    with pytest.raises(Rejected, match="does not match"):
        await resend.verify(tampered, credentials(secret), CONTEXT)


async def test_changed_svix_id_is_refused() -> None:
    secret = new_secret()
    signed = sign_request((secret,), BODY, URL, NOW)
    moved = replace(signed, headers={**signed.headers, "svix-id": "msg_replayed_under_new_id"})
    with pytest.raises(Rejected, match="does not match"):
        await resend.verify(moved, credentials(secret), CONTEXT)


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
async def test_stale_or_future_timestamp_is_refused(skew: timedelta) -> None:
    secret = new_secret()
    signed = sign_request((secret,), BODY, URL, NOW + skew)
    with pytest.raises(Rejected, match="replay window"):
        await resend.verify(signed, credentials(secret), CONTEXT)


async def test_timestamp_inside_the_five_minute_window_is_accepted() -> None:
    secret = new_secret()
    signed = sign_request((secret,), BODY, URL, NOW - timedelta(minutes=4, seconds=59))
    await resend.verify(signed, credentials(secret), CONTEXT)


@pytest.mark.parametrize("drop", ["svix-id", "svix-timestamp", "svix-signature"])
async def test_missing_header_is_refused(drop: str) -> None:
    secret = new_secret()
    signed = sign_request((secret,), BODY, URL, NOW)
    headers = {k: v for k, v in signed.headers.items() if k != drop}
    with pytest.raises(Rejected, match="header missing"):
        await resend.verify(replace(signed, headers=headers), credentials(secret), CONTEXT)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("svix-timestamp", "1700000000.5", "not epoch seconds"),
        ("svix-signature", "v1,not-base64!", "does not match"),
        ("svix-signature", "v2,abc=", "does not match"),
        ("svix-signature", " ".join(["v1,abc="] * 33), "more than 32"),
    ],
)
async def test_malformed_header_is_refused(name: str, value: str, reason: str) -> None:
    secret = new_secret()
    signed = sign_request((secret,), BODY, URL, NOW)
    broken = replace(signed, headers={**signed.headers, name: value})
    with pytest.raises(Rejected, match=reason):
        await resend.verify(broken, credentials(secret), CONTEXT)


async def test_account_without_a_usable_secret_refuses_everything() -> None:
    signed = sign_request((new_secret(),), BODY, URL, NOW)
    with pytest.raises(Rejected, match="no usable signing secret"):
        await resend.verify(signed, credentials("not base64!"), CONTEXT)


async def test_contract_signer_signs_what_verify_accepts() -> None:
    signed = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await resend.verify(signed, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await resend.verify(signed, SIGNER.wrong_credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await resend.verify(SIGNER.strip(signed), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    assert parse(SIGNER.sample_body())


def test_adapter_is_registered_under_its_one_name() -> None:
    assert resend.ADAPTER.name == "resend" and resend.ADAPTER.handshake is None


def test_the_nonce_is_the_svix_id_until_its_timestamp_leaves_the_window() -> None:
    request = sign_request((new_secret(),), BODY, URL, NOW, msg_id="msg_1")
    expected = Nonce("msg_1", NOW.replace(microsecond=0) + CONTEXT.replay_window)
    assert resend.nonce(request, CONTEXT) == expected
    assert resend.ADAPTER.nonce is resend.nonce
