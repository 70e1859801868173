"""Event API validation and parsing (pure logic)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import events_api
from service.errors import ParseError
from service.events import EventType, encode
from service.ledger import row_of
from service.webhooks.base import RawRecord

GOOD = {
    "type": "opened",
    "occurred_at": "2025-06-01T10:00:00+02:00",
    "campaign_id": "c1",
    "delivery_id": "d1",
    "recipient": {"email": "Jane@Example.com", "first_name": "Jane"},
}


def problems(body: object, max_events: int = 100) -> list[dict[str, object]]:
    return events_api.validate(orjson.dumps(body), max_events)[1]


def test_a_single_valid_event_has_no_problems() -> None:
    assert problems(GOOD) == []


def test_an_array_of_valid_events_has_no_problems() -> None:
    assert problems([GOOD, {**GOOD, "type": "clicked", "url": "https://x.test/a"}]) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "read"}, "type"),
        ({"occurred_at": "2025-06-01T10:00:00"}, "occurred_at"),
        ({"occurred_at": None}, "occurred_at"),
        ({"recipient": {}}, "recipient"),
        ({"recipient": {"email": "not-an-address"}}, "recipient.email"),
        ({"recipient": {"email": "a@b.c", "nick": "x"}}, "recipient.nick"),
        ({"delivery_id": None}, "delivery_id"),
        ({"delivery_id": ""}, "delivery_id"),
        ({"machine": "yes"}, "machine"),
        ({"colour": "red"}, "colour"),
        ({"type": "converted"}, "conversion.amount"),
        ({"type": "converted", "conversion": {"amount": "12,5"}}, "conversion.amount"),
        (
            {"type": "converted", "conversion": {"amount": 1, "currency": "euro"}},
            "conversion.currency",
        ),
        ({"type": "custom"}, "name"),
        ({"bounce": {"class": "medium"}}, "bounce.class"),
        ({"url": "x" * 3000}, "url"),
        ({"campaign_id": "c\x00"}, "campaign_id"),
        ({"payload": {"note": "a\x00b"}}, "payload"),
        ({"occurred_at": "0999-06-01T10:00:00Z"}, "occurred_at"),
        ({"occurred_at": "0001-01-01T00:30:00+01:00"}, "occurred_at"),
        ({"conversion": {"amount": 0, "currency": ""}}, "conversion.currency"),
        ({"type": "converted", "conversion": {"amount": "1e17"}}, "conversion.amount"),
        ({"type": {}}, "type"),
    ],
)
def test_each_bad_field_is_named_with_its_index(change: dict[str, object], field: str) -> None:
    found = problems([GOOD, {**GOOD, **change}])
    assert found, "expected a problem"
    assert {(p["index"], p["field"]) for p in found} >= {(1, field)}
    assert all(p["index"] == 1 for p in found)


def test_a_body_that_is_not_json_is_one_problem() -> None:
    _, found = events_api.validate(b"{nope", 10)
    assert len(found) == 1 and "not JSON" in str(found[0]["message"])


def test_too_many_events_is_refused_as_a_whole() -> None:
    _, found = events_api.validate(orjson.dumps([GOOD] * 11), 10)
    assert "at most 10" in str(found[0]["message"])


def test_an_empty_array_is_refused() -> None:
    assert problems([]) != []


def record(body: object) -> RawRecord:
    return RawRecord(account="acme", source="api", body=orjson.dumps(body))


def test_parse_lower_cases_email_and_reads_the_zone() -> None:
    (event,) = events_api.parse(record(GOOD))
    assert event.recipient.email == "jane@example.com"
    assert event.occurred_at.isoformat() == "2025-06-01T08:00:00+00:00"
    assert event.type is EventType.OPENED
    assert event.key() == b"acme:d1:jane@example.com"


def test_the_same_event_posted_twice_gets_the_same_id() -> None:
    (a,) = events_api.parse(record(GOOD))
    (b,) = events_api.parse(record(GOOD))
    assert a.event_id == b.event_id


def test_a_different_platform_id_makes_a_different_event() -> None:
    (a,) = events_api.parse(record({**GOOD, "id": "1"}))
    (b,) = events_api.parse(record({**GOOD, "id": "2"}))
    assert a.event_id != b.event_id


def test_conversion_amount_stays_exact() -> None:
    body = {**GOOD, "type": "converted", "conversion": {"amount": 0.1, "currency": "EUR"}}
    (event,) = events_api.parse(record(body))
    assert event.conversion is not None and event.conversion.amount == Decimal("0.1")


def test_parse_refuses_what_validate_refuses() -> None:
    with pytest.raises(ParseError, match="field 'type'"):
        events_api.parse(record({**GOOD, "type": "nope"}))


# Hostile values for any field of an Event API event, as JSON text (some cannot come from
# Python objects: lone surrogates, nesting past orjson's writer).
HOSTILE = [
    '"x\\ud83d"',
    "18446744073709551616",
    "1e308",
    "5e-324",
    '"1e-20000"',
    '"0.00001"',
    '"NaN"',
    '"' + "é" * 200 + '"',
    '"' + "a" * 5000 + '"',
    '"a\\u0000b"',
    '" ann@example.com"',
    '"ann @example.com"',
    '"ann@example.com\\n"',
    "{}",
    "[]",
    "true",
    "0",
    '""',
    '"2022-15-16T03:11:00Z"',
    '"0001-01-01T00:00:00+14:00"',
    "[" * 40 + "]" * 40,
    "[" * 300 + "]" * 300,
]
FIELDS = [
    *sorted(events_api.TOP_FIELDS - {"recipient", "conversion", "bounce"}),
    *(f"recipient.{f}" for f in sorted(events_api.RECIPIENT_FIELDS)),
    "conversion.amount",
    "conversion.currency",
    "bounce.code",
    "bounce.reason",
    "bounce.class",
]
FULL = {
    **GOOD,
    "type": "converted",
    "conversion": {"amount": "12.50", "currency": "EUR"},
    "bounce": {"class": "hard", "code": "550", "reason": "gone"},
    "payload": {"sku": "a1"},
}


def with_hostile(field: str, value: str) -> bytes:
    head, _, tail = field.partition(".")
    doc = orjson.loads(orjson.dumps(FULL))
    (doc[head] if tail else doc)[tail or head] = "__hostile__"
    return orjson.dumps(doc).replace(b'"__hostile__"', value.encode(), 1)


@given(st.sampled_from(FIELDS), st.sampled_from(HOSTILE))
def test_what_validate_accepts_the_ledger_stores(field: str, value: str) -> None:
    """A 2xx from the Event API means storable: whatever validate lets through parses into
    events whose ledger rows the fold accepts; what it refuses names the field."""
    body = with_hostile(field, value)
    _, found = events_api.validate(body, 100)
    if found:
        named = {p["field"] for p in found}
        assert field in named or field.split(".")[0] in named or "" in named, (field, found)
        return
    record = RawRecord(account="acme", source="api", body=body)
    for event in events_api.parse(record):
        row_of(encode(event))


@pytest.mark.parametrize(
    "email", [" ann@example.com", "ann @example.com", "ann@example.com\n", "ann@exa\u00a0mple.com"]
)
def test_an_email_with_whitespace_is_refused(email: str) -> None:
    found = problems({**GOOD, "recipient": {"email": email}})
    assert [p["field"] for p in found] == ["recipient.email"], found


def test_an_unstorable_amount_or_deep_payload_is_refused_naming_it() -> None:
    for text in ("1e-20000", "0.00001", "12345678901234567", "NaN", " 1"):
        found = problems({**FULL, "conversion": {"amount": text, "currency": "EUR"}})
        assert [p["field"] for p in found] == ["conversion.amount"], (text, found)
    for number in (1e16, -1e300):
        found = problems({**FULL, "conversion": {"amount": number, "currency": "EUR"}})
        assert [p["field"] for p in found] == ["conversion.amount"], (number, found)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (0.00001, Decimal("0.0000")),
        (5e-324, Decimal("0.0000")),
        (19.99, Decimal("19.99")),
        (0.12345, Decimal("0.1234")),  # half-even, from the float's shortest repr
        ("19.9900", Decimal("19.9900")),
        (7, Decimal(7)),
    ],
)
def test_a_json_number_amount_is_rounded_to_the_stored_scale_and_text_kept_exact(
    sent: object, kept: Decimal
) -> None:
    body = {**FULL, "conversion": {"amount": sent, "currency": "EUR"}}
    assert problems(body) == []
    (event,) = events_api.parse(RawRecord(account="acme", source="api", body=orjson.dumps(body)))
    assert event.conversion is not None and event.conversion.amount == kept
    row_of(encode(event))


def test_a_deep_payload_is_refused_naming_it() -> None:
    deep = events_api.validate(with_hostile("payload", "[" * 300 + "]" * 300), 100)[1]
    assert [p["field"] for p in deep] == ["payload"]
    assert "at most 32 levels" in str(deep[0]["message"])


NAMED = {"name": "login_user", "payload": {"email": "Test@Mail.ru"}}


def test_a_named_event_is_a_custom_event_of_the_payloads_contact_and_no_delivery() -> None:
    assert problems(NAMED) == []
    received = RawRecord(account="acme", source="api", body=orjson.dumps(NAMED))
    (event,) = events_api.parse(received)
    assert (event.type, event.name, event.payload) == (
        EventType.CUSTOM,
        "login_user",
        NAMED["payload"],
    )
    assert event.recipient.email == "test@mail.ru"
    assert (event.delivery_id, event.message_id) == (None, None)
    assert event.occurred_at == received.received_at
    row_of(encode(event))


def test_a_named_event_posted_alone_is_echoed_and_in_an_array_is_not() -> None:
    body = orjson.dumps(NAMED)
    assert events_api.echo(body, events_api.validate(body, 10)[0]) == NAMED
    listed = orjson.dumps([NAMED])
    assert events_api.echo(listed, events_api.validate(listed, 10)[0]) is None


def test_a_named_event_with_its_time_and_id_is_the_same_event_when_posted_again() -> None:
    body = {**NAMED, "occurred_at": "2025-06-01T10:00:00Z", "id": "e-1"}
    (a,) = events_api.parse(record(body))
    (b,) = events_api.parse(record(body))
    assert a.event_id == b.event_id
    assert a.occurred_at.isoformat() == "2025-06-01T10:00:00+00:00"


def test_a_named_event_without_an_email_takes_a_contact_id() -> None:
    (event,) = events_api.parse(record({"name": "x", "payload": {"contact_id": "c-9"}}))
    assert event.recipient.key() == "c-9"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "payload": {}}, "payload.email"),
        ({"name": "x", "payload": {"email": "nope"}}, "payload.email"),
        ({"name": "x", "payload": {"email": 7}}, "payload.email"),
        ({"name": "x", "payload": "test@mail.ru"}, "payload"),
        ({"name": "x"}, "payload"),
        ({"name": "", "payload": {"email": "a@b.c"}}, "name"),
        ({"name": None, "payload": {"email": "a@b.c"}}, "name"),
        ({"name": "x" * 129, "payload": {"email": "a@b.c"}}, "name"),
        ({"name": "x", "payload": {"email": "a@b.c", "k": "a\x00"}}, "payload"),
        ({"name": "x", "payload": {"email": "a@b.c"}, "delivery_id": "d1"}, "delivery_id"),
        ({"name": "x", "payload": {"email": "a@b.c"}, "occurred_at": "yesterday"}, "occurred_at"),
        ({"name": "x", "payload": {"contact_id": "c" * 300}}, "payload.contact_id"),
    ],
)
def test_each_bad_named_event_field_is_named(body: dict[str, object], field: str) -> None:
    found = problems([NAMED, body])
    assert {(p["index"], p["field"]) for p in found} >= {(1, field)}, found
    assert all(p["index"] == 1 for p in found)
    with pytest.raises(ParseError, match=f"event 1 field {field!r}"):
        events_api.parse(record([NAMED, body]))
