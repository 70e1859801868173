"""Faults on the real broker and database: nothing that got a 2xx is lost or counted twice.

Every test ends with the oracle (tests/oracle.py) comparing recipient rows, delivery counters and
link counts field by field. The tests that stop a service stop the one these tests are pointed
at (MAILFOLD_KAFKA_PORT / MAILFOLD_PG_PORT / MAILFOLD_STATE_DIR), so run them on an instance of
your own when others share the default one.
"""

from __future__ import annotations

import asyncio
import base64
import random
import signal
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from consumers import fold, normalize
from service import kafka, metrics
from service.providers import save
from service.settings import Settings
from tests import oracle
from tests.harness import Harness, wait_for
from tests.webhooks.contract_sendgrid import public_key_text, sign_request

pytestmark = pytest.mark.integration
SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services"
# Weights of a realistic mix: most mail is sent and delivered, fewer opened, few clicked.
T0 = datetime(2025, 6, 1, tzinfo=UTC)
KINDS = {
    "sent": 24,
    "delivered": 22,
    "opened": 20,
    "clicked": 12,
    "deferred": 3,
    "bounced": 5,
    "unsubscribed": 3,
    "complained": 1,
    "converted": 4,
}


def services(action: str, which: str) -> None:
    """scripts/services start|stop kafka|postgres, for the instance the tests use."""
    subprocess.run([str(SERVICES), action, which], check=True, capture_output=True)


def make_events(n: int, seed: int, delivery: str = "d1", people: int = 40) -> list[dict[str, Any]]:
    """`n` Event API events of a realistic mix over `people` recipients of one delivery.

    Some opens name only the message, to be attributed through the `sent` event's message id.
    Event times differ within and across seeds, so any two events here are distinct.
    """
    rnd = random.Random(seed)
    kinds, weights = list(KINDS), list(KINDS.values())
    out = []
    for i in range(n):
        kind = rnd.choices(kinds, weights)[0]
        who = rnd.randrange(people)
        e: dict[str, Any] = {
            "type": kind,
            "occurred_at": (T0 + timedelta(seconds=seed * 200_000 + i * 37 + rnd.randrange(30)))
            .isoformat()
            .replace("+00:00", "Z"),
            "campaign_id": "c1",
            "delivery_id": delivery,
            "message_id": f"m-{delivery}-{who}",
            "recipient": {"email": f"r{who}@example.com"},
        }
        if kind == "opened":
            e["machine"] = rnd.choice([True, False, False, None])
            if rnd.random() < 0.1:
                del e["delivery_id"]
        elif kind == "clicked":
            e["url"] = f"https://shop.test/{rnd.randrange(5)}"
            e["machine"] = rnd.random() < 0.2
        elif kind == "bounced":
            e["bounce"] = {"class": rnd.choice(["hard", "soft"]), "code": "5.1.1"}
        elif kind == "converted":
            e["conversion"] = {"amount": f"{rnd.randrange(1, 500)}.{rnd.randrange(100):02d}"}
        out.append(e)
    return out


