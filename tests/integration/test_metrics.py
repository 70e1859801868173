"""Metrics (Prometheus text at /metrics, and on each consumer's own listener) and log context."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import httpx
import pytest

from service import kafka, metrics
from service.version import VERSION
from tests.harness import Harness, wait_for
from tests.integration.test_faults import make_events, post_until_accepted, run_normalize
from tests.integration.test_faults_shutdown import free_port, scrape

pytestmark = pytest.mark.integration
SAMPLE = re.compile(r"^([a-z_]+)(\{.*\})? (\S+)$")
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def series(name: str, **labels: str) -> str:
    """A sample's key as `samples` gives it: labels in name order (the exposition's order is
    not part of its meaning)."""
    pairs = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{pairs}}}" if pairs else name


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample line of an exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = dict(LABEL.findall(match[2] or ""))
        out[series(match[1], **labels)] = float(match[3])
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
    text = registry.render()
    assert "# TYPE demo_total counter\n" in text and "# HELP demo_seconds Time taken.\n" in text
    assert 'demo_total{kind="say \\"hi\\"\\\\\\n"} 1.0\n' in text
    assert samples(text) == {
        series("demo_total", kind="plain"): 2,
        series("demo_total", kind='say \\"hi\\"\\\\\\n'): 1,
        series("demo_seconds_bucket", le="0.1"): 1,
        series("demo_seconds_bucket", le="1.0"): 3,
        series("demo_seconds_bucket", le="+Inf"): 4,
        "demo_seconds_sum": 4.05,
        "demo_seconds_count": 4,
        "demo_level": 5,
    }
    assert (counter.value(kind="plain"), histogram.count(), gauge.value()) == (2, 4, 5)
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(other="x")
    with pytest.raises(ValueError, match="registered twice"):
        registry.counter("demo_total", "again")


def test_the_process_exports_build_process_and_gc_metrics() -> None:
    exported = samples(metrics.REGISTRY.render())
    assert exported[series("mailfold_build_info", version=VERSION)] == 1
    assert exported["process_resident_memory_bytes"] > 0
    assert series("python_gc_collections_total", generation="0") in exported
    assert not any(name.endswith("_created") for name in exported)


async def test_service_metrics_count_accepted_and_refused_requests_and_events(
    harness: Harness,
) -> None:
    await harness.start_app()
    acme = await harness.account()

    def key(outcome: str, reason: str) -> str:
        return series("mailfold_requests_total", source="api", outcome=outcome, reason=reason)

    def events(outcome: str, reason: str) -> str:
        return series("mailfold_ingest_events_total", source="api", outcome=outcome, reason=reason)

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

    assert delta(key("accepted", "none")) == 1 and delta(events("accepted", "none")) == 7
    assert delta(key("refused", "bad_request")) == 1
    assert delta(events("refused", "bad_request")) == 2
    assert delta(key("refused", "unauthorized")) == 1
    unknown = {"source": "unknown", "outcome": "refused", "reason": "not_found"}
    assert delta(series("mailfold_requests_total", **unknown))
    assert delta(series("mailfold_produce_seconds_count", outcome="acked")) == 1
    assert after["mailfold_produce_in_flight"] == 0


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
    assert normalized[series("mailfold_normalized_events_total", source="api")] == len(events)
    group, topic = harness.settings.fold_group, harness.settings.events_topic
    lag = {"group": group, "topic": topic, "partition": "0"}
    lagged = await wait_for(
        lambda: scrape(fold_port),
        lambda t: series("mailfold_consumer_lag_records", **lag) in samples(t),
        timeout=20,
    )
    assert series("mailfold_consumer_lag", **lag) in samples(lagged)
    assert samples(folded)["mailfold_fold_batch_records_count"] > 0
    async with httpx.AsyncClient() as client:
        other = await client.get(f"http://127.0.0.1:{fold_port}/nothing")
        health = await client.get(f"http://127.0.0.1:{normalize_port}/healthz")
        ready = await client.get(f"http://127.0.0.1:{normalize_port}/readyz")
    assert other.status_code == 404
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200 and ready.json()["ready"] is True


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


async def test_each_request_is_timed_by_route_template_and_logged_with_its_id(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailfold.access")
    await harness.start_app()
    acme = await harness.account()
    path = "/v1/deliveries/spring/d-404/summary"
    async with harness.client(acme) as client:
        given = await client.get(path, headers={"x-request-id": "rid-route-1"})
        fresh = await client.get("/healthz")
        page = await client.get("/metrics")
    assert given.status_code == 404 and given.headers["x-request-id"] == "rid-route-1"
    assert len(fresh.headers["x-request-id"]) == 32
    route = "/v1/deliveries/{campaignId}/{deliveryId}/summary"
    count = series(
        "mailfold_http_request_duration_seconds_count", method="GET", route=route, status="404"
    )
    assert samples(page.text)[count] >= 1
    assert path not in page.text  # never the raw path
    (line,) = [r for r in caplog.records if getattr(r, "request_id", None) == "rid-route-1"]
    assert (line.method, line.route, line.status) == ("GET", route, 404)  # type: ignore[attr-defined]
    assert line.duration_ms >= 0  # type: ignore[attr-defined]


async def test_the_request_id_travels_from_the_request_to_the_events_and_the_logs(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailfold")
    await harness.start_app()
    await run_normalize(harness)
    acme = await harness.account()
    async with harness.client(acme) as client:
        r = await client.post("/v1/events", json=make_events(2, seed=53),
                              headers={"x-request-id": "rid-travels"})  # fmt: skip
        assert r.status_code == 202 and r.json()["request_id"] == "rid-travels"

    async def events_headers() -> list[dict[str, bytes]]:
        reader = kafka.Reader(harness.settings, harness.settings.events_topic)
        try:
            parts = await reader.start()
            firsts, ends = await reader.beginnings(parts), await reader.ends(parts)
            ranges = {p: (firsts[p], ends[p]) for p in parts}
            return [rec.headers async for batch in reader.scan(ranges) for rec in batch]
        finally:
            await reader.stop()

    headers = await wait_for(events_headers, lambda x: len(x) == 2)
    assert all(h["request-id"] == b"rid-travels" for h in headers)

    # A raw record the normalizer cannot read: its log line names the request it came in.
    producer = kafka.Producer(harness.settings)
    try:
        await producer.send(harness.settings.raw_topic, b"poison",
                            headers=[("request-id", b"rid-poison")])  # fmt: skip
    finally:
        await producer.stop()

    async def dead_letter_logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("dead letter")]

    (letter,) = await wait_for(dead_letter_logged, bool)
    assert letter.__dict__["request_id"] == "rid-poison"


async def test_the_folds_log_line_about_a_record_names_its_request(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailfold")
    await harness.start_pipeline()
    producer = kafka.Producer(harness.settings)
    try:
        await producer.send(harness.settings.events_topic, b"not an event",
                            headers=[("request-id", b"rid-fold")])  # fmt: skip
    finally:
        await producer.stop()

    async def dead_letter_logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("dead letter")]

    (letter,) = await wait_for(dead_letter_logged, bool, timeout=30)
    assert letter.__dict__["request_id"] == "rid-fold"
    assert letter.__dict__["topic"] == harness.settings.events_topic
