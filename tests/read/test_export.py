"""The export: cells a spreadsheet would run as formulas are neutralised."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from service.read import export
from service.read.export import FORMULA_TRIGGERS
from service.read.recipients import FIELD_NAMES
from tests.harness import Account, Harness, wait_for
from tests.read.story import BASE, CAMPAIGN, DELIVERY, post

# The recipients columns a recipient, a sender or a remote mail server writes.
TEXT_COLUMNS = [
    "contact_id", "client_contact_id", "first_name", "surname", "email", "ab_version",
    "bounce_class", "bounce_code", "bounce_reason", "conversions_currency", "status",
]  # fmt: skip
COUNT_COLUMNS = [
    "open_count", "open_human_count", "open_machine_count", "click_count", "click_human_count",
    "click_machine_count", "conversions_count",
]  # fmt: skip
TIME_COLUMNS = [
    "sent_at", "delivered_at", "opened_at", "clicked_at", "unsubscribed_at", "complained_at",
    "bounced_at", "dropped_at",
]  # fmt: skip

# A fixed alphabet keeps each draw cheap; it holds every trigger, CSV's own quote, separator and
# line breaks, and characters outside ASCII.
ALPHABET = "=+-@\t\r\n\"',; aZ09é😀"
TEXT = st.one_of(
    st.none(),
    st.text(ALPHABET, max_size=12),
    st.builds(str.__add__, st.sampled_from(FORMULA_TRIGGERS), st.text(ALPHABET, max_size=12)),
)
AMOUNT = st.decimals(-(10**15), 10**15, places=4, allow_nan=False, allow_infinity=False)


def csv_cells(line: bytes) -> dict[str, str]:
    (cells,) = csv.reader(io.StringIO(line.decode(), newline=""))
    return dict(zip(FIELD_NAMES, cells, strict=True))


@given(
    texts=st.fixed_dictionaries({c: TEXT for c in TEXT_COLUMNS}),
    counts=st.fixed_dictionaries({c: st.integers(-(2**31), 2**31 - 1) for c in COUNT_COLUMNS}),
    amount=st.none() | AMOUNT,
)
def test_no_text_cell_starts_a_formula_and_other_cells_are_unchanged(
    texts: dict[str, str | None], counts: dict[str, int], amount: Decimal | None
) -> None:
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    row = {**texts, **counts, **dict.fromkeys(TIME_COLUMNS, at), "conversions_amount": amount}
    _, encode = export.encoder("csv")
    cells = csv_cells(encode(row))
    plain = orjson.loads(export.encoder("jsonl")[1](row))
    for name, value in plain.items():
        got = cells[name]
        if isinstance(value, str):
            assert not got.startswith(FORMULA_TRIGGERS), (name, got)
            assert got == (f"'{value}" if value.startswith(FORMULA_TRIGGERS) else value)
        elif value is None:
            assert got == ""
        else:  # numbers, a negative amount or count included, are never touched
            assert got == str(export.cell(value)) == str(value), (name, got)


def test_a_negative_number_is_not_text_to_neutralise() -> None:
    assert export.cell(-5) == -5 and export.cell(-12.5) == -12.5
    assert export.cell("-5") == "'-5"


# --- through the real service and database -------------------------------------------------


def sent(email: str, **recipient: Any) -> dict[str, Any]:
    return {
        "type": "sent",
        "occurred_at": "2025-06-01T12:00:00Z",
        "campaign_id": CAMPAIGN,
        "delivery_id": DELIVERY,
        "recipient": {"email": email, **recipient},
    }


async def folded_for(h: Harness, account: str, count: int) -> None:
    await wait_for(
        lambda: h.fetch("SELECT count(*) AS n FROM recipients WHERE account_id = $1", account),
        lambda rows: rows[0]["n"] >= count,
    )


async def test_the_csv_export_neutralises_formulas_a_recipient_wrote(
    running: Harness, acme: Account
) -> None:
    hostile = {"first_name": '=HYPERLINK("https://x.test","see")', "surname": "+1+1"}
    converted = {
        **sent("mallory@example.com"),
        "type": "converted",
        "conversion": {"amount": "-12.5", "currency": "EUR"},
    }
    async with running.client(acme) as client:
        await post(client, [sent("mallory@example.com", **hostile), converted])
        await folded_for(running, "acme", 1)
        await wait_for(
            lambda: running.fetch("SELECT conversions_count AS n FROM recipients"),
            lambda rows: rows[0]["n"] == 1,
        )
        r = await client.get(f"{BASE}/export")
        jsonl = await client.get(f"{BASE}/export", params={"format": "jsonl"})
    (row,) = csv.DictReader(io.StringIO(r.text, newline=""))
    assert row["firstName"] == '\'=HYPERLINK("https://x.test","see")'
    assert row["surname"] == "'+1+1"
    assert row["conversionsAmount"] == "-12.5"
    (line,) = [orjson.loads(x) for x in jsonl.content.splitlines()]
    assert (line["firstName"], line["surname"]) == (hostile["first_name"], hostile["surname"])
