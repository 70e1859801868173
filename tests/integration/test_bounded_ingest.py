"""Ingest's bounds on the real service, broker and database: the caller's address behind trusted
proxies, body reads capped in number and time, and records larger than their topic takes."""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from service import kafka, providers
from service.errors import TooLarge
from service.settings import Settings
from tests.harness import Account, Harness, wait_for
from tests.integration.test_faults import make_events
from tests.integration.test_faults_ingest import service_of

pytestmark = pytest.mark.integration

INWISE = Path(__file__).parent.parent / "webhooks" / "fixtures" / "inwise"


async def test_allow_lists_judge_the_caller_behind_a_trusted_proxy(harness: Harness) -> None:
    harness.settings = replace(harness.settings, trusted_proxies="127.0.0.1, ::1")
    await harness.start_app()
    acme = await harness.account(allowed_ips=["203.0.113.0/24"])
    pool = await harness.pool()
    async with pool.acquire() as conn:
        await providers.save(
            conn,
            harness.settings.secret_key,
            acme.account,
            "inwise",
            options={"allowed_ips": ["203.0.113.0/24"]},
            secret="inwise-token",
        )
    form = (INWISE / "automation_email_opened.form").read_bytes()
    url = f"/webhooks/inwise/{acme.account}?token=inwise-token"
    form_type = {"content-type": "application/x-www-form-urlencoded"}
    async with harness.client(acme) as client:

        async def answers(forwarded: str) -> tuple[int, int]:
            xff = {"x-forwarded-for": forwarded}
            api = await client.post("/v1/events", json=make_events(2, seed=1), headers=xff)
            hook = await client.post(url, content=form, headers={**xff, **form_type})
            return api.status_code, hook.status_code

        assert await answers("203.0.113.7") == (202, 200)
        # The proxy appended the caller it saw; what the caller wrote left of it counts for naught.
        assert await answers("198.51.100.1, 203.0.113.7") == (202, 200)
        assert await answers("203.0.113.7, 198.51.100.1") == (403, 403)
        assert await answers("203.0.113.7, not-an-address") == (403, 403)


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(harness: Harness) -> None:
    await harness.start_app()
    acme = await harness.account(allowed_ips=["203.0.113.0/24"])
    async with harness.client(acme) as client:
        r = await client.post(
            "/v1/events", json=make_events(2, seed=2), headers={"x-forwarded-for": "203.0.113.7"}
        )
    assert r.status_code == 403, r.text


async def open_body(
    harness: Harness, acme: Account, length: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Start a POST to /v1/events declaring `length` bytes and send only its first byte."""
    host, port = harness.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    credentials = base64.b64encode(f"{acme.login}:{acme.secret}".encode()).decode()
    writer.write(
        (
            f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {credentials}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n["
        ).encode()
    )
    await writer.drain()
    return reader, writer


async def status_of(reader: asyncio.StreamReader, timeout: float) -> int:
    line = await asyncio.wait_for(reader.readline(), timeout)
    return int(line.split()[1])


async def test_a_body_that_trickles_in_gets_408(harness: Harness) -> None:
    harness.settings = replace(harness.settings, body_timeout_s=0.5)
    await harness.start_app()
    acme = await harness.account()
    reader, writer = await open_body(harness, acme, 1000)
    try:
        started = asyncio.get_running_loop().time()
        assert await status_of(reader, 10) == 408
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        writer.close()
    async with harness.client(acme) as client:
        assert (await client.post("/v1/events", json=make_events(2, seed=3))).status_code == 202


async def test_body_reads_beyond_the_cap_get_503_with_retry_after(harness: Harness) -> None:
    harness.settings = replace(harness.settings, max_body_reads=2, retry_after_s=4)
    await harness.start_app()
    acme = await harness.account()
    held = [(await open_body(harness, acme, 1000))[1] for _ in range(2)]
    try:
        async with harness.client(acme) as client:
            for _ in range(20):  # until both held reads have started
                r = await client.post("/v1/events", json=make_events(2, seed=4))
                if r.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "4"
            assert r.json()["message"] == "too many request bodies being read"
            for writer in held:
                writer.close()
            for _ in range(100):  # the slots come back once the held connections are gone
                r = await client.post("/v1/events", json=make_events(2, seed=5))
                if r.status_code == 202:
                    break
                await asyncio.sleep(0.05)
            assert r.status_code == 202, r.text
    finally:
        for writer in held:
            writer.close()


async def create_topic(settings: Settings, name: str, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)}
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=config)])
    finally:
        await admin.close()


async def set_topic_limit(settings: Settings, name: str, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, config)])
    finally:
        await admin.close()


async def test_a_record_its_topic_refuses_gets_413_and_the_producer_serves_on(
    harness: Harness,
) -> None:
    topic = f"t{uuid.uuid4().hex[:10]}.small-raw"
    await create_topic(harness.settings, topic, 100_000)
    bootstrap = harness.settings.kafka_bootstrap
    await wait_for(lambda: kafka.topic_limit(bootstrap, topic, 5), lambda n: n == 100_000)
    harness.settings = replace(harness.settings, raw_topic=topic)
    await harness.start_app()
    acme = await harness.account()
    big = make_events(1000, seed=6)
    assert len(orjson.dumps(big)) > 100_000
    async with harness.client(acme) as client:
        assert (await client.post("/v1/events", json=make_events(2, seed=7))).status_code == 202
        svc = service_of(harness)
        assert svc.producer is not None
        before = svc.producer._producer
        r = await client.post("/v1/events", json=big)
        assert r.status_code == 413, r.text
        assert "exceeds the 100000 bytes" in r.json()["message"]
        for seed in range(8, 12):
            assert (
                await client.post("/v1/events", json=make_events(2, seed=seed))
            ).status_code == 202
        assert svc.producer._producer is before


async def test_a_record_over_max_record_bytes_is_too_large_and_the_next_is_acked(
    settings: Settings,
) -> None:
    settings = replace(
        settings, max_record_bytes=200_000, max_body_bytes=100_000, max_webhook_body_bytes=100_000
    )
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        live = producer._producer
        with pytest.raises(TooLarge):
            await producer.send(settings.raw_topic, b"x" * 150_000, headers=[("h", b"y" * 60_000)])
        await producer.send(settings.raw_topic, b"small")
        assert producer._producer is live
    finally:
        await producer.stop()


async def test_a_topic_limit_lowered_under_the_producer_gets_413_then_serves_on(
    settings: Settings,
) -> None:
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        await producer.send(settings.raw_topic, b"first")  # learns the topic's limit: 4 MiB
        await set_topic_limit(settings, settings.raw_topic, 100_000)
        bootstrap, topic = settings.kafka_bootstrap, settings.raw_topic
        await wait_for(lambda: kafka.topic_limit(bootstrap, topic, 5), lambda n: n == 100_000)
        with pytest.raises(TooLarge, match="broker refused"):
            await producer.send(settings.raw_topic, b"x" * 150_000)
        for _ in range(5):
            await producer.send(settings.raw_topic, b"small")
        with pytest.raises(TooLarge, match="exceeds the 100000 bytes"):
            await producer.send(settings.raw_topic, b"x" * 150_000)
    finally:
        await producer.stop()
