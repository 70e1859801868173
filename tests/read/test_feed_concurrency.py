"""The recent-activity cursor under concurrent folds: a transaction that commits late never
slips in behind a cursor already handed out, and nothing is handed out twice."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from consumers import fold
from service import db, events_api
from service.webhooks.base import RawRecord
from tests.harness import Account, Harness

pytestmark = pytest.mark.integration


def rows(account: str, tag: str, n: int) -> list[tuple[Any, ...]]:
    """`n` opens of distinct recipients, as the fold's ledger rows."""
    items = [
        {
            "type": "opened",
            "occurred_at": f"2025-06-01T12:{i % 60:02d}:00Z",
            "delivery_id": "d1",
            "campaign_id": "c1",
            "recipient": {"email": f"{tag}-{i}@example.com"},
        }
        for i in range(n)
    ]
    record = RawRecord(account=account, source="api", body=orjson.dumps(items))
    return [fold.to_row(e) for e in events_api.parse(record)]


async def fold_with_pause(conn: asyncpg.Connection[Any], batch: list[Any], pause: float) -> None:
    """fold.fold_rows's statements, holding the transaction open after the ledger insert."""
    async with conn.transaction():
        await conn.copy_records_to_table("incoming", records=batch, columns=fold.COLUMNS)
        await conn.execute(db.QUERIES["insert_new_events"])
        await asyncio.sleep(pause)
        await conn.execute(db.QUERIES["resolve_pending"])
        await conn.fetchval(db.QUERIES["fold_fresh"])
        await conn.execute(db.QUERIES["upsert_suppressions"])


async def feed_page(client: httpx.AsyncClient, cursor: str | None) -> tuple[list[str], str]:
    params = {"limit": "3", **({"since": cursor} if cursor else {})}
    body = (await client.get("/v1/activities/recent", params=params)).json()
    return [a["recipientKey"] for a in body["activities"]], body["cursor"]


async def connection(h: Harness) -> asyncpg.Connection[Any]:
    conn = await db.connect(h.settings.database_url)
    await fold.prepare(conn)
    return conn


@pytest.fixture
async def reader(harness: Harness) -> tuple[Harness, Account]:
    await harness.start_app()
    return harness, await harness.account("acme")


async def test_a_late_commit_is_not_skipped_by_a_cursor(reader: tuple[Harness, Account]) -> None:
    h, acme = reader
    first, second = await connection(h), await connection(h)
    try:
        async with h.client(acme) as client:
            tx = first.transaction()
            await tx.start()
            # the first fold writes its rows (and draws its positions) and stays open ...
            await first.copy_records_to_table(
                "incoming", records=rows(acme.account, "early", 2), columns=fold.COLUMNS
            )
            await first.execute(db.QUERIES["insert_new_events"])
            # ... while a second one folds and commits
            await fold.fold_rows(second, rows(acme.account, "later", 2), "g", "t", {})
            seen, cursor = await feed_page(client, None)
            assert seen == []  # "later" waits behind the open transaction
            await first.fetchval(db.QUERIES["fold_fresh"])
            await tx.commit()
            seen, cursor = await feed_page(client, None)
            more, _ = await feed_page(client, cursor)
            order = [who.split("-")[0] for who in seen + more]
            assert order == ["early", "early", "later", "later"]
            assert len(set(seen + more)) == 4
    finally:
        await first.close()
        await second.close()


async def test_interleaved_folds_give_every_event_to_a_polling_reader_exactly_once(
    reader: tuple[Harness, Account],
) -> None:
    h, acme = reader
    rng = random.Random(11)
    writers, batches, size = 4, 8, 5
    work = [[rows(acme.account, f"w{w}b{b}", size) for b in range(batches)] for w in range(writers)]
    expected = {r[9] for batches_ in work for batch in batches_ for r in batch}

    async def write(batches_: list[list[Any]]) -> None:
        conn = await connection(h)
        try:
            for batch in batches_:
                await fold_with_pause(conn, batch, rng.uniform(0, 0.05))
        finally:
            await conn.close()

    seen: list[str] = []
    async with h.client(acme) as client:
        writing = asyncio.gather(*(write(w) for w in work))
        cursor = None
        while not (writing.done() and len(seen) >= len(expected)):
            page, cursor = await feed_page(client, cursor)
            seen += page
            if writing.done() and not page:
                break
            await asyncio.sleep(0.005)
        await writing
        for _ in range(20):  # whatever committed last
            page, cursor = await feed_page(client, cursor)
            seen += page
    assert len(seen) == len(set(seen)), "an event was handed out twice"
    assert set(seen) == expected, "an event was skipped"
