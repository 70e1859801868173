"""inwise adapter: automation (form) and transactional (JSON) payloads, the account's time zone,
and token / address verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from service.errors import Forbidden, ParseError, Rejected
from service.events import Event, EventType, to_dict
from service.webhooks import inwise
from service.webhooks.base import Credentials, MetadataKeys, RawRecord, WebhookRequest
from tests.webhooks.contract_inwise import SIGNER, fresh_token

FIXTURES = Path(__file__).parent / "fixtures" / "inwise"
BODIES = sorted(
    p
    for p in [*FIXTURES.glob("*.json"), *FIXTURES.glob("*.form")]
    if not p.name.endswith((".expected.json", ".headers.json"))
)
ACCOUNT = "acct-fixtures"
RECEIVED_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC)
URL = "https://hooks.example.com/webhooks/inwise/acct-fixtures"
ISRAEL = {"time-zone": "Asia/Jerusalem"}
INWISE_IP = "193.169.246.40"


def kept_headers(body: Path) -> dict[str, str]:
    path = body.with_name(body.stem + ".headers.json")
    return json.loads(path.read_bytes()) if path.exists() else {}


def form(name: str) -> dict[str, str]:
    """An automation fixture's fields, to change one and encode them again."""
    return dict(parse_qsl((FIXTURES / f"{name}.form").read_text(), keep_blank_values=True))


def transactional(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return data


def parse(
    body: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    keys: MetadataKeys | None = None,
    *,
    as_form: bool = False,
) -> list[Event]:
    if isinstance(body, bytes):
        raw = body
    else:
        raw = urlencode(body).encode() if as_form else json.dumps(body).encode()
    record = RawRecord(
        ACCOUNT,
        "inwise",
        raw,
        "application/x-www-form-urlencoded" if as_form else "application/json",
        RECEIVED_AT,
        headers=headers or {},
        metadata_keys=keys or MetadataKeys(),
    )
    return inwise.parse(record)


def only(body: dict[str, Any], headers: dict[str, str] | None = None, **kwargs: Any) -> Event:
    (event,) = parse(body, headers, **kwargs)
    return event


def request(
    url: str = URL, headers: dict[str, str] | None = None, remote: str | None = None
) -> WebhookRequest:
    return WebhookRequest(SIGNER.sample_body(), headers or {}, url, remote)


# --- documented payloads ---------------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=lambda p: p.name)
def test_documented_payload_gives_its_canonical_events(body: Path) -> None:
    expected = json.loads(body.with_name(body.stem + ".expected.json").read_bytes())
    produced = [
        {k: v for k, v in to_dict(e).items() if k != "received_at"}
        for e in parse(body.read_bytes(), kept_headers(body))
    ]
    assert produced == expected


def test_every_trigger_and_event_has_a_fixture() -> None:
    triggers = {form(p.stem)["trigger_type"].lower() for p in FIXTURES.glob("*.form")}
    events = {
        transactional(p.stem)["event"]
        for p in FIXTURES.glob("transactional_*.json")
        if not p.name.endswith((".expected.json", ".headers.json"))
    }
    assert set(inwise.TRIGGER_TYPES) <= triggers
    assert set(inwise.EVENT_TYPES) <= events


# --- quirks ----------------------------------------------------------------------------------


def test_zone_less_time_uses_account_zone() -> None:
    sent = form("automation_email_sent")  # 2022-02-10 15:58:01, winter: Israel is UTC+2
    assert only(sent, ISRAEL, as_form=True).occurred_at == datetime(
        2022, 2, 10, 13, 58, 1, tzinfo=UTC
    )
    summer = sent | {"timeStamp": "2022-07-10 15:58:01"}  # summer time: UTC+3
    assert only(summer, ISRAEL, as_form=True).occurred_at == datetime(
        2022, 7, 10, 12, 58, 1, tzinfo=UTC
    )
    new_york = {"time-zone": "America/New_York"}
    assert only(sent, new_york, as_form=True).occurred_at == datetime(
        2022, 2, 10, 20, 58, 1, tzinfo=UTC
    )


def test_time_without_an_account_zone_is_utc() -> None:
    sent = only(form("automation_email_sent"), as_form=True)
    assert sent.occurred_at == datetime(2022, 2, 10, 15, 58, 1, tzinfo=UTC)


def test_zone_is_read_from_the_record_only() -> None:
    assert inwise.ADAPTER.keep_headers == ()  # a sender cannot choose the zone


def test_unknown_account_zone_goes_to_dead_letters() -> None:
    with pytest.raises(ParseError, match="unknown account time zone 'Mars/Olympus'"):
        parse(form("automation_email_sent"), {"time-zone": "Mars/Olympus"}, as_form=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2022-11-16T15:44:00.0000000", datetime(2022, 11, 16, 13, 44, tzinfo=UTC)),
        ("2022-11-16 15:44:00", datetime(2022, 11, 16, 13, 44, tzinfo=UTC)),
        ("2022-11-16T15:44:00.1234567", datetime(2022, 11, 16, 13, 44, 0, 123456, tzinfo=UTC)),
        ("11/16/2022 15:44:00", datetime(2022, 11, 16, 13, 44, tzinfo=UTC)),
        ("2022-11-16T15:44:00Z", datetime(2022, 11, 16, 15, 44, tzinfo=UTC)),
        ("2022-11-16T15:44:00+01:00", datetime(2022, 11, 16, 14, 44, tzinfo=UTC)),
    ],
)
def test_time_forms(value: str, expected: datetime) -> None:
    sent = transactional("transactional_send") | {"created_at": value}
    assert only(sent, ISRAEL).occurred_at == expected


