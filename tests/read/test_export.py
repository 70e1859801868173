"""The export: cells a spreadsheet would run as formulas are neutralised, and export slots are
per account (one account's exports never use up another's), with a cap in all."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import Unavailable
from service.read import export
from service.read.export import FORMULA_TRIGGERS, MAX_EXPORTS, MAX_EXPORTS_PER_ACCOUNT, Slots
from service.read.recipients import FIELD_NAMES
from tests.harness import Account, Harness, wait_for
from tests.read.story import BASE, CAMPAIGN, DELIVERY, post

# The recipients columns a recipient, a sender or a remote mail server writes.
TEXT_COLUMNS = [
    "contact_id", "client_contact_id", "first_name", "surname", "email", "ab_version",
    "bounce_class", "bounce_code", "bounce_reason", "conversions_currency", "status",
    "delivery_status",
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


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=40))
def test_slots_hold_both_limits_and_refuse_only_at_one(ops: list[tuple[str, bool]]) -> None:
    slots, model = Slots(total=4, per_account=2), Counter[str]()
    for account, take in ops:
        if not take:
            if model[account]:
                slots.give(account)
                model[account] -= 1
            continue
        try:
            slots.take(account)
        except Unavailable as exc:
            assert exc.retry_after > 0
            if model[account] >= 2:
                assert f"account {account!r}" in exc.message
            else:
                assert model.total() >= 4 and "service's limit" in exc.message
        else:
            assert model[account] < 2 and model.total() < 4
            model[account] += 1
        assert +slots.running == +model


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


@pytest.fixture
async def accounts(running: Harness) -> list[Account]:
    """Three accounts, each with one recipient of the delivery."""
    found = [await running.account(name) for name in ("acme", "beta", "gamma")]
    for account in found:
        async with running.client(account) as client:
            await post(client, [sent(f"someone@{account.account}.test")])
    for account in found:
        await folded_for(running, account.account, 1)
    return found


@asynccontextmanager
async def stalled(h: Harness) -> AsyncIterator[None]:
    """While inside, every export waits on the recipients table (and so holds its slot)."""
    pool = await h.pool()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE recipients IN ACCESS EXCLUSIVE MODE")
        yield


async def all_slots_free() -> None:
    """Wait for the service to give back its slots (after the last byte a client reads)."""

    async def running() -> int:
        return export.SLOTS.running.total()

    await wait_for(running, lambda n: n == 0)


async def exports(
    h: Harness, stack: AsyncExitStack, account: Account, count: int
) -> list[httpx.Response]:
    """Start `count` exports of the account's; each answers as soon as it has a slot or not."""
    client = await stack.enter_async_context(h.client(account))
    return [
        await stack.enter_async_context(client.stream("GET", f"{BASE}/export"))
        for _ in range(count)
    ]


async def refused(response: httpx.Response) -> str:
    """The message of a refused export (checked before its body is read: a granted one waits)."""
    assert response.status_code == 503 and response.headers["retry-after"] == "30"
    body = orjson.loads(await response.aread())
    assert body["error"] == "unavailable"
    return str(body["message"])


async def test_an_account_at_its_limit_is_refused_and_leaves_others_their_slots(
    running: Harness, accounts: list[Account]
) -> None:
    acme, beta, _ = accounts
    async with AsyncExitStack() as stack:
        async with stalled(running):
            mine = await exports(running, stack, acme, MAX_EXPORTS_PER_ACCOUNT + 1)
            theirs = await exports(running, stack, beta, 1)
            assert [r.status_code for r in mine[:-1]] == [200] * MAX_EXPORTS_PER_ACCOUNT
            assert "account 'acme'" in await refused(mine[-1])
            assert theirs[0].status_code == 200
        for response in mine[:-1] + theirs:  # the stall over, each export runs to its end
            assert len((await response.aread()).splitlines()) == 2
    await all_slots_free()  # every slot is given back: acme can run its full share again
    async with AsyncExitStack() as stack:
        again = await exports(running, stack, acme, MAX_EXPORTS_PER_ACCOUNT)
        assert [r.status_code for r in again] == [200] * MAX_EXPORTS_PER_ACCOUNT


async def test_past_the_limit_in_all_an_export_is_refused_naming_it(
    running: Harness, accounts: list[Account]
) -> None:
    assert MAX_EXPORTS == 2 * MAX_EXPORTS_PER_ACCOUNT  # two accounts fill the service
    acme, beta, gamma = accounts
    async with AsyncExitStack() as stack:
        async with stalled(running):
            held = await exports(running, stack, acme, MAX_EXPORTS_PER_ACCOUNT)
            held += await exports(running, stack, beta, MAX_EXPORTS_PER_ACCOUNT)
            (late,) = await exports(running, stack, gamma, 1)
            assert [r.status_code for r in held] == [200] * MAX_EXPORTS
            assert "service's limit" in await refused(late)
            for response in held[:2]:  # acme's clients go away mid-export
                await response.aclose()
        for response in held[2:]:
            await response.aread()
    await all_slots_free()
    async with AsyncExitStack() as stack:
        later = await exports(running, stack, gamma, MAX_EXPORTS_PER_ACCOUNT)
        assert [r.status_code for r in later] == [200] * MAX_EXPORTS_PER_ACCOUNT
