"""Faults on the real broker and database: nothing that got a 2xx is lost or counted twice."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests import oracle
from tests.harness import Harness, wait_for

pytestmark = pytest.mark.integration
SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services"


def make_events(n: int, seed: int, delivery: str = "d1") -> list[dict[str, Any]]:
    """`n` events over a few dozen recipients: sends, deliveries, opens, clicks."""
    rnd = random.Random(seed)
    kinds = ["sent", "delivered", "opened", "opened", "clicked"]
    out = []
    for i in range(n):
        kind = rnd.choice(kinds)
        e: dict[str, Any] = {
            "type": kind,
            "occurred_at": f"2025-06-{1 + i % 28:02d}T{rnd.randrange(24):02d}:"
            f"{rnd.randrange(60):02d}:{i % 60:02d}Z",
            "campaign_id": "c1",
            "delivery_id": delivery,
            "recipient": {"email": f"r{rnd.randrange(40)}@example.com"},
        }
        if kind == "opened":
            e["machine"] = rnd.random() < 0.3
        if kind == "clicked":
            e["url"] = f"https://shop.test/{rnd.randrange(5)}"
        out.append(e)
    return out


async def check_against_oracle(h: Harness, accepted: list[dict[str, Any]]) -> None:
    """Wait until PostgreSQL's recipient rows equal the oracle's, field by field."""
    expected = oracle.fold(accepted)

    async def view() -> dict[Any, Any]:
        return oracle.db_view(await h.fetch("SELECT * FROM recipients"))

    try:
        await wait_for(view, lambda got: got == expected, timeout=60)
    except AssertionError:
        got = await view()
        diff = {
            k: (expected.get(k), got.get(k))
            for k in expected.keys() | got.keys()
            if expected.get(k) != got.get(k)
        }
        sample = dict(list(diff.items())[:3])
        raise AssertionError(
            f"{len(diff)} recipients differ; e.g. (expected, got): {sample}"
        ) from None


async def post_all(client: httpx.AsyncClient, events: list[dict[str, Any]], size: int) -> None:
    for i in range(0, len(events), size):
        r = await client.post("/v1/events", json=events[i : i + size])
        assert r.status_code == 202, r.text


async def test_fold_killed_mid_stream_and_restarted_counts_exactly(harness: Harness) -> None:
    harness.settings = replace(harness.settings, fold_batch_size=50)
    await harness.start_app()
    normalizer_only = Harness(harness.settings)
    from consumers import normalize

    stop = asyncio.Event()
    task = asyncio.create_task(normalize.run(harness.settings, stop))
    try:
        acme = await harness.account()
        events = make_events(3000, seed=1)
        fold = harness.spawn("fold")
        async with harness.client(acme) as client:
            await post_all(client, events, 100)
        await wait_for(
            lambda: harness.fetch("SELECT count(*) AS n FROM events"),
            lambda rows: rows[0]["n"] > 200,
        )
        fold.send_signal(signal.SIGKILL)
        fold.wait(10)
        harness.spawn("fold")
        await check_against_oracle(harness, events)
    finally:
        stop.set()
        await task
        del normalizer_only


async def test_broker_stopped_answers_503_and_recovers_without_losing_anything(
    harness: Harness,
) -> None:
    harness.settings = replace(harness.settings, produce_timeout_s=3.0, retry_after_s=2)
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    batches = [make_events(20, seed=s) for s in range(40)]
    async with harness.client(acme) as client:
        r = await client.post("/v1/events", json=batches[0])
        assert r.status_code == 202
        subprocess.run([str(SERVICES), "stop", "kafka"], check=True, capture_output=True)
        try:
            for batch in batches[1:4]:
                r = await client.post("/v1/events", json=batch)
                assert r.status_code == 503, r.text
                assert int(r.headers["retry-after"]) > 0
                assert "broker" in r.json()["message"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["kafka"] != "ok"
        finally:
            subprocess.run([str(SERVICES), "start", "kafka"], check=True, capture_output=True)
        # The service recovers by itself: a sender that retries what got a 503 gets it in.
        for batch in batches[1:]:
            r = await wait_for(
                lambda b=batch: client.post("/v1/events", json=b),
                lambda r: r.status_code != 503,
                timeout=90,
            )
            assert r.status_code == 202, r.text
    await check_against_oracle(harness, [e for batch in batches for e in batch])


def test_settings_are_per_test(settings: Settings) -> None:
    assert settings.raw_topic.startswith("t") and settings.raw_topic != "mailfold.raw"