@pytest.mark.parametrize("when", ["2022-15-16 03:11:00", "yesterday", "0001-01-01 00:30:00"])
def test_an_unreadable_time_is_folded_at_the_time_received_and_flagged(when: str) -> None:
    """The docs' own hard bounce sample is dated in month 15: the bounce still counts (and
    suppresses), dated when it was received, flagged, with an identity retries agree on."""
    bounced = transactional("transactional_hard_bounce") | {"created_at": when}
    event = only(bounced, ISRAEL)
    assert (event.type, event.bounce and event.bounce.bounce_class) == (EventType.BOUNCED, "hard")
    assert event.occurred_at == RECEIVED_AT and event.occurred_at_estimated is True
    assert to_dict(event)["occurred_at_estimated"] is True
    assert only(bounced, ISRAEL).event_id == event.event_id
    other = only(bounced | {"created_at": "2022-16-16 03:11:00"}, ISRAEL)
    assert other.event_id != event.event_id or when == "2022-16-16 03:11:00"
    readable = only(transactional("transactional_hard_bounce"), ISRAEL)
    assert readable.occurred_at_estimated is False and "occurred_at_estimated" not in to_dict(
        readable
    )


def test_key_casing_varies() -> None:
    upper = transactional("transactional_send")
    lower = {k.lower(): v for k, v in upper.items()}
    assert "transaction_Id" in upper and "transaction_id" in lower
    assert only(upper).message_id == only(lower).message_id == "f9bdfe85fe9a4e0d9e212a3e609e5081"
    clicked = form("automation_email_clicked")
    assert "lP" in clicked  # the table's spelling; an "ip" or "IP" field is read the same way
    spellings = {"lP": clicked["lP"]}, {"ip": clicked["lP"]}, {"IP": clicked["lP"]}
    base = {k: v for k, v in clicked.items() if k != "lP"}
    assert {only(base | s, as_form=True).ip for s in spellings} == {"80.179.11.11"}
    shouted = {k.upper(): v for k, v in clicked.items()}
    assert only(shouted, as_form=True).url == "https://www.inwise.com/pricing?src=mail"


@pytest.mark.parametrize(
    ("bounce_type", "expected"),
    [
        ("hardBounce", "hard"),
        ("SoftBounce", "soft"),
        ("HARDBOUNCE", "hard"),
        ("softbounce", "soft"),
        ("", None),
    ],
)
def test_bounce_type_is_compared_without_case(bounce_type: str, expected: str | None) -> None:
    bounced = only(form("automation_email_bounced") | {"bounce_type": bounce_type}, as_form=True)
    assert bounced.bounce is not None and bounced.bounce.bounce_class == expected


def test_undelivered_and_reject_are_dropped() -> None:
    assert only(form("automation_undelivered"), as_form=True).type is EventType.DROPPED
    assert only(transactional("transactional_reject_bounced")).type is EventType.DROPPED


def test_sms_and_form_triggers_produce_nothing() -> None:
    for trigger in ("smsSent", "SmsReply", "MakeContactForm", "onSite", "dynamicPage"):
        assert parse(form("automation_sms_sent") | {"trigger_type": trigger}, as_form=True) == []


def test_contact_ids_become_the_recipients() -> None:
    opened = only(form("automation_email_opened"), as_form=True)
    assert (opened.recipient.contact_id, opened.recipient.client_contact_id) == ("1", "crm-66")


def test_campaign_can_also_name_the_delivery() -> None:
    keys = MetadataKeys(delivery_id="campaign_id")
    sent = only(form("automation_email_sent"), keys=keys, as_form=True)
    assert (sent.campaign_id, sent.delivery_id) == ("1646090", "1646090")


def test_two_links_to_one_url_are_two_clicks() -> None:
    clicked = form("automation_email_clicked")
    first = only(clicked, as_form=True)
    second = only(clicked | {"remarks": "4"}, as_form=True)
    assert first.event_id != second.event_id
    assert first.event_id == only(clicked, as_form=True).event_id


def test_same_contact_in_two_campaigns_in_one_second_is_two_events() -> None:
    sent = form("automation_email_sent")
    first = only(sent, as_form=True)
    assert first.event_id != only(sent | {"campaign_id": "1646091"}, as_form=True).event_id


