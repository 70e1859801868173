"""Postal adapter: the documented payloads, each quirk, and RSA signature verification."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.errors import ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import postal
from service.webhooks.base import Context, Credentials, MetadataKeys, RawRecord
from tests.webhooks.contract_postal import SIGNER, public_key_text, sign_request, spare_key

FIXTURES = Path(__file__).parent / "fixtures" / "postal"
BODIES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
ACCOUNT = "acct-fixtures"
RECEIVED_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC)
CONTEXT = Context(now=lambda: NOW)
URL = "https://hooks.example.com/webhooks/postal/acct-fixtures"
BODY = (FIXTURES / "message_sent.json").read_bytes()


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return data


def parse(body: bytes | dict[str, Any], keys: MetadataKeys | None = None) -> list[Event]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    record = RawRecord(
        ACCOUNT,
        "postal",
        raw,
        "application/json",
        RECEIVED_AT,
        metadata_keys=keys or MetadataKeys(),
    )
    return postal.parse(record)


def only(body: dict[str, Any], keys: MetadataKeys | None = None) -> Event:
    (event,) = parse(body, keys)
    return event


def credentials(*secrets: str) -> Credentials:
    return Credentials(ACCOUNT, "postal", secrets=secrets)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return SIGNER.key


# --- documented payloads ---------------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=lambda p: p.stem)
def test_documented_payload_gives_its_canonical_events(body: Path) -> None:
    expected = json.loads(body.with_name(body.stem + ".expected.json").read_bytes())
    produced = [
        {k: v for k, v in to_dict(e).items() if k != "received_at"}
        for e in parse(body.read_bytes())
    ]
    assert produced == expected


def test_every_event_name_has_a_fixture() -> None:
    names = {json.loads(body.read_bytes())["event"] for body in BODIES}
    assert set(postal.EVENT_TYPES) | {"MessageHeld", "DomainDNSError"} <= names


# --- quirks ----------------------------------------------------------------------------------


def test_held_and_incoming_produce_nothing() -> None:
    assert parse(load("message_held")) == []
    assert parse(load("incoming_delivery_failed")) == []
    incoming_open = load("message_loaded")
    incoming_open["payload"]["message"]["direction"] = "incoming"
    assert parse(incoming_open) == []


@pytest.mark.parametrize("name", ["DomainDNSError", "SendLimitApproaching", "SendLimitExceeded"])
def test_server_events_produce_nothing(name: str) -> None:
    assert parse(load("domain_dns_error") | {"event": name}) == []


@pytest.mark.parametrize(
    ("fixture", "kind", "bounce_class"),
    [
        ("message_sent", EventType.DELIVERED, None),
        ("message_delayed", EventType.DEFERRED, None),
        ("message_delivery_failed", EventType.BOUNCED, "hard"),
        ("message_bounced", EventType.BOUNCED, None),
        ("message_loaded", EventType.OPENED, None),
        ("message_link_clicked", EventType.CLICKED, None),
    ],
)
def test_mapping(fixture: str, kind: EventType, bounce_class: str | None) -> None:
    event = only(load(fixture))
    assert event.type is kind
    assert (event.bounce.bounce_class if event.bounce else None) == bounce_class


def test_bounce_names_the_outgoing_message_not_the_bounce_reply() -> None:
    bounced = only(load("message_bounced"))
    assert (bounced.message_id, bounced.recipient.email) == ("233843", "bounce@example.com")


def test_event_time_is_the_top_level_timestamp() -> None:
    sent = only(load("message_sent"))
    assert sent.occurred_at == datetime(2020, 11, 30, 16, 18, 21, 354368, tzinfo=UTC)


def test_uuid_is_the_event_id_and_survives_retries() -> None:
    sent = only(load("message_sent"))
    assert sent.provider_event_id == "58e8d7ee-2cd5-4db2-9af3-3f436105795a"
    assert sent.event_id == only(load("message_sent")).event_id
    assert sent.event_id != only(load("message_sent") | {"uuid": "another"}).event_id


def test_message_id_is_the_send_apis_numeric_id_as_text() -> None:
    assert only(load("message_sent")).message_id == "1563"


def test_tag_can_carry_the_campaign() -> None:
    sent = only(load("message_sent"), MetadataKeys(campaign_id="tag"))
    assert sent.campaign_id == "welcome-email"


def test_reader_details_only_on_opens_and_clicks() -> None:
    clicked = only(load("message_link_clicked"))
    assert (clicked.url, clicked.ip) == ("https://example.com/pricing", "203.0.113.7")
    assert only(load("message_sent")).ip is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"rcpt_to": "to@example.org", "message": "..."}', "inbound"),
        (b'{"event": "MessageTeleported", "payload": {}}', "unknown event 'MessageTeleported'"),
        (b'{"event": "MessageSent", "payload": {"message": {}}, "timestamp": 1}', "neither"),
        (b'{"event": "MessageSent", "payload": {"message": {"id": 1}}}', "no timestamp"),
    ],
)
def test_unreadable_body_goes_to_dead_letters(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------


async def test_sha256_signature_is_accepted(key: rsa.RSAPrivateKey) -> None:
    request = sign_request(key, BODY, URL, sha1=False)
    await postal.verify(request, credentials(public_key_text(key)), CONTEXT)


async def test_sha1_signature_alone_is_accepted(key: rsa.RSAPrivateKey) -> None:
    request = sign_request(key, BODY, URL, sha256=False)
    await postal.verify(request, credentials(public_key_text(key)), CONTEXT)


async def test_sha256_signature_is_preferred_when_both_are_sent(key: rsa.RSAPrivateKey) -> None:
    request = sign_request(key, BODY, URL)
    broken = replace(request, headers={**request.headers, "x-postal-signature-256": "AAAA"})
    with pytest.raises(Rejected, match="does not match"):
        await postal.verify(broken, credentials(public_key_text(key)), CONTEXT)


async def test_pem_and_dkim_record_forms_of_the_key_are_accepted(key: rsa.RSAPrivateKey) -> None:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request = sign_request(key, BODY, URL)
    await postal.verify(request, credentials(pem.decode()), CONTEXT)
    await postal.verify(request, credentials(f"p={public_key_text(key)};"), CONTEXT)


async def test_wrong_key_is_refused(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(Rejected, match="postal: signature does not match"):
        await postal.verify(
            sign_request(key, BODY, URL), credentials(public_key_text(spare_key())), CONTEXT
        )


async def test_either_key_is_accepted_while_rotating(key: rsa.RSAPrivateKey) -> None:
    both = credentials(public_key_text(spare_key()), public_key_text(key))
    await postal.verify(sign_request(key, BODY, URL), both, CONTEXT)


async def test_tampered_body_is_refused(key: rsa.RSAPrivateKey) -> None:
    request = sign_request(key, BODY, URL)
    tampered = replace(request, body=BODY.replace(b"MessageSent", b"MessageBounced"))
    with pytest.raises(Rejected, match="does not match"):
        await postal.verify(tampered, credentials(public_key_text(key)), CONTEXT)


async def test_missing_signature_is_refused(key: rsa.RSAPrivateKey) -> None:
    stripped = SIGNER.strip(sign_request(key, BODY, URL))
    with pytest.raises(Rejected, match="header missing"):
        await postal.verify(stripped, credentials(public_key_text(key)), CONTEXT)


async def test_garbage_signature_and_keys_are_refused(key: rsa.RSAPrivateKey) -> None:
    request = sign_request(key, BODY, URL)
    garbage = replace(request, headers={**request.headers, "x-postal-signature-256": "not b64!"})
    with pytest.raises(Rejected, match="not base64"):
        await postal.verify(garbage, credentials(public_key_text(key)), CONTEXT)
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ec_text = base64.b64encode(
        ec_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    with pytest.raises(Rejected, match="no usable RSA public key"):
        await postal.verify(request, credentials("bm90IGEga2V5", ec_text), CONTEXT)


async def test_contract_signer_signs_what_verify_accepts() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await postal.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await postal.verify(request, SIGNER.wrong_credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await postal.verify(SIGNER.strip(request), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    assert parse(SIGNER.sample_body())


def test_adapter_is_registered_under_its_one_name() -> None:
    assert postal.ADAPTER.name == "postal" and postal.ADAPTER.handshake is None
