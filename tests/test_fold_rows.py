"""`row_of` (the fold's fast record reader) gives exactly `to_row(decode(...))`, and refuses
exactly what `decode` refuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.fold import row_of, to_row
from service.adapters import derive
from service.errors import ParseError
from service.events import decode, encode
from service.ledger import check_row
from service.webhooks.base import RawRecord
from tests.test_event_schema import api_body, provider_bodies, raw_record
from tests.test_fold_property import POOL

DECODE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


def fixture_events() -> list[Any]:
    events = list(POOL)
    events += derive(RawRecord(account="acme", source="api", body=api_body()))
    for source, path in provider_bodies():
        try:
            events += derive(raw_record(source, path))
        except ParseError:
            continue
    return events


EVENTS = fixture_events()


def test_every_fixture_event_reads_to_its_ledger_row() -> None:
    kinds = {e.type for e in EVENTS}
    assert len(EVENTS) > 100 and len(kinds) >= 10  # every event type, from every provider
    for event in EVENTS:
        if event.recipient.key():
            assert row_of(encode(event)) == to_row(event), event
        else:  # decoded, but the fold has nobody to fold it into
            with pytest.raises(ValueError, match="no recipient"):
                row_of(encode(event))


DELETE = object()


def record(**changes: Any) -> bytes:
    """A valid record (a bounce with a conversion, so every nested field is there) changed."""
    base = orjson.loads(encode(EVENTS[0]))
    base["bounce"] = {"class": "hard", "code": "5.1.1", "reason": "no such user"}
    base["conversion"] = {"amount": "12.50", "currency": "EUR"}
    base.update(changes)
    return orjson.dumps({k: v for k, v in base.items() if v is not DELETE})


BROKEN = {
    "not json": b"{",
    "not an object": b"[1, 2]",
    "other schema version": record(schema_version=2),
    "no schema version": record(schema_version=DELETE),
    "no event id": record(event_id=DELETE),
    "no account": record(account=DELETE),
    "no type": record(type=DELETE),
    "unknown type": record(type="read"),
    "type not text": record(type=5),
    "time without zone": record(occurred_at="2025-06-01T10:00:00"),
    "time not text": record(occurred_at=17),
    "no time": record(occurred_at=DELETE),
    "received not a time": record(received_at="yesterday"),
    "no recipient": record(recipient=DELETE),
    "recipient not an object": record(recipient="a@example.com"),
    "recipient without identity": record(recipient={"first_name": "A"}),
    "bounce not an object": record(bounce="hard"),
    "amount not a number": record(conversion={"amount": "twelve"}),
    "conversion without amount": record(conversion={"currency": "EUR"}),
}


def test_the_valid_base_record_reads() -> None:
    assert row_of(record()) == to_row(decode(record()))


@pytest.mark.parametrize("data", BROKEN.values(), ids=list(BROKEN))
def test_a_broken_record_is_refused_like_decode_refuses_it(data: bytes) -> None:
    with pytest.raises(DECODE_ERRORS):
        row_of(data)
    try:
        event = decode(data)
    except DECODE_ERRORS:
        return
    assert not event.recipient.key()  # decode reads it; the fold refuses it for its recipient


def carried_values() -> list[Any]:
    """Every distinct value some fixture record carries in a field (nested objects included),
    in a fixed order; `received_at` is left out, as it is the time the test started."""
    seen = {
        orjson.dumps(value, option=orjson.OPT_SORT_KEYS): value
        for event in EVENTS
        for name, value in orjson.loads(encode(event)).items()
        if name != "received_at"
    }
    return [seen[key] for key in sorted(seen)]


# Each example costs the same few cheap draws. Text comes from a fixed alphabet (digits, the
# characters of ids and times, a NUL, a non-ASCII letter, a symbol outside the BMP): text over
# all of Unicode makes Hypothesis build its character table on the first draw, over a second on
# a machine without a warm .hypothesis folder, which the too_slow health check counts as input
# generation.
ALPHABET = "0123456789abcdefxT:-+.Z \x00é😀"
FIELDS = st.sampled_from(sorted(orjson.loads(record())))
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # what JSON numbers orjson reads
    st.text(ALPHABET, max_size=8),
    st.just({}),
    st.just([]),
    st.sampled_from(carried_values()),  # a value valid in some field, put in any field
)


@given(st.sampled_from(EVENTS), st.dictionaries(FIELDS, VALUES, max_size=3))
def test_row_of_and_decode_agree_on_any_mangled_record(event: Any, changes: dict[str, Any]) -> None:
    data = orjson.dumps({**orjson.loads(encode(event)), **changes})
    try:
        event = decode(data)
        # row_of also refuses what the ledger cannot store (service/ledger.py).
        expected: Any = check_row(to_row(event)) if event.recipient.key() else ValueError
    except DECODE_ERRORS as exc:
        expected = type(exc)
    try:
        got: Any = row_of(data)
    except DECODE_ERRORS as exc:
        got = type(exc)
    if isinstance(expected, type) or isinstance(got, type):
        assert isinstance(expected, type) and isinstance(got, type), (expected, got)
    else:
        assert got == expected
