"""Standard Webhooks adapter: Event-API-shaped bodies, `v1` and `v1a` signature verification."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from service import events_api
from service.errors import ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import standard_webhooks
from service.webhooks.base import Context, Credentials, Nonce, RawRecord, WebhookRequest
from tests.webhooks.contract_standard_webhooks import (
    SIGNER,
    new_secret,
    public_key_text,
    signed_headers,
)

# Text from a fixed alphabet (ASCII, a NUL, controls, non-ASCII, an emoji, a lone surrogate):
# text over all of Unicode makes Hypothesis build its character table on the first draw, which
# its too_slow health check can count against a test on a cold, busy machine.
ALPHABET = "abcxyzABC0189 .,;:/@-_()[]{}\"'\\\x00\t\n\x7féß😀\ud83d"

FIXTURES = Path(__file__).parent / "fixtures" / "standard_webhooks"
BODIES = sorted(
    p for p in FIXTURES.glob("*.json") if not p.name.endswith((".expected.json", ".headers.json"))
)
NAME = "standard-webhooks"
ACCOUNT = "acct-fixtures"
RECEIVED_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONTEXT = Context(now=lambda: NOW)
URL = "https://hooks.example.com/webhooks/standard-webhooks/acct-fixtures"
WEBHOOK_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
BODY = SIGNER.sample_body()


def parse(
    body: bytes | dict[str, Any] | list[Any], headers: dict[str, str] | None = None
) -> list[Event]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kept = {"webhook-id": WEBHOOK_ID} if headers is None else headers
    record = RawRecord(ACCOUNT, NAME, raw, received_at=RECEIVED_AT, headers=kept)
    return standard_webhooks.parse(record)


def kept_headers(body: Path) -> dict[str, str]:
    path = body.with_name(body.stem + ".headers.json")
    return json.loads(path.read_bytes()) if path.exists() else {}


def event(**fields: Any) -> dict[str, Any]:
    base = {
        "type": "delivered",
        "occurred_at": "2026-03-01T11:59:30Z",
        "delivery_id": "d-1",
        "message_id": "m-1",
        "recipient": {"email": "jane@example.com"},
    }
    return base | fields


def signed(body: bytes, **kwargs: Any) -> WebhookRequest:
    at = kwargs.pop("at", NOW)
    headers = {"content-type": "application/json"} | signed_headers("webhook", body, at, **kwargs)
    return WebhookRequest(body, headers, URL)


def credentials(*secrets: str) -> Credentials:
    return Credentials(ACCOUNT, NAME, secrets=secrets)


# --- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=lambda p: p.stem)
def test_fixture_gives_its_canonical_events(body: Path) -> None:
    expected = json.loads(body.with_name(body.stem + ".expected.json").read_bytes())
    produced = [
        {k: v for k, v in to_dict(e).items() if k != "received_at"}
        for e in parse(body.read_bytes(), kept_headers(body))
    ]
    assert produced == expected


def test_source_is_the_hyphenated_name() -> None:
    assert standard_webhooks.ADAPTER.name == NAME
    assert {e.source for e in parse(event())} == {NAME}


def test_body_is_read_as_the_event_api_reads_it() -> None:
    body = json.dumps([event(id="e-1"), event(id="e-2", type="opened")]).encode()
    api_record = RawRecord(ACCOUNT, NAME, body, headers={"webhook-id": WEBHOOK_ID})
    assert standard_webhooks.parse(api_record) == events_api.parse(api_record)


def test_event_without_id_takes_the_webhook_id() -> None:
    (single,) = parse(event())
    assert single.provider_event_id == WEBHOOK_ID
    first, second = parse([event(), event(type="opened")])
    assert (first.provider_event_id, second.provider_event_id) == (
        f"{WEBHOOK_ID}/0",
        f"{WEBHOOK_ID}/1",
    )


def test_retried_message_gives_the_same_events_and_a_new_message_other_ones() -> None:
    again = parse(event())
    assert [e.event_id for e in parse(event())] == [e.event_id for e in again]
    assert parse(event(), {"webhook-id": "msg_other"})[0].event_id != again[0].event_id


def test_event_own_id_wins_over_the_webhook_id() -> None:
    assert parse(event(id="evt-9"))[0].provider_event_id == "evt-9"


def test_record_without_webhook_id_still_parses() -> None:
    assert parse(event(), {})[0].provider_event_id is None


def test_senders_machine_flag_is_its_own_word() -> None:
    (opened,) = parse(event(type="opened", machine=True))
    assert (opened.machine, opened.machine_reason) == (True, "provider_flag")
    assert parse(event(type="opened"))[0].machine_reason is None


def test_every_canonical_type_is_accepted() -> None:
    extra: dict[str, dict[str, Any]] = {
        "converted": {"conversion": {"amount": "1.00", "currency": "EUR"}},
        "custom": {"name": "poked"},
    }
    types = {
        e.type for t in EventType for e in parse(event(type=t.value, **extra.get(t.value, {})))
    }
    assert types == set(EventType)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "standard-webhooks: body is not JSON"),
        (b"[]", "no events in the body"),
        (json.dumps(event(type="teleported")).encode(), "event 0 field 'type'"),
        (json.dumps(event(occurred_at="2026-03-01T12:00:00")).encode(), "'occurred_at'"),
        (json.dumps([event(), event(color="red")]).encode(), "event 1 field 'color'"),
    ],
)
def test_invalid_body_goes_to_dead_letters(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------


async def test_symmetric_v1_signature_is_accepted() -> None:
    secret = new_secret()
    await standard_webhooks.verify(signed(BODY, secrets_=(secret,)), credentials(secret), CONTEXT)


async def test_asymmetric_v1a_signature() -> None:
    key = Ed25519PrivateKey.generate()
    request = signed(BODY, keys=(key,))
    assert request.headers["webhook-signature"].startswith("v1a,")
    await standard_webhooks.verify(request, credentials(public_key_text(key)), CONTEXT)
    other = public_key_text(Ed25519PrivateKey.generate())
    with pytest.raises(Rejected, match="does not match"):
        await standard_webhooks.verify(request, credentials(other), CONTEXT)


async def test_v1a_signature_does_not_verify_as_v1_or_with_a_changed_body() -> None:
    key = Ed25519PrivateKey.generate()
    request = signed(BODY, keys=(key,))
    relabelled = request.headers["webhook-signature"].replace("v1a,", "v1,")
    with pytest.raises(Rejected):
        await standard_webhooks.verify(
            replace(request, headers={**request.headers, "webhook-signature": relabelled}),
            credentials(public_key_text(key), new_secret()),
            CONTEXT,
        )
    with pytest.raises(Rejected):
        await standard_webhooks.verify(
            replace(request, body=BODY.replace(b"delivered", b"bounced")),
            credentials(public_key_text(key)),
            CONTEXT,
        )


async def test_several_signatures_in_one_header() -> None:
    secret, key = new_secret(), Ed25519PrivateKey.generate()
    request = signed(
        BODY, secrets_=(new_secret(), secret), keys=(Ed25519PrivateKey.generate(), key)
    )
    assert len(request.headers["webhook-signature"].split(" ")) == 4
    await standard_webhooks.verify(request, credentials(secret), CONTEXT)
    await standard_webhooks.verify(request, credentials(public_key_text(key)), CONTEXT)


async def test_unknown_signature_versions_are_ignored() -> None:
    secret = new_secret()
    request = signed(BODY, secrets_=(secret,))
    header = "v2,c2lnbmF0dXJl " + request.headers["webhook-signature"]
    await standard_webhooks.verify(
        replace(request, headers={**request.headers, "webhook-signature": header}),
        credentials(secret),
        CONTEXT,
    )


async def test_mixed_secrets_and_public_keys_while_rotating() -> None:
    secret, key = new_secret(), Ed25519PrivateKey.generate()
    both = credentials(secret, public_key_text(key))
    await standard_webhooks.verify(signed(BODY, secrets_=(secret,)), both, CONTEXT)
    await standard_webhooks.verify(signed(BODY, keys=(key,)), both, CONTEXT)


async def test_unpadded_secret_is_accepted() -> None:
    raw = base64.b64encode(b"0123456789abcdefghijklmnop").decode()  # 26 bytes -> one "="
    assert raw.endswith("=")
    padded, unpadded = "whsec_" + raw, "whsec_" + raw.rstrip("=")
    await standard_webhooks.verify(signed(BODY, secrets_=(padded,)), credentials(unpadded), CONTEXT)


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
async def test_stale_or_future_timestamp_is_refused(skew: timedelta) -> None:
    secret = new_secret()
    with pytest.raises(Rejected, match="replay window"):
        await standard_webhooks.verify(
            signed(BODY, secrets_=(secret,), at=NOW + skew), credentials(secret), CONTEXT
        )


async def test_replay_window_comes_from_the_context() -> None:
    secret = new_secret()
    request = signed(BODY, secrets_=(secret,), at=NOW - timedelta(minutes=2))
    strict = Context(now=lambda: NOW, replay_window=timedelta(minutes=1))
    with pytest.raises(Rejected, match="replay window"):
        await standard_webhooks.verify(request, credentials(secret), strict)
    await standard_webhooks.verify(request, credentials(secret), CONTEXT)


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_missing_header_is_refused(drop: str) -> None:
    secret = new_secret()
    request = signed(BODY, secrets_=(secret,))
    headers = {k: v for k, v in request.headers.items() if k != drop}
    with pytest.raises(Rejected, match="header missing"):
        await standard_webhooks.verify(
            replace(request, headers=headers), credentials(secret), CONTEXT
        )


async def test_account_without_usable_keys_refuses_everything() -> None:
    request = signed(BODY, secrets_=(new_secret(),))
    short_key = "whpk_" + base64.b64encode(b"too short").decode()
    with pytest.raises(Rejected, match="no usable signing secret or public key"):
        await standard_webhooks.verify(request, credentials("not base64!", short_key), CONTEXT)


async def test_contract_signer_signs_what_verify_accepts() -> None:
    request = SIGNER.sign(SIGNER.sample_body(), URL, NOW)
    await standard_webhooks.verify(request, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await standard_webhooks.verify(
            request, SIGNER.wrong_credentials(ACCOUNT), SIGNER.context(NOW)
        )
    with pytest.raises(Rejected):
        await standard_webhooks.verify(
            SIGNER.strip(request), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW)
        )
    assert parse(SIGNER.sample_body())


def test_adapter_keeps_the_webhook_id_for_parse() -> None:
    assert standard_webhooks.ADAPTER.keep_headers == ("webhook-id",)
    assert standard_webhooks.ADAPTER.handshake is None


# --- key prefixes ----------------------------------------------------------------------------


async def test_secret_without_its_prefix_is_refused_with_a_clear_message() -> None:
    secret = new_secret()
    bare = secret.removeprefix("whsec_")
    with pytest.raises(Rejected, match=r"secret 1: .*whsec_.*whpk_.*neither prefix"):
        await standard_webhooks.verify(signed(BODY, secrets_=(secret,)), credentials(bare), CONTEXT)


async def test_private_signing_key_is_refused_with_what_to_configure_instead() -> None:
    raw = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    with pytest.raises(Rejected, match=r"private signing key.*whpk_"):
        await standard_webhooks.verify(
            signed(BODY, secrets_=(new_secret(),)), credentials("whsk_" + raw), CONTEXT
        )


async def test_unusable_second_secret_is_named_but_the_first_still_verifies() -> None:
    secret = new_secret()
    both = credentials(secret, secret.removeprefix("whsec_"))
    await standard_webhooks.verify(signed(BODY, secrets_=(secret,)), both, CONTEXT)
    with pytest.raises(Rejected, match=r"signature does not match \(secret 2: "):
        await standard_webhooks.verify(signed(BODY, secrets_=(new_secret(),)), both, CONTEXT)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "neither prefix"),
        ("whsk_c2VjcmV0", "private signing key"),
        ("whpk_" + base64.b64encode(b"too short").decode(), "32 bytes"),
        ("whsec_not base64!", "base64"),
        ("whsec_", "base64"),
    ],
)
def test_check_secret_says_what_is_wrong(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        standard_webhooks.check_secret(value)


def test_check_secret_takes_both_kinds_of_key() -> None:
    standard_webhooks.check_secret(new_secret())
    standard_webhooks.check_secret(public_key_text(Ed25519PrivateKey.generate()))
    assert standard_webhooks.ADAPTER.check_secret is standard_webhooks.check_secret


# --- the spec's envelope ---------------------------------------------------------------------


def envelope(data: Any, **meta: Any) -> dict[str, Any]:
    """The spec's payload: the sender's type and time, the event(s) as `data`."""
    base = {"type": "email.delivered", "timestamp": "2026-03-01T11:59:31.1234Z", "data": data}
    return base | meta


def test_envelope_holding_one_event_gives_what_the_bare_event_gives() -> None:
    assert parse(envelope(event())) == parse(event())


def test_envelope_holding_an_array_gives_what_the_bare_array_gives() -> None:
    events = [event(), event(type="opened", occurred_at="2026-03-01T12:00:00Z")]
    wrapped = parse(envelope(events))
    assert wrapped == parse(events)
    assert [e.provider_event_id for e in wrapped] == [f"{WEBHOOK_ID}/0", f"{WEBHOOK_ID}/1"]


def test_envelope_metadata_beside_data_is_the_senders_own() -> None:
    body = envelope(event()) | {"tenant": "t-1", "version": 2}
    assert parse(body) == parse(event())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (envelope("delivered"), "the envelope's data must be an event or an array"),
        (envelope(None), "the envelope's data must be an event or an array"),
        (envelope([]), "no events in the body"),
        (envelope(event(type="teleported")), "event 0 field 'type'"),
        (envelope([event(), event(color="red")]), "event 1 field 'color'"),
        ([envelope(event())], "event 0 field 'data'"),
    ],
)
def test_unreadable_envelope_goes_to_dead_letters(body: Any, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


def test_event_whose_payload_mentions_data_is_still_a_bare_event() -> None:
    bare = event(payload={"data": [1, 2], "note": '"data"'})
    (parsed,) = parse(bare)
    assert parsed.payload == {"data": [1, 2], "note": '"data"'}


@settings(max_examples=60, deadline=None)
@given(
    picks=st.lists(st.sampled_from(sorted(EventType, key=str)), min_size=1, max_size=5),
    as_array=st.booleans(),
    meta=st.dictionaries(
        # No lone surrogate: metadata that is not JSON would make the envelope unreadable.
        st.text(ALPHABET[:-1], max_size=8).filter(lambda k: k != "data"),
        st.integers() | st.text(ALPHABET[:-1], max_size=8),
    ),
)
def test_wrapping_never_changes_the_events(
    picks: list[EventType], as_array: bool, meta: dict[str, Any]
) -> None:
    """Whatever the sender's metadata, the envelope's events are exactly the bare body's."""
    extra: dict[str, dict[str, Any]] = {
        "converted": {"conversion": {"amount": "1.00", "currency": "EUR"}},
        "custom": {"name": "poked"},
    }
    items = [event(type=t.value, **extra.get(t.value, {})) for t in picks]
    bare: Any = items if as_array or len(items) > 1 else items[0]
    assert parse(meta | {"data": bare}) == parse(bare)


def test_the_nonce_is_the_webhook_id_until_its_timestamp_leaves_the_window() -> None:
    request = signed(BODY, secrets_=(new_secret(),), msg_id=WEBHOOK_ID, at=NOW)
    nonce = standard_webhooks.nonce(request, CONTEXT)
    assert nonce == Nonce(WEBHOOK_ID, NOW + CONTEXT.replay_window)
    assert standard_webhooks.ADAPTER.nonce is standard_webhooks.nonce
