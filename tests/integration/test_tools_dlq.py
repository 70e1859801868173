"""`mailfold dlq`: listing, showing and retrying dead letters, on the real broker and database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import orjson
import pytest

from consumers import dlq, normalize
from service import kafka
from service.errors import MailfoldError, NotFound, ParseError
from tests.harness import Harness, wait_for
from tests.integration.test_faults import (
    batches_of,
    check_against_oracle,
    make_events,
    post_until_accepted,
)

pytestmark = pytest.mark.integration
REASON = "api: cannot read d2 yet (adapter bug)"


async def letters(h: Harness) -> list[dlq.Letter]:
    return await dlq.list_letters(h.settings)


def cli(h: Harness, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailfold", "dlq", *args],
        env=h.env(),
        capture_output=True,
        timeout=60,
    )


async def test_dlq_lists_shows_and_retries_what_was_set_aside(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    derive = normalize.derive_record

    def broken(rec: kafka.Record) -> Any:
        if any(e.get("delivery_id") == "d2" for e in orjson.loads(rec.value)):
            raise ParseError(REASON)
        return derive(rec)

    monkeypatch.setattr(normalize, "derive_record", broken)
    await harness.start_app()
    await harness.start_pipeline()
    acme = await harness.account()
    d1, d2 = make_events(300, seed=41, delivery="d1"), make_events(300, seed=42, delivery="d2")
    producer = kafka.Producer(harness.settings)
    try:
        async with harness.client(acme) as client:
            for batch in batches_of(d1, 50) + batches_of(d2, 100):
                await post_until_accepted(client, batch)
        # A record no fix will make readable (no headers), and a letter from a foreign topic.
        await producer.send(harness.settings.raw_topic, b"[]")
        await producer.send(harness.settings.dlq_topic, b"x", headers=[("dlq-topic", b"elsewhere")])
    finally:
        await producer.stop()
    await check_against_oracle(harness, d1)
    found = await wait_for(lambda: letters(harness), lambda x: len(x) == 5)

    adapter_bugs = [x for x in found if x.reason == REASON]
    assert len(adapter_bugs) == 3
    for letter in adapter_bugs:
        assert (letter.stage, letter.source, letter.account) == ("normalize", "api", acme.account)
        assert letter.topic == harness.settings.raw_topic
        assert letter.partition is not None and letter.offset is not None
        assert letter.received_at is not None and letter.set_aside_at.startswith("20")
    (headless,) = [x for x in found if "KeyError" in x.reason]
    assert headless.source is None

    shown = await dlq.show(harness.settings, adapter_bugs[0].id)
    assert shown["reason"] == REASON and shown["headers"]["source"] == "api"
    assert not any(k.startswith("dlq-") for k in shown["headers"])
    assert orjson.loads(shown["body"])[0]["delivery_id"] == "d2"
    with pytest.raises(NotFound):
        await dlq.show(harness.settings, "0:999999")

    monkeypatch.setattr(normalize, "derive_record", derive)  # the adapter is fixed
    retried = await dlq.retry(harness.settings, [], every=True, reason="adapter bug")
    assert sorted(r["id"] for r in retried) == sorted(x.id for x in adapter_bugs)
    assert {r["to"] for r in retried} == {harness.settings.raw_topic}
    await check_against_oracle(harness, d1 + d2)
    # Each retry is recorded: the letters say so, and --all passes over them unless --again.
    listed = {x.id: x for x in await dlq.list_letters(harness.settings)}
    assert all(listed[x.id].retries == 1 and listed[x.id].retried_at for x in adapter_bugs)
    assert listed[headless.id].retries == 0 and listed[headless.id].retried_at is None
    assert await dlq.retry(harness.settings, [], every=True, reason="adapter bug") == []
    again = await dlq.retry(harness.settings, [], every=True, reason="adapter bug", again=True)
    assert len(again) == 3
    listed = {x.id: x for x in await dlq.list_letters(harness.settings)}
    assert {listed[x.id].retries for x in adapter_bugs} == {2}
    await check_against_oracle(harness, d1 + d2)  # the retried events count once

    # The headless record is retried by id: still unreadable, it is set aside again.
    await dlq.retry(harness.settings, [headless.id])
    await wait_for(lambda: letters(harness), lambda x: len(x) == 6)
    (foreign,) = [x for x in found if x.topic == "elsewhere"]
    with pytest.raises(MailfoldError, match="neither"):
        await dlq.retry(harness.settings, [foreign.id])


async def test_dlq_command_prints_a_table_json_and_refuses_bad_ids(harness: Harness) -> None:
    producer = kafka.Producer(harness.settings)
    try:
        headers = [("source", b"sendgrid"), ("account", b"acme"), ("dlq-reason", b"unknown x")]
        headers += [("dlq-topic", harness.settings.raw_topic.encode()), ("dlq-offset", b"7")]
        await producer.send(harness.settings.dlq_topic, b"{}", headers=headers)
    finally:
        await producer.stop()
    table = await asyncio.to_thread(cli, harness, "list")
    assert table.returncode == 0, table.stderr.decode()
    lines = table.stdout.decode().splitlines()
    assert lines[0].startswith("ID") and "RETRIED" in lines[0] and "REASON" in lines[0]
    assert "sendgrid" in lines[1] and "unknown x" in lines[1] and lines[-1] == "1 dead letter(s)"
    listed = orjson.loads((await asyncio.to_thread(cli, harness, "list", "--json")).stdout)
    assert listed[0]["reason"] == "unknown x" and listed[0]["offset"] == 7
    bad = await asyncio.to_thread(cli, harness, "show", "nonsense")
    assert bad.returncode == 1 and b"PARTITION:OFFSET" in bad.stderr
    neither = await asyncio.to_thread(cli, harness, "retry")
    assert neither.returncode == 1 and b"--all" in neither.stderr


async def test_dlq_list_keeps_the_newest_letters_and_those_since_a_time(harness: Harness) -> None:
    producer = kafka.Producer(harness.settings)
    try:
        for n in range(3):
            await producer.send(harness.settings.dlq_topic, b"{}", headers=[
                ("dlq-reason", f"letter {n}".encode())])  # fmt: skip
    finally:
        await producer.stop()
    newest = await asyncio.to_thread(cli, harness, "list", "--json", "--limit", "2")
    assert [x["reason"] for x in orjson.loads(newest.stdout)] == ["letter 1", "letter 2"]
    future = await asyncio.to_thread(cli, harness, "list", "--json", "--since", "2999-01-01")
    assert orjson.loads(future.stdout) == []
    past = await asyncio.to_thread(cli, harness, "list", "--json", "--since", "2000-01-01T00:00")
    assert len(orjson.loads(past.stdout)) == 3
    bad = await asyncio.to_thread(cli, harness, "list", "--since", "yesterday")
    assert bad.returncode == 1 and b"--since expects an ISO-8601" in bad.stderr
