"""Metrics (Prometheus text at /metrics, and on each consumer's own listener) and log context."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import httpx
import pytest

from service import kafka, metrics
from tests.harness import Harness, wait_for
from tests.integration.test_faults import make_events, post_until_accepted, run_normalize
from tests.integration.test_faults_shutdown import free_port, scrape

pytestmark = pytest.mark.integration
SAMPLE = re.compile(r"^([a-z_]+)(\{.*\})? (\S+)$")


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample line of an exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        out[match[1] + (match[2] or "")] = float(match[3])
    return out


def test_registry_renders_the_text_exposition_format() -> None:
    registry = metrics.Registry()
    counter = registry.counter("demo_total", "Things done.", ("kind",))
    histogram = registry.histogram("demo_seconds", "Time taken.", (), (0.1, 1.0))
    gauge = registry.gauge("demo_level", "A level.")
    counter.inc(kind='say "hi"\\\n')
    counter.inc(2, kind="plain")
    for value in (0.05, 0.5, 0.5, 3.0):
        histogram.observe(value)
    gauge.set(7)
    gauge.dec(2)
    assert registry.render() == (
        "# HELP demo_total Things done.\n"
        "# TYPE demo_total counter\n"
        'demo_total{kind="plain"} 2\n'
        'demo_total{kind="say \\"hi\\"\\\\\\n"} 1\n'
        "# HELP demo_seconds Time taken.\n"
        "# TYPE demo_seconds histogram\n"
        'demo_seconds_bucket{le="0.1"} 1\n'
        'demo_seconds_bucket{le="1"} 3\n'
        'demo_seconds_bucket{le="+Inf"} 4\n'
        "demo_seconds_sum 4.05\n"
        "demo_seconds_count 4\n"
        "# HELP demo_level A level.\n"
        "# TYPE demo_level gauge\n"
        "demo_level 5\n"
    )
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(other="x")
    with pytest.raises(ValueError, match="registered twice"):
        registry.counter("demo_total", "again")


async def test_service_metrics_count_accepted_and_refused_requests_and_events(
    harness: Harness,
) -> None:
    await harness.start_app()
    acme = await harness.account()
    key = 'mailfold_requests_total{source="api",outcome="%s",reason="%s"}'
    events = 'mailfold_ingest_events_total{source="api",outcome="%s",reason="%s"}'
    async with harness.client(acme) as client:
        before = samples((await client.get("/metrics")).text)
        await post_until_accepted(client, make_events(7, seed=51))
        bad = await client.post("/v1/events", json=[{"type": "nope"}, {"type": "nope"}])
        assert bad.status_code == 400
        async with harness.client() as anonymous:
            assert (await anonymous.post("/v1/events", json=[])).status_code == 401
        assert (await client.post("/webhooks/nosuch/acme", content=b"{}")).status_code == 404
        page = await client.get("/metrics")
    assert page.headers["content-type"] == metrics.CONTENT_TYPE
    after = samples(page.text)

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert delta(key % ("accepted", "none")) == 1 and delta(events % ("accepted", "none")) == 7
    assert delta(key % ("refused", "bad_request")) == 1
    assert delta(events % ("refused", "bad_request")) == 2
    assert delta(key % ("refused", "unauthorized")) == 1
    assert delta('mailfold_requests_total{source="unknown",outcome="refused",reason="not_found"}')
    assert delta('mailfold_produce_seconds_count{outcome="acked"}') == 1
    assert "mailfold_produce_in_flight 0" in page.text


async def test_consumers_serve_their_own_metrics_with_lag_per_partition(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.start_app()
    acme = await harness.account()
    fold_port, normalize_port = free_port(), free_port()
    harness.settings = replace(harness.settings, metrics_port=fold_port)
    harness.spawn("fold")
    harness.settings = replace(harness.settings, metrics_port=normalize_port)
    harness.spawn("normalize")
    harness.settings = replace(harness.settings, metrics_port=0)
    events = make_events(500, seed=52)
    async with harness.client(acme) as client:
        for i in range(0, len(events), 50):
            await post_until_accepted(client, events[i : i + 50])
    folded = await wait_for(
        lambda: scrape(fold_port),
        lambda t: samples(t).get("mailfold_folded_events_total") == len(events),
    )
    normalized = samples(await scrape(normalize_port))
    assert normalized['mailfold_normalized_events_total{source="api"}'] == len(events)
    group, topic = harness.settings.fold_group, harness.settings.events_topic
    await wait_for(
        lambda: scrape(fold_port),
        lambda t: f'mailfold_consumer_lag{{group="{group}",topic="{topic}",partition="0"}}' in t,
        timeout=20,
    )
    assert samples(folded)["mailfold_fold_batch_records_count"] > 0
    async with httpx.AsyncClient() as client:
        other = await client.get(f"http://127.0.0.1:{fold_port}/nothing")
    assert other.status_code == 404


async def test_log_lines_carry_request_ids_and_record_positions(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailfold")
    await harness.start_app()
    await run_normalize(harness)
    acme = await harness.account()
    async with harness.client(acme) as client:
        r = await client.post("/v1/events", json={}, headers={"x-request-id": "rid-51"})
        assert r.status_code == 400
    producer = kafka.Producer(harness.settings)
    try:
        await producer.send(harness.settings.raw_topic, b"poison")
    finally:
        await producer.stop()

    async def dead_letter_logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("dead letter")]

    (letter,) = await wait_for(dead_letter_logged, bool)
    assert letter.__dict__["topic"] == harness.settings.raw_topic
    assert isinstance(letter.__dict__["partition"], int) and letter.__dict__["offset"] == 0
    (refused,) = [r for r in caplog.records if r.getMessage() == "refused: bad_request"]
    assert refused.__dict__["request_id"] == "rid-51"
