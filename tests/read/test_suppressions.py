"""Suppressions: filled by the fold, read as a feed, published to Kafka by the relay."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from consumers import publish
from service import kafka
from tests.harness import Harness, wait_for
from tests.read.story import ANN, BOB, JANE, event, post

pytestmark = pytest.mark.integration

URL = "/v1/suppressions"


async def feed(client: httpx.AsyncClient, since: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(URL, params={"since": since} if since else {})).json()
    return body


async def test_hard_bounces_complaints_and_unsubscribes_become_suppressions(
    told: httpx.AsyncClient,
) -> None:
    body = await feed(told)
    reasons = {s["email"]: s["reason"] for s in body["suppressions"]}
    assert reasons == {BOB: "hard_bounced", ANN: "complained", JANE: "unsubscribed"}
    jane = next(s for s in body["suppressions"] if s["email"] == JANE)
    assert (jane["deliveryId"], jane["reasonAt"]) == ("d1", "2025-06-01T14:25:00+00:00")
    assert (await feed(told, body["cursor"]))["suppressions"] == []


async def test_a_stronger_reason_comes_again_in_the_feed(
    running: Harness, told: httpx.AsyncClient
) -> None:
    cursor = (await feed(told))["cursor"]
    await post(told, [event("complained", "2025-06-05T08:00:00Z", JANE.upper())])
    news = await wait_for(lambda: feed(told, cursor), lambda b: bool(b["suppressions"]))
    (jane,) = news["suppressions"]
    assert (jane["email"], jane["reason"]) == (JANE, "complained")
    assert jane["firstAt"] == "2025-06-01T14:25:00+00:00"  # suppressed since the unsubscribe
    # a weaker or repeated event changes nothing and is not news
    await post(told, [event("unsubscribed", "2025-06-06T08:00:00Z", JANE)])
    await wait_for(
        lambda: running.fetch("SELECT count(*) AS n FROM events WHERE type = 'unsubscribed'"),
        lambda rows: rows[0]["n"] == 2,
    )
    assert (await feed(told, news["cursor"]))["suppressions"] == []


async def test_a_complaint_suppresses_before_its_delivery_is_known(
    running: Harness, told: httpx.AsyncClient
) -> None:
    complaint = {
        "type": "complained",
        "occurred_at": "2025-06-07T10:00:00Z",
        "message_id": "never-seen",
        "recipient": {"email": "zed@example.com"},
    }
    await post(told, [complaint])
    body = await wait_for(
        lambda: feed(told),
        lambda b: any(s["email"] == "zed@example.com" for s in b["suppressions"]),
    )
    zed = next(s for s in body["suppressions"] if s["email"] == "zed@example.com")
    assert (zed["reason"], zed["deliveryId"]) == ("complained", None)


async def test_another_account_sees_none_of_them(running: Harness, told: httpx.AsyncClient) -> None:
    other = await running.account("other")
    async with running.client(other) as client:
        assert (await feed(client))["suppressions"] == []


async def test_the_relay_publishes_each_suppression_keyed_by_account_and_address(
    running: Harness, told: httpx.AsyncClient
) -> None:
    settings = running.settings
    topic = f"{settings.raw_topic}.suppressions"
    stop = asyncio.Event()
    relay = asyncio.create_task(publish.run(settings, stop, topic))
    consumer = kafka.Consumer(settings, topic, f"{settings.fold_group}-check")
    try:
        await wait_for(lambda: running.fetch("SELECT * FROM feed_positions"), bool)
        await consumer.start()
        records: list[kafka.Record] = []

        async def more() -> int:
            records.extend(await consumer.batch(timeout_ms=200))
            return len(records)

        await wait_for(more, lambda n: n >= 3)
    finally:
        stop.set()
        await relay
        await consumer.stop()
    by_key = {r.key: orjson.loads(r.value) for r in records}
    assert set(by_key) == {f"acme:{e}".encode() for e in (ANN, BOB, JANE)}
    assert by_key[f"acme:{BOB}".encode()]["reason"] == "hard_bounced"
    assert by_key[f"acme:{ANN}".encode()]["version"] == 1
