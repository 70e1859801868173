"""Hostile input is a property: every provider fixture, mangled, is either refused with a
ParseError or parsed into events the fold's row conversion (`row_of`) accepts. Nothing else.

A mangle replaces (or deletes) a value at a random path of the fixture's JSON, also inside JSON
held in a string (SES's `Message`, Mailjet's `Payload`), or a field of a form-encoded body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ParseError
from service.events import encode
from service.ledger import row_of
from service.webhooks import PROVIDERS
from service.webhooks.base import RawRecord
from tests.test_event_schema import provider_bodies, raw_record
from tests.webhooks.contract_mandrill import form_body


@dataclass(frozen=True)
class Nested:
    """JSON held as text inside a JSON string: mangled inside, written back as text."""

    value: Any


DELETE = object()  # remove the key (or the list item) instead of replacing it
RETYPE = object()  # the same value as the other JSON type: "12" for 12, 12345 for "x"

DEEP: Any = []
for _ in range(40):
    DEEP = [DEEP]

# What a hostile or broken sender puts where a value belongs.
VALUES: list[Any] = [
    # Lone surrogates: written as \ud83d escapes, which the strict reader refuses.
    "\ud83d",
    "a\udc00b",
    # 64-bit overflow, huge and tiny numbers.
    2**64,
    -(2**63) - 1,
    2**63,
    1e308,
    -1e308,
    5e-324,
    0,
    -1,
    1.5,
    # 100 kB strings, ASCII and not.
    "x" * 100_000,
    "é" * 50_000,
    # Control characters.
    "\x00",
    "a\x00b",
    "\x01\x1f\x7f",
    "\r\n\t",
    # Wrong types.
    {},
    [],
    {"a": {"b": [1, "c"]}},
    ["x@example.com"],
    DEEP,
    True,
    False,
    None,
    "",
    " ",
    # Invalid and out-of-range dates.
    "2022-15-16 03:11:00",
    "0000-00-00",
    "2022-02-30T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "not a date",
    # Huge epoch numbers, as numbers and as text.
    1e20,
    253402300800,
    -62135596801,
    10**18,
    "99999999999999999999",
    "1e308",
    "nan",
    "inf",
    "-1",
    DELETE,
    RETYPE,
]
# A short string from a fixed alphabet: drawn from all of Unicode, examples would wait on
# Hypothesis's character tables.
ALPHABET = "a@.<>:/ 0\x00\x1f\ud83dé"
VALUE = st.one_of(st.sampled_from(VALUES), st.text(ALPHABET, max_size=12))


def nest(value: Any) -> Any:
    """`value` with every string that holds a JSON object or array turned into Nested."""
    if isinstance(value, dict):
        return {k: nest(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nest(v) for v in value]
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            inner = json.loads(value)
        except ValueError:
            return value
        if isinstance(inner, dict | list):
            return Nested(nest(inner))
    return value


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into `value` (through Nested), the root included."""
    found = [prefix]
    if isinstance(value, Nested):
        return found + paths(value.value, (*prefix, Nested))[1:]
    if isinstance(value, dict | list):
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            found += paths(child, (*prefix, key))
    return found


def retyped(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return int(value) if value.strip().isdigit() else 12345
    return value


def mangle(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """`value` with `path` replaced by `new`; unchanged when the path no longer exists."""
    if not path:
        return retyped(value) if new is RETYPE else new
    head, rest = path[0], path[1:]
    if head is Nested:
        return Nested(mangle(value.value, rest, new)) if isinstance(value, Nested) else value
    if isinstance(value, dict) and head in value:
        if not rest and new is DELETE:
            return {k: v for k, v in value.items() if k != head}
        return {**value, head: mangle(value[head], rest, new)}
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        if not rest and new is DELETE:
            return value[:head] + value[head + 1 :]
        return [*value[:head], mangle(value[head], rest, new), *value[head + 1 :]]
    return value


def write(value: Any) -> str:
    """JSON text with lone surrogates as \\u escapes (the standard library writes those)."""
    return json.dumps(denest(value))


def denest(value: Any) -> Any:
    if value is DELETE:
        return None
    if isinstance(value, Nested):
        return write(value.value)
    if isinstance(value, dict):
        return {k: denest(v) for k, v in value.items()}
    if isinstance(value, list):
        return [denest(v) for v in value]
    return value


def form_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return write(value)


def encode_form(fields: dict[str, Any]) -> bytes:
    """A form body; a lone surrogate goes out as the bytes a broken sender would send."""
    pairs = (
        quote_plus(k) + "=" + quote_plus(form_text(v).encode("utf-8", "surrogatepass"))
        for k, v in fields.items()
        if v is not DELETE
    )
    return "&".join(pairs).encode()


@dataclass(frozen=True)
class Fixture:
    record: RawRecord
    kind: str  # "json", "mandrill" (a JSON array in a form field) or "form"
    tree: Any

    def body(self, tree: Any) -> bytes:
        if self.kind == "form":
            return encode_form(tree if isinstance(tree, dict) else {"x": tree})
        if self.kind == "mandrill":
            return form_body(write(tree))
        return write(tree).encode()


def load(source: str, path: Path) -> Fixture:
    record = raw_record(source, path)
    if path.suffix == ".form":
        fields = dict(parse_qsl(path.read_text(), keep_blank_values=True))
        return Fixture(record, "form", fields)
    kind = "mandrill" if source == "mandrill" else "json"
    return Fixture(record, kind, nest(orjson.loads(path.read_bytes())))


FIXTURES: dict[str, list[Fixture]] = {}
for _source, _path in provider_bodies():
    FIXTURES.setdefault(_source, []).append(load(_source, _path))


def check(record: RawRecord) -> None:
    """Refused with a ParseError whose reason can be written, or every event storable."""
    try:
        events = PROVIDERS[record.source].parse(record)
    except ParseError as exc:
        assert str(exc).startswith(f"{record.source}: "), exc  # the reason names the provider
        str(exc).encode()  # the dead letter carries the reason as UTF-8
        return
    for event in events:
        row_of(encode(event))


@st.composite
def mangled(draw: st.DrawFn, source: str) -> RawRecord:
    fixture = draw(st.sampled_from(FIXTURES[source]))
    tree, where = fixture.tree, paths(fixture.tree)
    for _ in range(draw(st.integers(1, 3))):
        tree = mangle(tree, draw(st.sampled_from(where)), draw(VALUE))
    return replace(fixture.record, body=fixture.body(tree))


def test_every_provider_has_fixtures() -> None:
    assert sorted(FIXTURES) == sorted(PROVIDERS)


def test_fixtures_themselves_pass() -> None:
    for fixtures in FIXTURES.values():
        for fixture in fixtures:
            check(replace(fixture.record, body=fixture.body(fixture.tree)))


@pytest.mark.parametrize("source", sorted(PROVIDERS))
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_mangled_fixture_is_refused_or_storable(source: str, data: st.DataObject) -> None:
    check(data.draw(mangled(source)))
