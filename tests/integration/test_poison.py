"""No record stops the fold: what one record's content makes fail goes to the DLQ, what the
database cannot do for anyone is waited out with the batch whole, and what fails without an
explanation is tried a few times and parked. All against the real broker and database.

Refusals `service/ledger.py` cannot predict are made real with a trigger on the ledger that
raises, for marked records, the SQLSTATE of each class (data exception, query_canceled, a
plain raise nobody classified).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from service import kafka, metrics
from service.events import EventType, Recipient, encode
from service.providers import save
from service.webhooks.base import RawRecord, make_event
from tests.harness import Harness, wait_for
from tests.integration.test_faults import dead_letters
from tests.webhooks.contract_test_helpers import signer_of

pytestmark = pytest.mark.integration
T0 = datetime(2025, 6, 1, tzinfo=UTC)

# campaign_id -> what the trigger does with the record. Sequences count attempts outside the
# transactions the failures roll back.
TRIGGER = """
CREATE SEQUENCE cancels;
CREATE SEQUENCE mysteries;
CREATE SEQUENCE once;
CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.campaign_id = 'refused' THEN
        RAISE EXCEPTION 'refused for the test' USING ERRCODE = '22023';
    ELSIF NEW.campaign_id = 'cancelled' AND nextval('cancels') <= 2 THEN
        RAISE EXCEPTION 'canceling statement' USING ERRCODE = '57014';
    ELSIF NEW.campaign_id = 'mystery' THEN
        PERFORM nextval('mysteries');
        RAISE EXCEPTION 'nobody knows' USING ERRCODE = 'P0001';
    ELSIF NEW.campaign_id = 'once' AND nextval('once') <= 1 THEN
        RAISE EXCEPTION 'only the first time' USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison();
"""


def event(account: str, i: int, campaign: str = "good", **extra: Any) -> bytes:
    record = RawRecord(account=account, source="api", body=b"", received_at=T0)
    e = make_event(
        record,
        native_type="sent",
        type=EventType.SENT,
        occurred_at=T0 + timedelta(seconds=i),
        recipient=Recipient(email=f"r{i}@example.com"),
        campaign_id=campaign,
        delivery_id="d1",
        id_discriminator=str(i),
        **extra,
    )
    return encode(e)


def with_fields(data: bytes, **fields: Any) -> bytes:
    """A record as some other producer could write it to mailfold.events."""
    return orjson.dumps({**orjson.loads(data), **fields})


async def produce(harness: Harness, values: list[bytes]) -> None:
    producer = kafka.Producer(harness.settings)
    try:
        await producer.send_many([(harness.settings.events_topic, b"k", v, []) for v in values])
    finally:
        await producer.stop()


async def campaigns(harness: Harness) -> dict[str, int]:
    rows = await harness.fetch("SELECT campaign_id, count(*) AS n FROM events GROUP BY 1")
    return {r["campaign_id"]: r["n"] for r in rows}


async def test_a_refused_record_is_set_aside_and_the_rest_of_its_batch_folds(
    harness: Harness,
) -> None:
    pool = await harness.pool()
    await pool.execute(TRIGGER)
    parked_before = metrics.PARKED.value(stage="fold")
    retries_before = metrics.FOLD_RETRIES.value()
    values = [event("acme", i) for i in range(40)]
    values[7] = event("acme", 7, "refused")
    values[19] = event("acme", 19, "cancelled")
    values[23] = event("acme", 23, "mystery")
    values[31] = event("acme", 31, "once")
    # Unstorable in ways the ledger's limits know: refused before COPY.
    values[3] = with_fields(values[3], conversion={"amount": "1e-20000", "currency": "EUR"})
    # Deeper than orjson writes (254), as another producer's JSON library can.
    values[11] = values[11].replace(b'"payload":null', b'"payload":' + b"[" * 300 + b"]" * 300)
    values[15] = with_fields(values[15], campaign_id={"not": "text"})
    values[27] = with_fields(values[27], url="x" * 5000)
    await produce(harness, values)  # one batch: the fold reads them together
    await harness.start_pipeline()

    found = await wait_for(lambda: campaigns(harness), lambda c: c.get("good", 0) == 32, 60)
    assert found == {"good": 32, "cancelled": 1, "once": 1}
    letters = await dead_letters(harness.settings, 6)
    reasons = {int(r.headers["dlq-offset"]): r.headers["dlq-reason"].decode() for r in letters}
    assert sorted(reasons) == [3, 7, 11, 15, 23, 27]
    assert "amount: must have at most 4 decimal places" in reasons[3]
    assert "refused by the ledger" in reasons[7] and "22023" not in reasons[7]
    assert "payload: must nest at most 32 levels deep" in reasons[11]
    assert "campaign_id: must be a string" in reasons[15]
    assert reasons[23].startswith("parked after 3 identical failures")
    assert "nobody knows" in reasons[23]
    assert "url: must be at most 2048 characters" in reasons[27]
    assert all(r.headers["dlq-stage"] == b"fold" for r in letters)
    assert metrics.PARKED.value(stage="fold") - parked_before == 1
    # query_canceled was waited out with the batch whole: retried, not split into dead letters.
    assert metrics.FOLD_RETRIES.value() - retries_before >= 2
    (mysteries,) = await harness.fetch("SELECT last_value FROM mysteries")
    assert mysteries["last_value"] >= 3
    offsets = await harness.fetch("SELECT sum(next_offset) AS n FROM consumer_offsets")
    assert offsets[0]["n"] == 40


async def test_a_database_refusing_every_batch_is_waited_out_and_reported_stuck(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure that recurs without any record (here: the ledger's table is gone) is not split
    into dead letters; the consumer waits, /readyz says stuck, and it moves once fixed."""
    monkeypatch.setattr(metrics, "STUCK_AFTER_S", 0.5)
    pool = await harness.pool()
    await pool.execute("ALTER TABLE events RENAME TO events_away")
    await produce(harness, [event("acme", i) for i in range(10)])
    await harness.start_pipeline()
    report = await wait_for(
        lambda: ready_report(), lambda r: harness.settings.fold_group in r["stuck_seconds"], 30
    )
    assert report["ready"] is False
    await pool.execute("ALTER TABLE events_away RENAME TO events")
    assert await wait_for(lambda: campaigns(harness), lambda c: c.get("good") == 10, 60)
    await wait_for(lambda: ready_report(), lambda r: r["ready"] is True, 30)
    reader = kafka.Reader(harness.settings, harness.settings.dlq_topic)
    await reader.start()
    try:
        assert await reader.batch(500) == []
    finally:
        await reader.stop()


