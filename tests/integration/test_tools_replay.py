"""`mailfold replay`: re-deriving mailfold.events from the raw log, on the real broker."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumers import normalize, replay
from service import kafka, machine
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


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so the replay draws its bar on it."""

    def isatty(self) -> bool:
        return True


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
    stream = Terminal()
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


async def test_replay_command_prints_its_summary_and_logs_progress(harness: Harness) -> None:
    await harness.start_app()
    acme = await harness.account()
    async with harness.client(acme) as client:
        posts = await post_batches(harness, client, make_events(100, seed=36), 25)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mailfold", "replay", "--dry-run", "--source", "api"],
        env=harness.env(),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    summary = orjson.loads(done.stdout)
    assert (summary["records"], summary["events"], summary["dry_run"]) == (posts, 100, True)
    # Its stderr is a pipe, not a terminal: progress comes as log lines, never a redrawn bar.
    stderr = done.stderr.decode()
    assert "replay: 100.0%" in stderr and "\r" not in stderr


async def test_replay_corrects_what_a_fixed_adapter_read_wrongly(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    derive = normalize.derive_record

    def misreads_bounces(rec: kafka.Record) -> Any:
        # An adapter bug that reads every bounce as soft: same events, same ids, a wrong field.
        return [
            replace(e, bounce=replace(e.bounce, bounce_class="soft")) if e.bounce else e
            for e in derive(rec)
        ]

    monkeypatch.setattr(normalize, "derive_record", misreads_bounces)
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    events = make_events(900, seed=36)
    hard = sum(1 for e in events if e.get("bounce", {}).get("class") == "hard")
    async with harness.client(acme) as client:
        await post_batches(harness, client, events, 30)
    await fold_caught_up(harness, at_least=len(events))
    assert hard and await hard_bounces(harness) == 0
    monkeypatch.setattr(normalize, "derive_record", derive)  # the adapter is fixed
    summary = await replay.replay(harness.settings, stream=None)
    assert summary.events == len(events)
    await check_against_oracle(harness, events)
    assert await hard_bounces(harness) == hard


async def hard_bounces(h: Harness) -> int:
    rows = await fetch(h, "SELECT coalesce(sum(hard_count), 0) AS n FROM delivery_stats")
    return int(rows[0]["n"])


async def test_replay_after_a_rules_change_reclassifies_history(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0 Safari/537.36"
    )
    base = {"campaign_id": "c1", "delivery_id": "d1", "recipient": {"email": "ann@example.com"}}
    events = [
        {**base, "type": "delivered", "occurred_at": "2025-06-01T12:00:00Z"},
        {**base, "type": "clicked", "occurred_at": "2025-06-01T13:00:00Z",
         "url": "https://shop.test/a", "ip": "192.0.2.10", "user_agent": chrome},
        {**base, "type": "clicked", "occurred_at": "2025-06-01T14:00:00Z",
         "url": "https://shop.test/b", "ip": "198.51.100.4", "user_agent": chrome},
    ]  # fmt: skip
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    async with harness.client(acme) as client:
        await post_until_accepted(client, events)
    await fold_caught_up(harness, at_least=len(events))
    assert await click_counts(harness) == (1, 2, 0)  # (recipients, human, machine)
    # The operator adds a scanner network the shipped list lacked, then replays the raw log.
    networks = tmp_path / "scanners.txt"
    networks.write_text("192.0.2.0/24\n")
    monkeypatch.setenv("MAILFOLD_SCANNER_NETWORKS_FILE", str(networks))
    machine.scanner_networks.cache_clear()
    try:
        await replay.replay(harness.settings, stream=None)
    finally:
        monkeypatch.undo()
        machine.scanner_networks.cache_clear()
    await fold_caught_up(harness, at_least=2 * len(events))
    assert await click_counts(harness) == (1, 1, 1)
    reasons = await fetch(
        harness, "SELECT ip, machine_reason FROM events WHERE type = 'clicked' ORDER BY ip"
    )
    assert [(r["ip"], r["machine_reason"]) for r in reasons] == [
        ("192.0.2.10", "scanner_network"),
        ("198.51.100.4", None),
    ]
    stats = await fetch(
        harness, "SELECT sum(human_count) AS h, sum(machine_count) AS m FROM delivery_stats "
        "WHERE type = 'clicked'"
    )  # fmt: skip
    links = await fetch(harness, "SELECT url, machine_count FROM link_stats ORDER BY url")
    assert (stats[0]["h"], stats[0]["m"]) == (1, 1)
    assert [(r["url"], r["machine_count"]) for r in links] == [
        ("https://shop.test/a", 1),
        ("https://shop.test/b", 0),
    ]


async def click_counts(h: Harness) -> tuple[int, int, int]:
    rows = await fetch(h, "SELECT click_human_count, click_machine_count FROM recipients")
    return len(rows), rows[0]["click_human_count"], rows[0]["click_machine_count"]
