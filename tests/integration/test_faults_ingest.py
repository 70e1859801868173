"""Ingest under pressure and at shutdown, through a raw sink that holds records until released
(the one fake allowed: `service.ingest.RawSink`, a seam Mailfold owns)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from dataclasses import replace
from typing import Any

import httpx
import pytest

from service import metrics
from service.app import Service
from service.errors import Unavailable
from service.webhooks.base import RawRecord
from tests.harness import Harness, wait_for
from tests.integration.test_faults import make_events

pytestmark = pytest.mark.integration


class HoldingSink:
    """Accepts records but answers only once `release` is set; counts what it holds."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = 0
        self.most = 0
        self.landed: list[bytes] = []

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.holding += 1
        self.most = max(self.most, self.holding)
        try:
            await self.release.wait()
        finally:
            self.holding -= 1
        self.landed.append(value)


def service_of(h: Harness) -> Service:
    assert h._server is not None
    svc: Service = h._server.config.app.state.service
    return svc


async def holding(sink: HoldingSink) -> int:
    return sink.holding


async def test_saturated_ingest_answers_503_with_retry_after_and_memory_stays_flat(
    harness: Harness,
) -> None:
    harness.settings = replace(harness.settings, max_in_flight=8, retry_after_s=3)
    sink = HoldingSink()
    await harness.start_app(sink=sink)
    acme = await harness.account()
    body = make_events(20, seed=21)
    refused_before = metrics.REQUESTS.value(source="api", outcome="refused", reason="unavailable")
    # Idle connections expire on the client before the server (5 s) closes them under it.
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60, keepalive_expiry=2)
    async with harness.client(acme, limits=limits) as client:
        held = [
            asyncio.create_task(client.post("/v1/events", json=body, timeout=300)) for _ in range(8)
        ]
        await wait_for(lambda: holding(sink), lambda n: n == 8)

        async def refuse(n: int) -> None:
            for _ in range(n // 50):
                answers = await asyncio.gather(
                    *(client.post("/v1/events", json=body) for _ in range(50))
                )
                for r in answers:
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"] == "3"
                    assert r.json()["message"] == "too many requests in flight"

        tracemalloc.start()
        try:
            await refuse(100)  # warm-up: connections, caches, first-use allocations
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await refuse(1000)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # 1000 refused bodies of ~4 KB each would be 4 MB if anything kept them.
        assert grown < 500_000, f"memory grew by {grown} bytes over 1000 refused requests"
        assert (sink.most, sink.holding, metrics.IN_FLIGHT.value()) == (8, 8, 8)
        refused = metrics.REQUESTS.value(source="api", outcome="refused", reason="unavailable")
        assert refused - refused_before == 1100
        # Refused before the body is read or checked: even a malformed one gets 503, not 400.
        malformed = await client.post("/v1/events", content=b"not json")
        assert malformed.status_code == 503 and malformed.headers["retry-after"] == "3"
        sink.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [202] * 8
        assert (await client.post("/v1/events", json=body)).status_code == 202
    assert len(sink.landed) == 9 and metrics.IN_FLIGHT.value() == 0


async def test_shutdown_lets_in_flight_requests_finish_then_refuses(harness: Harness) -> None:
    sink = HoldingSink()
    await harness.start_app(sink=sink)
    acme = await harness.account()
    body = make_events(5, seed=22)
    async with harness.client(acme) as client:
        held = [asyncio.create_task(client.post("/v1/events", json=body)) for _ in range(5)]
        await wait_for(lambda: holding(sink), lambda n: n == 5)
        assert harness._server is not None
        harness._server.should_exit = True  # what uvicorn does on SIGTERM
        await asyncio.sleep(0.5)
        # No new request gets in: the listener is closed (or the service answers 503).
        async with harness.client(acme) as late:
            try:
                r = await late.post("/v1/events", json=body)
                assert r.status_code == 503
            except httpx.ConnectError:
                pass
        sink.release.set()
        answers = await asyncio.gather(*held)
    assert [r.status_code for r in answers] == [202] * 5
    assert len(sink.landed) == 5
    svc = service_of(harness)
    await wait_for(lambda: closing(svc), bool)
    with pytest.raises(Unavailable, match="shutting down"):
        await svc.ingest.accept(RawRecord(account="acme", source="api", body=b"[]"), None)


async def closing(svc: Service) -> Any:
    return svc.ingest.closing