async def ready_report() -> dict[str, Any]:
    return metrics.readiness()


async def test_an_unreadable_provider_time_is_folded_when_received_and_still_suppresses(
    harness: Harness,
) -> None:
    """inwise's own hard bounce sample is dated in month 15: it is folded, dated when received,
    flagged in the ledger, and the address is suppressed."""
    signer = signer_of("inwise")
    await harness.account("acme")
    pool = await harness.pool()
    async with pool.acquire() as conn:
        await save(conn, harness.settings.secret_key, "acme", "inwise", options={},
                   secret=signer.credentials("acme").secrets[0])  # fmt: skip
    await harness.start_app()
    await harness.start_pipeline()
    bounce = {"id": 190, "event": "hard_bounce", "created_at": "2022-15-16 03:11:00",
              "email": "gone@example.com", "transaction_Id": "74842407043041bcb6f3d246f2a3e006",
              "additional_data": {"campaign_id": "c1", "delivery_id": "d1"}}  # fmt: skip
    body = orjson.dumps(bounce)
    path = "/webhooks/inwise/acme"
    before = datetime.now(UTC)
    async with harness.client() as client:
        for _ in range(2):  # a retry is the same event
            request = signer.sign(body, harness.base_url + path, before)
            r = await client.post(path, content=body, headers=dict(request.headers))
            assert r.status_code == 200, r.text
    rows = await wait_for(
        lambda: harness.fetch("SELECT * FROM suppressions"), lambda rows: len(rows) == 1
    )
    assert (rows[0]["email"], rows[0]["reason"]) == ("gone@example.com", "hard_bounce")
    (event,) = await harness.fetch(
        "SELECT occurred_at, received_at, occurred_at_estimated FROM events"
    )
    assert event["occurred_at_estimated"] is True
    assert event["occurred_at"] == event["received_at"] and event["occurred_at"] >= before
    (recipient,) = await harness.fetch("SELECT bounce_class FROM recipients")
    assert recipient["bounce_class"] == "hard"