def batches_of(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def fetch(h: Harness, sql: str, *args: Any) -> list[Any]:
    """`h.fetch`, riding out the stale connections a PostgreSQL restart leaves in the pool."""
    for _ in range(50):
        try:
            return await h.fetch(sql, *args)
        except fold.RETRYABLE:
            await asyncio.sleep(0.2)
    return await h.fetch(sql, *args)


async def ledger_count(h: Harness) -> int:
    rows = await fetch(h, "SELECT count(*) AS n FROM events")
    return int(rows[0]["n"])


async def check_against_oracle(
    h: Harness, accepted: list[dict[str, Any]], timeout: float = 60
) -> None:
    """Wait until recipients, delivery counters and link counts equal the oracle's."""
    expected = oracle.expect(accepted)

    async def diffs() -> dict[str, Any]:
        return oracle.differences(expected, await oracle.observe(lambda sql: fetch(h, sql)))

    try:
        await wait_for(diffs, lambda d: not d, timeout=timeout)
    except AssertionError:
        raise AssertionError(oracle.summary(await diffs())) from None
    assert expected.recipients and expected.deliveries  # never a vacuous comparison


async def assert_consistent(h: Harness) -> None:
    """Every committed fold is whole: ledger, recipient rows and counters agree with each other."""
    (row,) = await fetch(
        h,
        """
        SELECT (SELECT count(*) FROM events WHERE delivery_id IS NOT NULL) AS ledger,
               (SELECT coalesce(sum(event_count), 0) FROM recipients) AS recipients,
               (SELECT coalesce(sum(event_count), 0) FROM delivery_stats) AS stats,
               (SELECT count(*) FROM events
                 WHERE delivery_id IS NOT NULL AND type = 'clicked' AND url IS NOT NULL) AS clicks,
               (SELECT coalesce(sum(click_count), 0) FROM link_stats) AS links
        """,
    )
    assert row["ledger"] == row["recipients"] == row["stats"], dict(row)
    assert row["clicks"] == row["links"], dict(row)


async def fold_caught_up(h: Harness, at_least: int) -> None:
    """Wait until mailfold.events holds `at_least` records and the fold stored offsets past all."""

    async def positions() -> tuple[int, int]:
        reader = kafka.Reader(h.settings, h.settings.events_topic)
        try:
            end = sum((await reader.ends(await reader.start())).values())
        finally:
            await reader.stop()
        rows = await fetch(
            h,
            "SELECT coalesce(sum(next_offset), 0) AS n FROM consumer_offsets WHERE group_id = $1",
            h.settings.fold_group,
        )
        return end, int(rows[0]["n"])

    await wait_for(positions, lambda p: p[0] >= at_least and p[1] == p[0], timeout=90)


async def post_until_accepted(
    client: httpx.AsyncClient, body: Any, url: str = "/v1/events", **kwargs: Any
) -> httpx.Response:
    """Post as a provider does: retry after a 5xx or a dropped connection, never after a 4xx."""
    while True:
        try:
            r = await client.post(url, json=body, **kwargs)
        except httpx.TransportError:
            await asyncio.sleep(0.2)
            continue
        if r.status_code < 300:
            return r
        assert r.status_code >= 500, f"{r.status_code}: {r.text}"
        await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 0.5))


class Feeder:
    """Posts batches one after another in the background, each until it is accepted, `pace`
    seconds apart, until they are all posted or it is halted."""

    def __init__(
        self, client: httpx.AsyncClient, batches: list[list[dict[str, Any]]], pace: float = 0
    ) -> None:
        self.client = client
        self.batches = batches
        self.pace = pace
        self.halted = False
        self.accepted: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        for batch in self.batches:
            if self.halted:
                return
            await post_until_accepted(self.client, batch)
            self.accepted.extend(batch)
            await asyncio.sleep(self.pace)

    async def done(self, timeout: float = 120) -> list[dict[str, Any]]:
        await asyncio.wait_for(self.task, timeout)
        return self.accepted


async def run_normalize(h: Harness) -> None:
    """The normalize consumer as a task of the test's loop (stopped by `h.close`)."""
    h._run(lambda stop: normalize.run(h.settings, stop))


def fold_task(h: Harness) -> tuple[fold.Fold, asyncio.Event, asyncio.Task[None]]:
    """A fold consumer as a task with its own stop event, so a test can stop just this one
    (`h.close` stops it too)."""
    consumer = fold.Fold(h.settings)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    h._stops.append(stop)
    h._tasks.append(task)
    return consumer, stop, task


