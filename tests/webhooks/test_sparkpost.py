"""SparkPost adapter: documented payloads in fixtures/sparkpost/ and one test per quirk."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from service.errors import ParseError, Rejected
from service.events import Event, to_dict
from service.webhooks.base import Context, Credentials, HandshakeReply, RawRecord, WebhookRequest
from service.webhooks.sparkpost import ADAPTER

FIXTURES = Path(__file__).parent / "fixtures" / "sparkpost"
BODIES = sorted(
    p.name.removesuffix(".json") for p in FIXTURES.glob("*.json") if ".expected" not in p.name
)
URL = "https://hooks.example.net/webhooks/sparkpost/acme"
PAIR = "sparkpost-hook:s3cret-pass"
CREDENTIALS = Credentials(account="acme", provider="sparkpost", secrets=(PAIR,))


def record(body: bytes | list[Any]) -> RawRecord:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawRecord(account="acme", source="sparkpost", body=raw)


def parse(body: bytes | list[Any]) -> list[Event]:
    return ADAPTER.parse(record(body))


def one(event_class: str, **fields: Any) -> list[Any]:
    """A one-event batch around a minimal documented event."""
    event = {
        "event_id": "92356927693813856",
        "rcpt_to": "recipient@example.com",
        "timestamp": "1454442600",
        "transmission_id": "65832150921904138",
        **fields,
    }
    return [{"msys": {event_class: event}}]


def request(body: bytes, authorization: str | None = None) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return WebhookRequest(body=body, headers=headers, url=URL)


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


def assert_subset(expected: Any, actual: Any, path: str = "") -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            assert_subset(value, actual.get(key), f"{path}.{key}")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def test_adapter_is_named_sparkpost() -> None:
    assert ADAPTER.name == "sparkpost"


@pytest.mark.parametrize("name", BODIES)
def test_documented_payload_produces_its_canonical_events(name: str) -> None:
    body = (FIXTURES / f"{name}.json").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    events = parse(body)
    assert len(events) == len(expected)
    for want, event in zip(expected, events, strict=True):
        assert_subset(want, to_dict(event))
        assert event.source == "sparkpost" and event.account == "acme"


async def test_ping_yields_nothing_and_answers_200() -> None:
    body = (FIXTURES / "ping.json").read_bytes()
    req = request(body, basic(PAIR))
    await ADAPTER.verify(req, CREDENTIALS, Context())
    assert ADAPTER.handshake is not None
    assert await ADAPTER.handshake(req, CREDENTIALS, Context()) == HandshakeReply(200, {"ok": True})
    assert parse(body) == []


@pytest.mark.parametrize("name", ["delivery", "mixed_batch"])
async def test_handshake_leaves_batches_with_events_to_parse(name: str) -> None:
    req = request((FIXTURES / f"{name}.json").read_bytes(), basic(PAIR))
    assert ADAPTER.handshake is not None
    assert await ADAPTER.handshake(req, CREDENTIALS, Context()) is None


@pytest.mark.parametrize(
    ("bounce_class", "expected"),
    [("10", "hard"), ("30", "hard"), ("90", "hard")]
    + [(c, "soft") for c in ("20", "21", "22", "23", "24", "40", "50", "51", "52", "53", "54")]
    + [("60", "soft"), ("70", "soft"), ("100", "soft"), ("1", None), ("80", None)],
)
@pytest.mark.parametrize("native", ["bounce", "out_of_band"])
def test_bounce_class_decides_hard_or_soft(native: str, bounce_class: str, expected: str) -> None:
    (event,) = parse(one("message_event", type=native, bounce_class=bounce_class))
    assert event.type == "bounced"
    assert event.bounce is not None and event.bounce.bounce_class == expected


@pytest.mark.parametrize("bounce_class", ["25", "26"])
def test_admin_failure_is_dropped_even_when_reported_as_a_bounce(bounce_class: str) -> None:
    body = one(
        "message_event",
        type="bounce",
        bounce_class=bounce_class,
        error_code="554",
        raw_reason="554 5.7.1 [internal] recipient address was suppressed due to customer policy",
    )
    (event,) = parse(body)
    assert event.type == "dropped"
    assert event.bounce is not None and event.bounce.bounce_class is None
    assert event.bounce.code == "554"


def test_delay_is_deferred_whatever_its_bounce_class() -> None:
    (event,) = parse(one("message_event", type="delay", bounce_class="10"))
    assert event.type == "deferred"
    assert event.bounce is not None and event.bounce.bounce_class is None


def test_timestamp_is_a_string() -> None:
    (event,) = parse(one("message_event", type="delivery", timestamp="1454442600"))
    assert to_dict(event)["occurred_at"] == "2016-02-02T19:50:00.000000Z"


@pytest.mark.parametrize("timestamp", [1454442600, "2016-02-02T19:50:00.000+00:00"])
def test_timestamp_as_a_number_or_iso_text_gives_the_same_time(timestamp: Any) -> None:
    (event,) = parse(one("message_event", type="delivery", timestamp=timestamp))
    (reference,) = parse(one("message_event", type="delivery"))
    assert event.occurred_at == reference.occurred_at
    assert event.event_id == reference.event_id


@pytest.mark.parametrize("timestamp", [None, "", "yesterday", True, {"s": 1}])
def test_missing_or_unreadable_timestamp_is_a_parse_error(timestamp: Any) -> None:
    with pytest.raises(ParseError, match="timestamp"):
        parse(one("message_event", type="delivery", timestamp=timestamp))


def test_rcpt_meta_wins_over_metadata() -> None:
    body = one(
        "message_event",
        type="delivery",
        metadata={"campaign_id": "from-transmission", "delivery_id": "d-1", "ab_version": "A"},
        rcpt_meta={"campaign_id": "from-recipient", "contact_id": "c-9"},
    )
    (event,) = parse(body)
    assert event.campaign_id == "from-recipient"
    assert event.delivery_id == "d-1"
    assert event.ab_version == "A"
    assert event.recipient.contact_id == "c-9"


def test_batch_splits_into_events() -> None:
    batch = [
        item
        for n in range(350)
        for item in one("track_event", type="open", event_id=str(n), timestamp=str(1454442600 + n))
    ]
    events = parse(batch)
    assert [e.provider_event_id for e in events] == [str(n) for n in range(350)]
    assert len({e.event_id for e in events}) == 350


def test_mixed_batch_keeps_each_event_its_own_time() -> None:
    events = parse((FIXTURES / "mixed_batch.json").read_bytes())
    # SparkPost batches are not time-ordered: the click arrives before the injection.
    assert [e.native_type for e in events] == ["click", "delivery", "injection", "open"]
    assert events[0].occurred_at > events[2].occurred_at


def test_event_id_is_stable_across_retries_and_tells_events_apart() -> None:
    first = parse(one("track_event", type="open"))[0]
    retried = parse(one("track_event", type="open"))[0]
    other = parse(one("track_event", type="open", event_id="92356927693813999"))[0]
    assert first.event_id == retried.event_id
    assert first.event_id != other.event_id  # same second, same message: the event id decides
    assert first.provider_event_id == "92356927693813856"


def test_message_id_is_the_transmission_id() -> None:
    (event,) = parse(one("message_event", type="delivery", message_id="000443ee14578172be22"))
    assert event.message_id == "65832150921904138"


def test_recipient_is_rcpt_to_lower_cased() -> None:
    body = one("message_event", type="delivery", rcpt_to="Mixed@Example.COM")
    body[0]["msys"]["message_event"]["raw_rcpt_to"] = "Mixed@Example.COM"
    (event,) = parse(body)
    assert event.recipient.email == "mixed@example.com"


def test_ip_address_is_the_readers_only_on_opens_and_clicks() -> None:
    (delivery,) = parse(one("message_event", type="delivery", ip_address="18.236.253.72"))
    (click,) = parse(
        one("track_event", type="click", ip_address="18.236.253.72", target_link_url="http://x.io")
    )
    assert delivery.ip is None  # on a delivery it is the receiving MX
    assert click.ip == "18.236.253.72" and click.url == "http://x.io"
    assert click.machine is None


def test_unknown_event_type_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="unknown event type 'teleported'"):
        parse(one("message_event", type="teleported"))


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"msys": {}}',
        b'[{"cust": {"id": "1"}}]',
        b'[{"msys": {"message_event": {"type": "delivery"}, "track_event": {"type": "open"}}}]',
        b'[{"msys": {"message_event": "delivery"}}]',
    ],
)
def test_malformed_bodies_are_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError, match=r"^sparkpost: "):
        parse(body)


async def test_verify_accepts_the_configured_credentials() -> None:
    await ADAPTER.verify(request(b"[]", basic(PAIR)), CREDENTIALS, Context())


async def test_verify_accepts_either_pair_while_rotating() -> None:
    rotating = Credentials("acme", "sparkpost", secrets=("old-user:old-pass", PAIR))
    await ADAPTER.verify(request(b"[]", basic(PAIR)), rotating, Context())
    await ADAPTER.verify(request(b"[]", basic("old-user:old-pass")), rotating, Context())


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (basic("sparkpost-hook:wrong-pass"), "do not match"),
        (basic("sparkpost-hook:s3cret-pass "), "do not match"),
        (basic("sparkpost-hook:s3cret-pas"), "do not match"),
        (None, "missing"),
        ("Bearer " + base64.b64encode(PAIR.encode()).decode(), "missing"),
        ("Basic not*base64", "not base64"),
    ],
)
async def test_verify_rejects_wrong_tampered_or_missing_credentials(
    authorization: str | None, reason: str
) -> None:
    with pytest.raises(Rejected, match=f"^sparkpost: .*{reason}"):
        await ADAPTER.verify(request(b"[]", authorization), CREDENTIALS, Context())


async def test_verify_rejects_everything_when_no_credentials_are_configured() -> None:
    with pytest.raises(Rejected, match="no Basic credentials are configured"):
        await ADAPTER.verify(
            request(b"[]", basic(PAIR)), Credentials("acme", "sparkpost"), Context()
        )


async def test_basic_auth_does_not_cover_the_body() -> None:
    # SparkPost signs nothing: good credentials vouch for the sender, not for the bytes.
    tampered = (FIXTURES / "delivery.json").read_bytes().replace(b"delivery", b"bounce")
    await ADAPTER.verify(request(tampered, basic(PAIR)), CREDENTIALS, Context())
