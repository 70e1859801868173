"""SIGTERM: consumers exit promptly with their batch committed or abandoned whole, and a restart
continues to exact counts; the service drains and exits with status 0."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from tests.harness import Harness, wait_for
from tests.integration.test_faults import (
    Feeder,
    assert_consistent,
    batches_of,
    check_against_oracle,
    ledger_count,
    make_events,
    run_normalize,
    services,
)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def scrape(port: int) -> str:
    """The text of a consumer's /metrics listener ("" while it is not up)."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.TransportError:
        return ""


def sample(text: str, name: str) -> float:
    """The value of an unlabelled sample in exposition text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def exits(process: subprocess.Popen[bytes], within: float) -> tuple[int | None, float]:
    """SIGTERM `process`; its exit code (None if still running after `within` s) and the time."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    while process.poll() is None and time.monotonic() - started < within:
        await asyncio.sleep(0.05)
    return process.poll(), time.monotonic() - started


async def test_sigterm_mid_stream_stops_consumers_promptly_and_a_restart_counts_exactly(
    harness: Harness,
) -> None:
    await harness.start_app()
    acme = await harness.account()
    normalizer, folder = harness.spawn("normalize"), harness.spawn("fold")
    async with harness.client(acme) as client:
        feeder = Feeder(client, batches_of(make_events(3000, seed=11), 10))
        await wait_for(lambda: ledger_count(harness), lambda n: n > 300)
        fold_code, fold_took = await exits(folder, within=15)
        normalize_code, normalize_took = await exits(normalizer, within=15)
        assert (fold_code, normalize_code) == (0, 0)
        assert fold_took < 10 and normalize_took < 10, (fold_took, normalize_took)
        await assert_consistent(harness)
        harness.spawn("normalize")
        harness.spawn("fold")
        accepted = await feeder.done()
    await check_against_oracle(harness, accepted)
    await assert_consistent(harness)


async def test_sigterm_while_postgres_is_down_abandons_the_batch_and_exits(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.start_app()
    acme = await harness.account()
    port = free_port()
    harness.settings = replace(harness.settings, metrics_port=port)
    folder = harness.spawn("fold")
    harness.settings = replace(harness.settings, metrics_port=0)
    await run_normalize(harness)
    async with harness.client(acme) as client:
        feeder = Feeder(client, batches_of(make_events(2000, seed=12), 10))
        await wait_for(lambda: ledger_count(harness), lambda n: n > 200)
        services("stop", "postgres")
        try:
            # The fold is retrying a batch against the missing database ...
            await wait_for(
                lambda: scrape(port), lambda t: sample(t, "mailfold_fold_retries_total") > 0
            )
            # ... and SIGTERM makes it give the batch up instead of waiting on.
            code, took = await exits(folder, within=15)
            assert code == 0 and took < 5, (code, took)
        finally:
            services("start", "postgres")
        await assert_consistent(harness)
        harness.spawn("fold")
        accepted = await feeder.done()
    await check_against_oracle(harness, accepted)
    await assert_consistent(harness)


async def test_sigterm_stops_the_service_cleanly_with_status_0(harness: Harness) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mailfold", "serve", "--port", str(port)],
        env=harness.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def ready() -> int:
                try:
                    return (await client.get("/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await wait_for(ready, lambda status: status == 200, timeout=30)
        code, took = await exits(server, within=15)
        assert code == 0, f"exit status {code} after {took:.1f} s"
    finally:
        if server.poll() is None:
            server.kill()
