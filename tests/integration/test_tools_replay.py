"""`mailfold replay`: re-deriving mailfold.events from the raw log, on the real broker."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from consumers import normalize, replay
from service import kafka
from service.errors import ParseError
from tests.harness import Harness
from tests.integration.test_faults import (
    batches_of,
    check_against_oracle,
    fetch,
    fold_caught_up,
    make_events,
    post_until_accepted,
)

pytestmark = pytest.mark.integration
TABLES = {
    "recipients": "account_id, delivery_id, recipient_key",
    "delivery_stats": "account_id, delivery_id, hour, type",
    "link_stats": "account_id, delivery_id, url, recipient_key",
    "messages": "account_id, message_id, recipient_key",
}


async def snapshot(h: Harness) -> dict[str, Any]:
    """Every folded row, and the ledger without its fold times."""
    out: dict[str, Any] = {
        table: [dict(r) for r in await fetch(h, f"SELECT * FROM {table} ORDER BY {order}")]
        for table, order in TABLES.items()
    }
    ledger = await fetch(h, "SELECT * FROM events ORDER BY event_id")
    out["events"] = [{k: v for k, v in r.items() if k != "folded_at"} for r in ledger]
    return out


async def post_batches(h: Harness, client: Any, events: list[dict[str, Any]], size: int) -> int:
    batches = batches_of(events, size)
    for batch in batches:
        await post_until_accepted(client, batch)
    return len(batches)


async def test_replay_over_existing_state_changes_nothing(harness: Harness) -> None:
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    events = make_events(1500, seed=31)
    async with harness.client(acme) as client:
        posts = await post_batches(harness, client, events, 50)
    await check_against_oracle(harness, events)
    await fold_caught_up(harness, at_least=len(events))
    before = await snapshot(harness)
    stream = io.StringIO()
    summary = await replay.replay(harness.settings, stream=stream)
    assert (summary.records, summary.replayed, summary.unreadable) == (posts, posts, 0)
    assert summary.events == len(events)
    assert "100.0%" in stream.getvalue() and stream.getvalue().endswith("\n")
    # The replayed events are on mailfold.events again; the fold reads them all and finds
    # every one in its ledger already.
    await fold_caught_up(harness, at_least=2 * len(events))
    assert await snapshot(harness) == before


async def test_replay_rederives_what_a_fixed_adapter_now_reads(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    derive = normalize.derive_record

    def broken(rec: kafka.Record) -> Any:
        # An adapter bug that makes every post for delivery d2 unreadable.
        if any(e.get("delivery_id") == "d2" for e in orjson.loads(rec.value)):
            raise ParseError("api: cannot read d2 (adapter bug)")
        return derive(rec)

    monkeypatch.setattr(normalize, "derive_record", broken)
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    d1, d2 = make_events(600, seed=32, delivery="d1"), make_events(600, seed=33, delivery="d2")
    async with harness.client(acme) as client:
        await post_batches(harness, client, d1, 40)
        await post_batches(harness, client, d2, 40)
    await check_against_oracle(harness, d1)
    monkeypatch.setattr(normalize, "derive_record", derive)  # the adapter is fixed
    nothing = await replay.replay(harness.settings, source="sendgrid", stream=None)
    assert (nothing.replayed, nothing.events) == (0, 0) and nothing.records == 30
    summary = await replay.replay(harness.settings, source="api", from_offset=0, stream=None)
    assert (summary.replayed, summary.events, summary.unreadable) == (30, 1200, 0)
    await check_against_oracle(harness, d1 + d2)


async def test_replay_from_a_time_or_an_offset_takes_only_what_follows(harness: Harness) -> None:
    await harness.start_app()
    acme = await harness.account()
    async with harness.client(acme) as client:
        await post_batches(harness, client, make_events(200, seed=34), 20)
        await asyncio.sleep(0.05)
        since = datetime.now(UTC)
        await asyncio.sleep(0.05)
        later = await post_batches(harness, client, make_events(120, seed=35), 20)
    from_time = await replay.replay(harness.settings, since=since, dry_run=True, stream=None)
    assert (from_time.records, from_time.events) == (later, 120)
    beyond = await replay.replay(harness.settings, from_offset=10**9, dry_run=True, stream=None)
    assert beyond.records == 0


async def test_replay_command_prints_its_summary_and_draws_progress(harness: Harness) -> None:
    await harness.start_app()
    acme = await harness.account()
    async with harness.client(acme) as client:
        posts = await post_batches(harness, client, make_events(100, seed=36), 25)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "consumers.cli", "replay", "--dry-run", "--source", "api"],
        env=harness.env(),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    summary = orjson.loads(done.stdout)
    assert (summary["records"], summary["events"], summary["dry_run"]) == (posts, 100, True)
    assert "replay [" in done.stderr.decode() and "100.0%" in done.stderr.decode()