async def test_fold_killed_mid_stream_and_restarted_counts_exactly(harness: Harness) -> None:
    harness.settings = replace(harness.settings, fold_batch_size=50)
    await harness.start_app()
    await run_normalize(harness)
    acme = await harness.account()
    events = make_events(3000, seed=1)
    process = harness.spawn("fold")
    async with harness.client(acme) as client:
        for batch in batches_of(events, 100):
            await post_until_accepted(client, batch)
    await wait_for(lambda: ledger_count(harness), lambda n: n > 200)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    harness.spawn("fold")
    await check_against_oracle(harness, events)
    await assert_consistent(harness)


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
        services("stop", "kafka")
        try:
            for batch in batches[1:4]:
                r = await client.post("/v1/events", json=batch)
                assert r.status_code == 503, r.text
                assert int(r.headers["retry-after"]) > 0
                assert "broker" in r.json()["message"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["kafka"] != "ok"
        finally:
            services("start", "kafka")
        # The service recovers by itself: a sender that retries what got a 503 gets it in.
        for batch in batches[1:]:
            r = await wait_for(
                lambda b=batch: client.post("/v1/events", json=b),
                lambda r: r.status_code != 503,
                timeout=90,
            )
            assert r.status_code == 202, r.text
    await check_against_oracle(harness, [e for batch in batches for e in batch])


async def test_fold_consumer_leaving_and_rejoining_the_group_mid_stream_counts_exactly(
    harness: Harness,
) -> None:
    harness.settings = replace(harness.settings, fold_batch_size=40)
    await harness.start_app()
    await run_normalize(harness)
    first, stop_first, first_task = fold_task(harness)
    second, stop_second, second_task = fold_task(harness)
    acme = await harness.account()
    # Posted at a steady pace, so records keep arriving through every change of the group.
    batches = batches_of(make_events(9000, seed=3, people=80), 30)

    async def folded(f: fold.Fold) -> int:
        return f.folded

    async with harness.client(acme) as client:
        feeder = Feeder(client, batches, pace=0.05)
        # Both members of the group get partitions and fold ...
        await wait_for(lambda: folded(first), lambda n: n > 0)
        await wait_for(lambda: folded(second), lambda n: n > 0)
        # ... then one leaves mid-stream: its partitions move to the other ...
        stop_second.set()
        await asyncio.wait_for(second_task, 30)
        # ... and a new member joins: the group splits the partitions again.
        rejoined, stop_rejoined, rejoined_task = fold_task(harness)
        await wait_for(lambda: folded(rejoined), lambda n: n > 0)
        feeder.halted = True
        accepted = await feeder.done()
        assert len(accepted) < 9000, "the feed ran out before the group changed twice"
        await check_against_oracle(harness, accepted)
    stop_first.set()
    stop_rejoined.set()
    await asyncio.gather(first_task, rejoined_task)
    await assert_consistent(harness)


async def test_postgres_stopped_while_folding_waits_and_resumes_without_half_commits(
    harness: Harness,
) -> None:
    harness.settings = replace(harness.settings, fold_batch_size=30)
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    events = make_events(3000, seed=4)
    retries = metrics.FOLD_RETRIES.value()
    async with harness.client(acme) as client:
        feeder = Feeder(client, batches_of(events, 30))
        await wait_for(lambda: ledger_count(harness), lambda n: n > 300)
        services("stop", "postgres")
        try:
            # The broker still takes what is posted (within the credentials cache) while the
            # fold retries its batch against a database that is not there.
            await asyncio.sleep(3)
        finally:
            services("start", "postgres")
        accepted = await feeder.done()
    assert metrics.FOLD_RETRIES.value() > retries  # the outage did hit a fold transaction
    await check_against_oracle(harness, accepted)
    await assert_consistent(harness)


async def test_normalize_killed_mid_stream_and_restarted_counts_exactly(harness: Harness) -> None:
    await harness.start_app()
    harness._run(lambda stop: fold.Fold(harness.settings).run(stop))
    acme = await harness.account()
    events = make_events(3000, seed=5)
    process = harness.spawn("normalize")
    async with harness.client(acme) as client:
        feeder = Feeder(client, batches_of(events, 10))
        await wait_for(lambda: ledger_count(harness), lambda n: n > 400)
        process.send_signal(signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
        # Records keep landing on mailfold.raw meanwhile; the restarted consumer re-reads the
        # batch it had not committed and its events, having the same ids, fold once.
        await asyncio.sleep(1)
        harness.spawn("normalize")
        accepted = await feeder.done()
    await check_against_oracle(harness, accepted)
    await assert_consistent(harness)


async def dead_letters(settings: Settings, expected: int) -> list[kafka.Record]:
    """Read the dead-letter topic until it holds `expected` records."""
    reader = kafka.Reader(settings, settings.dlq_topic)
    await reader.start()
    found: list[kafka.Record] = []
    try:
        deadline = time.monotonic() + 60
        while len(found) < expected and time.monotonic() < deadline:
            found += await reader.batch(500)
    finally:
        await reader.stop()
    return found


POISON: list[tuple[str, bytes, list[tuple[str, bytes]], str]] = [
    # (what, value, headers, a piece of the reason)
    ("undecodable body", b"\xff\xfe\x00 not json", [], "body is not JSON"),
    ("no headers at all", b'{"type": "sent"}', None, "unreadable raw record: KeyError('account')"),
    ("undecodable header", b"[]", [("account", b"\xff\xfe")], "UnicodeDecodeError"),
    ("adapter refuses", b'[{"event": "bogus"}]', [("source", b"sendgrid")], "unknown event"),
    ("no adapter", b"{}", [("source", b"nosuch")], "no adapter for source 'nosuch'"),
]


def raw_headers(headers: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    if headers is None:
        return []
    base = {"source": b"api", "account": b"acme", "received-at": b"2025-06-01T00:00:00Z"}
    base.update(dict(headers))
    return list(base.items())


async def test_poison_records_go_to_the_dlq_with_their_reason_and_the_rest_flows_on(
    harness: Harness,
) -> None:
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    producer = kafka.Producer(harness.settings)
    events = make_events(600, seed=6)
    half = len(events) // 2
    try:
        async with harness.client(acme) as client:
            for batch in batches_of(events[:half], 30):
                await post_until_accepted(client, batch)
            for _, value, headers, _ in POISON:
                await producer.send(harness.settings.raw_topic, value, headers=raw_headers(headers))
            # An event the fold cannot read, on mailfold.events itself.
            await producer.send(harness.settings.events_topic, b'{"schema_version": 1}', key=b"k")
            for batch in batches_of(events[half:], 30):
                await post_until_accepted(client, batch)
    finally:
        await producer.stop()
    await check_against_oracle(harness, events)
    letters = await dead_letters(harness.settings, len(POISON) + 1)
    assert len(letters) == len(POISON) + 1
    reasons = [r.headers["dlq-reason"].decode() for r in letters]
    for what, value, _, reason in POISON:
        (letter,) = [r for r in letters if r.value == value]
        assert reason in letter.headers["dlq-reason"].decode(), (what, reasons)
        assert letter.headers["dlq-topic"] == harness.settings.raw_topic.encode()
        assert letter.headers["dlq-stage"] == b"normalize"
        assert int(letter.headers["dlq-offset"]) >= 0
    (from_fold,) = [r for r in letters if r.headers["dlq-stage"] == b"fold"]
    assert from_fold.headers["dlq-topic"] == harness.settings.events_topic.encode()
    assert "undecodable event" in from_fold.headers["dlq-reason"].decode()


def sendgrid_events(n: int, seed: int) -> list[dict[str, Any]]:
    """SendGrid webhook events with delivery metadata in custom args (flattened), as sent."""
    rnd = random.Random(seed)
    names = ["processed", "delivered", "open", "open", "click", "bounce"]
    out = []
    for i in range(n):
        name, who = rnd.choice(names), rnd.randrange(30)
        item: dict[str, Any] = {
            "email": f"sg{who}@example.com",
            "timestamp": 1748779200 + i * 7 + rnd.randrange(5),
            "event": name,
            "sg_event_id": base64.b64encode(rnd.randbytes(16)).decode(),
            "sg_message_id": f"sgm{who}.filter0001.1.0",
            "campaign_id": "c1",
            "delivery_id": "sg1",
        }
        if name == "open":
            item["sg_machine_open"] = rnd.random() < 0.3
        if name == "click":
            item["url"] = f"https://shop.test/sg/{rnd.randrange(4)}"
        if name == "bounce":
            item["type"] = rnd.choice(["bounce", "blocked"])
        out.append(item)
    return out


SENDGRID_TYPES = {
    "processed": "sent",
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
}


def as_oracle_event(item: dict[str, Any]) -> dict[str, Any]:
    """A SendGrid event described for the oracle (the adapter's mapping, written out)."""
    kind = SENDGRID_TYPES[item["event"]]
    e: dict[str, Any] = {
        "source": "sendgrid",
        "native": item["event"],
        "type": kind,
        "occurred_at": datetime.fromtimestamp(item["timestamp"], UTC).isoformat(),
        "delivery_id": item["delivery_id"],
        "message_id": item["sg_message_id"].split(".")[0],
        "recipient": {"email": item["email"]},
        "url": item.get("url"),
        "machine": item.get("sg_machine_open"),
    }
    if kind == "bounced":
        e["bounce"] = {"class": "hard" if item["type"] == "bounce" else "soft"}
        e["discriminator"] = item["type"]
    return e


async def test_provider_retries_of_acknowledged_requests_count_once(harness: Harness) -> None:
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    key = ec.generate_private_key(ec.SECP256R1())
    pool = await harness.pool()
    async with pool.acquire() as conn:
        await save(conn, harness.settings.secret_key, acme.account, "sendgrid",
                   options={}, secret=public_key_text(key))  # fmt: skip
    api_batches = batches_of(make_events(1200, seed=7), 40)
    sg_batches = batches_of(sendgrid_events(600, seed=7), 50)
    url = f"/webhooks/sendgrid/{acme.account}"

    async def post_sendgrid(client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        # A retry is signed afresh and SendGrid gives each event a new sg_event_id.
        body = orjson.dumps([{**e, "sg_event_id": f"retry-{random.random()}"} for e in batch])
        signed = sign_request(key, body, harness.base_url + url, datetime.now(UTC))
        r = await client.post(url, content=body, headers=dict(signed.headers))
        assert r.status_code == 200, r.text

    async with harness.client(acme) as client:
        for batch in api_batches:
            await post_until_accepted(client, batch)
        for batch in sg_batches:
            await post_sendgrid(client, batch)
        accepted = [e for b in api_batches for e in b]
        accepted += [as_oracle_event(e) for b in sg_batches for e in b]
        await check_against_oracle(harness, accepted)
        distinct = await ledger_count(harness)
        # Every request again, some three times, in another order: all acknowledged again.
        retries = [("api", b) for b in api_batches] + [("sg", b) for b in sg_batches]
        retries += random.Random(7).sample(retries, len(retries) // 3)
        random.Random(8).shuffle(retries)
        for kind, batch in retries:
            if kind == "api":
                await post_until_accepted(client, batch)
            else:
                await post_sendgrid(client, batch)
    # Every request reached mailfold.events at least twice; the fold has read all of it.
    await fold_caught_up(harness, at_least=2 * len(accepted))
    await check_against_oracle(harness, accepted)
    assert await ledger_count(harness) == distinct == len(oracle.distinct(accepted))


async def test_a_connection_left_mid_statement_is_replaced_and_the_batch_retried(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen under faults: a connection whose protocol is still busy with an earlier statement
    # refuses the next one with InternalClientError. The fold drops it and retries the batch.
    real, used = fold.fold_rows, []

    async def once_refused(conn: Any, *args: Any) -> int:
        used.append(conn)
        if len(used) == 1:
            raise asyncpg.InternalClientError("cannot switch to state 15; another operation (2)")
        return await real(conn, *args)

    monkeypatch.setattr(fold, "fold_rows", once_refused)
    retries = metrics.FOLD_RETRIES.value()
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    events = make_events(300, seed=13)
    async with harness.client(acme) as client:
        for batch in batches_of(events, 50):
            await post_until_accepted(client, batch)
    await check_against_oracle(harness, events)
    assert used[0] is not used[-1] and metrics.FOLD_RETRIES.value() > retries
