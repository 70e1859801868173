"""Mandrill adapter: documented payloads in fixtures/mandrill/ and one test per quirk.

Each fixture holds the `mandrill_events` JSON array; the POST body is that array form-encoded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.errors import ParseError, Rejected
from service.events import Event, to_dict
from service.webhooks.base import Context, Credentials, HandshakeReply, RawRecord, WebhookRequest
from service.webhooks.mandrill import ADAPTER
from tests.webhooks.contract_mandrill import form_body, signature

FIXTURES = Path(__file__).parent / "fixtures" / "mandrill"
BODIES = sorted(
    p.name.removesuffix(".json") for p in FIXTURES.glob("*.json") if ".expected" not in p.name
)
URL = "https://hooks.example.net/webhooks/mandrill/acme"
KEY = "Xq3v9p_S0m3-WebhookKey"
CREDENTIALS = Credentials(account="acme", provider="mandrill", secrets=(KEY,))


def body_of(events: list[Any] | str) -> bytes:
    return form_body(events if isinstance(events, str) else json.dumps(events))


def parse(events: list[Any] | bytes) -> list[Event]:
    body = events if isinstance(events, bytes) else body_of(events)
    return ADAPTER.parse(RawRecord(account="acme", source="mandrill", body=body))


def signed(body: bytes, key: str = KEY, url: str = URL) -> WebhookRequest:
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-mandrill-signature": signature(key, url, body),
    }
    return WebhookRequest(body=body, headers=headers, url=URL)


def send(**fields: Any) -> dict[str, Any]:
    """A documented send event (anymail's test payload), with fields overridden."""
    event = {
        "event": "send",
        "msg": {
            "ts": 1461095211,
            "email": "recipient@example.com",
            "metadata": {"campaign_id": "spring-sale"},
            "_id": "abcdef012345789abcdef012345789",
        },
        "_id": "abcdef012345789abcdef012345789",
        "ts": 1461095246,
    }
    return {**event, **fields}


def assert_subset(expected: Any, actual: Any, path: str = "") -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            assert_subset(value, actual.get(key), f"{path}.{key}")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def test_adapter_is_named_mandrill() -> None:
    assert ADAPTER.name == "mandrill"


@pytest.mark.parametrize("name", BODIES)
def test_documented_payload_produces_its_canonical_events(name: str) -> None:
    events = parse(body_of((FIXTURES / f"{name}.json").read_text()))
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    assert len(events) == len(expected)
    for want, event in zip(expected, events, strict=True):
        assert_subset(want, to_dict(event))
        assert event.source == "mandrill" and event.account == "acme"


# Known answer, computed from the documented rule: HMAC-SHA1 with the webhook key over the URL
# followed by "key" + "value" for each field sorted by key, base64-encoded.
SORTED_BODY = b"zeta=last&mandrill_events=%5B%5D&alpha=first"
SORTED_SIGNATURE = "FzMgBDLA22XJqhw2mwR7KAM0VNk="  # URL + alphafirst + mandrill_events[] + zetalast
UNSORTED_SIGNATURE = "Rk7kVgNbLXSDm3Os4Do1Q76y0zM="  # the fields in body order instead


async def test_signature_covers_url_and_sorted_params() -> None:
    good = WebhookRequest(SORTED_BODY, {"x-mandrill-signature": SORTED_SIGNATURE}, URL)
    await ADAPTER.verify(good, CREDENTIALS, Context())
    assert signature(KEY, URL, SORTED_BODY) == SORTED_SIGNATURE
    for request in (
        WebhookRequest(SORTED_BODY, {"x-mandrill-signature": UNSORTED_SIGNATURE}, URL),
        WebhookRequest(SORTED_BODY, {"x-mandrill-signature": SORTED_SIGNATURE}, URL + "/"),
    ):
        with pytest.raises(Rejected, match="signature does not match"):
            await ADAPTER.verify(request, CREDENTIALS, Context())


async def test_signed_url_comes_from_options() -> None:
    public = "https://user:pass@mail.example.org:8443/hooks/mandrill?account=acme"
    body = body_of([send()])
    request = signed(body, url=public)  # Mandrill signed the public URL; we saw an internal one
    behind_proxy = Credentials("acme", "mandrill", secrets=(KEY,), options={"webhook_url": public})
    await ADAPTER.verify(request, behind_proxy, Context())
    with pytest.raises(Rejected, match="signature does not match"):
        await ADAPTER.verify(request, CREDENTIALS, Context())


async def test_verify_accepts_the_configured_key() -> None:
    await ADAPTER.verify(signed(body_of([send()])), CREDENTIALS, Context())


async def test_verify_accepts_either_key_while_rotating() -> None:
    rotating = Credentials("acme", "mandrill", secrets=("old-key", KEY))
    await ADAPTER.verify(signed(body_of([send()])), rotating, Context())
    await ADAPTER.verify(signed(body_of([send()]), key="old-key"), rotating, Context())


async def test_verify_rejects_a_wrong_key() -> None:
    with pytest.raises(Rejected, match=r"^mandrill: signature does not match"):
        await ADAPTER.verify(signed(body_of([send()]), key="wrong"), CREDENTIALS, Context())


async def test_verify_rejects_a_tampered_body() -> None:
    request = signed(body_of([send()]))
    tampered = request.body.replace(b"spring-sale", b"summer-sale")
    assert tampered != request.body
    with pytest.raises(Rejected, match=r"^mandrill: signature does not match"):
        await ADAPTER.verify(
            WebhookRequest(tampered, request.headers, request.url), CREDENTIALS, Context()
        )


async def test_verify_rejects_a_missing_signature_header() -> None:
    request = WebhookRequest(body_of([send()]), {}, URL)
    with pytest.raises(Rejected, match=r"^mandrill: missing X-Mandrill-Signature"):
        await ADAPTER.verify(request, CREDENTIALS, Context())


async def test_verify_rejects_a_repeated_field() -> None:
    # Otherwise one reading could be signed and another parsed.
    body = body_of([send()]) + b"&" + body_of([send(event="spam")])
    with pytest.raises(Rejected, match="repeated"):
        await ADAPTER.verify(signed(body), CREDENTIALS, Context())
    with pytest.raises(ParseError, match="repeated"):
        parse(body)


async def test_setup_batch_signed_with_the_test_key_verifies_and_answers_200() -> None:
    # Mandrill only reveals the webhook key after the webhook exists, so none is configured yet.
    request = signed(body_of("[]"), key="test-webhook")
    unconfigured = Credentials("acme", "mandrill")
    await ADAPTER.verify(request, unconfigured, Context())
    await ADAPTER.verify(request, CREDENTIALS, Context())
    assert ADAPTER.handshake is not None
    assert await ADAPTER.handshake(request, CREDENTIALS, Context()) == HandshakeReply(200)
    assert parse(request.body) == []


async def test_test_key_is_refused_for_a_batch_with_events() -> None:
    request = signed(body_of([send()]), key="test-webhook")
    with pytest.raises(Rejected, match="signature does not match"):
        await ADAPTER.verify(request, CREDENTIALS, Context())
    with pytest.raises(Rejected, match="no webhook key configured"):
        await ADAPTER.verify(request, Credentials("acme", "mandrill"), Context())


async def test_handshake_leaves_batches_with_events_to_parse() -> None:
    assert ADAPTER.handshake is not None
    assert await ADAPTER.handshake(signed(body_of([send()])), CREDENTIALS, Context()) is None


def test_event_time_is_ts_not_msg_ts() -> None:
    (event,) = parse([send()])
    assert to_dict(event)["occurred_at"] == "2016-04-19T19:47:26.000000Z"  # ts, not msg.ts


def test_sync_events_yield_nothing() -> None:
    batch = json.loads((FIXTURES / "sync_events.json").read_text())
    assert {item["type"] for item in batch} == {"blacklist", "whitelist"}
    assert parse(batch) == []
    assert len(parse([*batch, send()])) == 1


def test_inbound_events_yield_nothing() -> None:
    inbound = {"event": "inbound", "msg": {"email": "in@example.com", "raw_msg": ""}, "ts": 1}
    assert parse([inbound]) == []


def test_batch_splits_into_events() -> None:
    batch = [send(ts=1461095246 + n, _id=f"message-{n}") for n in range(1000)]
    events = parse(batch)
    assert [e.message_id for e in events] == [f"message-{n}" for n in range(1000)]
    assert len({e.event_id for e in events}) == 1000


def test_without_an_event_id_identity_fields_tell_events_apart() -> None:
    click = {**send(event="click", url="http://example.com/a"), "ip": "127.0.0.1"}
    (a,) = parse([click])
    (retried,) = parse([click])
    (b,) = parse([{**click, "url": "http://example.com/b"}])
    (opened,) = parse([{**click, "event": "open"}])
    assert a.provider_event_id is None
    assert a.event_id == retried.event_id
    assert len({a.event_id, b.event_id, opened.event_id}) == 3


def test_bounce_details_come_from_bounce_description_and_diag() -> None:
    msg = {**send()["msg"], "bounce_description": "bad_mailbox", "bgtools_code": 10, "diag": "550"}
    (hard,) = parse([send(event="hard_bounce", msg=msg)])
    (soft,) = parse([send(event="soft_bounce", msg={**msg, "bounce_description": "mailbox_full"})])
    assert hard.type == soft.type == "bounced"
    assert hard.bounce is not None and soft.bounce is not None
    assert (hard.bounce.bounce_class, hard.bounce.code, hard.bounce.reason) == (
        "hard",
        "bad_mailbox",
        "550",
    )
    assert (soft.bounce.bounce_class, soft.bounce.code) == ("soft", "mailbox_full")


def test_reject_is_dropped() -> None:
    (event,) = parse([send(event="reject")])
    assert event.type == "dropped"


def test_robot_user_agent_type_marks_a_machine() -> None:
    parsed = {"type": "Robot", "ua_family": "Googlebot", "mobile": False}
    (event,) = parse([send(event="open", ip="66.249.66.1", user_agent_parsed=parsed)])
    assert (event.machine, event.machine_reason, event.agent_class) == (
        True,
        "provider_flag",
        "scanner",
    )


@pytest.mark.parametrize(
    "parsed", [None, {"type": "Email Client", "mobile": False}, {"mobile": True}]
)
def test_other_user_agent_types_leave_machine_unknown(parsed: Any) -> None:
    (event,) = parse([send(event="open", user_agent_parsed=parsed)])
    assert event.machine is None and event.machine_reason is None


def test_unknown_event_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="unknown event 'teleported'"):
        parse([send(event="teleported")])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"events=%5B%5D",
        b"mandrill_events=not-json",
        b"mandrill_events=%7B%7D",
        body_of(["send"]),
        body_of([{"event": "send", "ts": 1}]),
        body_of([send(ts=None)]),
        body_of([send(ts="soon")]),
        b"mandrill_events=%FF",
    ],
)
def test_malformed_bodies_are_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError, match=r"^mandrill: "):
        parse(body)