def test_webhook_id_tells_no_events_apart() -> None:
    one = only(transactional("transactional_open"))
    assert one.event_id == only(transactional("transactional_open") | {"id": 191}).event_id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "neither JSON nor a form"),
        (b"{not json", "not JSON"),
        (b'{"event": "teleport"}', "unknown transactional event 'teleport'"),
        (b'{"event": "send", "created_at": "2022-11-16 15:44:00"}', "neither an email"),
        (b'{"event": "send", "email": "a@b.c"}', "no created_at"),
        (b"trigger_type=emailTeleported", "unknown trigger_type 'emailTeleported'"),
        (b"trigger_type=emailSent&timeStamp=2022-02-10+15%3a58%3a01", "neither contact"),
        (b"trigger_type=emailSent&contact%5bid%5d=1", "no timeStamp"),
    ],
)
def test_unreadable_body_goes_to_dead_letters(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


# --- verification ----------------------------------------------------------------------------


async def test_token_in_the_url_is_accepted() -> None:
    token = fresh_token()
    creds = Credentials(ACCOUNT, "inwise", secrets=(token,))
    await inwise.verify(request(f"{URL}?{urlencode({'token': token})}"), creds, SIGNER.context(NOW))


async def test_token_in_the_header_is_accepted() -> None:
    token = fresh_token()
    creds = Credentials(ACCOUNT, "inwise", secrets=(token,))
    await inwise.verify(request(headers={"x-inwise-token": token}), creds, SIGNER.context(NOW))


async def test_either_token_is_accepted_while_rotating() -> None:
    old, new = fresh_token(), fresh_token()
    creds = Credentials(ACCOUNT, "inwise", secrets=(old, new))
    for token in (old, new):
        await inwise.verify(request(f"{URL}?token={token}"), creds, SIGNER.context(NOW))


async def test_wrong_token_is_refused() -> None:
    creds = Credentials(ACCOUNT, "inwise", secrets=(fresh_token(),))
    with pytest.raises(Rejected, match="token does not match"):
        await inwise.verify(request(f"{URL}?token={fresh_token()}"), creds, SIGNER.context(NOW))


async def test_missing_token_is_refused() -> None:
    creds = Credentials(ACCOUNT, "inwise", secrets=(fresh_token(),))
    for url in (URL, f"{URL}?token=", f"{URL}?other=1"):
        with pytest.raises(Rejected, match="token is missing"):
            await inwise.verify(request(url), creds, SIGNER.context(NOW))


async def test_account_without_a_token_refuses_everything() -> None:
    with pytest.raises(Rejected, match="no webhook token"):
        await inwise.verify(
            request(f"{URL}?token=x"), Credentials(ACCOUNT, "inwise"), SIGNER.context(NOW)
        )


async def test_allowed_address_is_accepted_and_others_forbidden() -> None:
    token = fresh_token()
    creds = Credentials(
        ACCOUNT,
        "inwise",
        secrets=(token,),
        options={"allowed_ips": ["193.169.246.40/32", "193.169.247.40/32"]},
    )
    url = f"{URL}?token={token}"
    await inwise.verify(request(url, remote=INWISE_IP), creds, SIGNER.context(NOW))
    for remote in ("203.0.113.9", None, "not-an-address"):
        with pytest.raises(Forbidden, match="not on the allow list"):
            await inwise.verify(request(url, remote=remote), creds, SIGNER.context(NOW))


async def test_bad_token_is_refused_before_the_address_is_looked_at() -> None:
    creds = Credentials(
        ACCOUNT, "inwise", secrets=(fresh_token(),), options={"allowed_ips": ["193.169.246.40/32"]}
    )
    with pytest.raises(Rejected):
        await inwise.verify(
            request(f"{URL}?token=guess", remote="203.0.113.9"), creds, SIGNER.context(NOW)
        )


async def test_single_cidr_and_malformed_allow_lists() -> None:
    token = fresh_token()
    url = f"{URL}?token={token}"
    single = Credentials(
        ACCOUNT, "inwise", secrets=(token,), options={"allowed_ips": "193.169.246.0/24"}
    )
    await inwise.verify(request(url, remote=INWISE_IP), single, SIGNER.context(NOW))
    broken = Credentials(
        ACCOUNT, "inwise", secrets=(token,), options={"allowed_ips": ["not a net"]}
    )
    with pytest.raises(Forbidden, match="malformed"):
        await inwise.verify(request(url, remote=INWISE_IP), broken, SIGNER.context(NOW))


async def test_contract_signer_signs_what_verify_accepts() -> None:
    signed = SIGNER.sign(SIGNER.sample_body(), f"{URL}?token=stale", NOW)
    await inwise.verify(signed, SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await inwise.verify(signed, SIGNER.wrong_credentials(ACCOUNT), SIGNER.context(NOW))
    with pytest.raises(Rejected):
        await inwise.verify(SIGNER.strip(signed), SIGNER.credentials(ACCOUNT), SIGNER.context(NOW))
    assert parse(SIGNER.sample_body())


def test_adapter_is_registered_under_its_one_name() -> None:
    assert inwise.ADAPTER.name == "inwise" and inwise.ADAPTER.handshake is None
