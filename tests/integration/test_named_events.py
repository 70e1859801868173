"""Named events (`{name, payload}`, no `type`) through the real service, broker and fold."""

from __future__ import annotations

import pytest

from tests.harness import Harness, wait_for

pytestmark = pytest.mark.integration

LOGIN = {"name": "login_user", "payload": {"email": "test@mail.ru"}}


@pytest.fixture
async def running(harness: Harness) -> Harness:
    await harness.start_app()
    await harness.start_pipeline()
    return harness


async def test_a_named_event_is_echoed_with_201_and_shows_in_the_contacts_activity(
    running: Harness,
) -> None:
    acme = await running.account()
    async with running.client(acme) as client:
        answer = await client.post("/v1/events", json=LOGIN)
        assert answer.status_code == 201, answer.text
        assert answer.json() == LOGIN and answer.headers["x-request-id"]
        log = await wait_for(
            lambda: client.get("/v1/activities", params={"contact": "test@mail.ru"}),
            lambda r: r.status_code == 200 and r.json()["paging"]["totalCount"] == 1,
        )
        timeline = (await client.get("/v1/contacts/Test@Mail.ru/timeline")).json()
    (event,) = timeline["events"]
    assert (event["type"], event["name"], event["payload"]) == (
        "custom",
        "login_user",
        LOGIN["payload"],
    )
    (activity,) = log.json()["activities"]
    assert (activity["type"], activity["name"], activity["email"]) == (
        "custom",
        "login_user",
        "test@mail.ru",
    )
    (row,) = await running.fetch("SELECT delivery_id, message_id, payload FROM events")
    assert (row["delivery_id"], row["message_id"]) == (None, None)
    assert await running.fetch("SELECT 1 FROM recipients") == []


async def test_a_named_event_never_waits_for_attribution(running: Harness) -> None:
    """It has no message to be attributed through: the pending sweep's index leaves it out."""
    acme = await running.account()
    async with running.client(acme) as client:
        answer = await client.post("/v1/events", json=[LOGIN, {**LOGIN, "name": "logout_user"}])
        assert answer.status_code == 202, answer.text
        await wait_for(
            lambda: running.fetch("SELECT count(*) AS n FROM events"),
            lambda rows: rows[0]["n"] == 2,
        )
    pending = await running.fetch(
        "SELECT count(*) AS n FROM events WHERE delivery_id IS NULL AND message_id IS NOT NULL"
    )
    assert pending[0]["n"] == 0
    (index,) = await running.fetch(
        "SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index "
        "WHERE indexrelid = 'events_awaiting_delivery_idx'::regclass"
    )
    assert "message_id IS NOT NULL" in index["d"]


async def test_a_named_event_without_a_contact_is_refused_naming_the_field(
    running: Harness,
) -> None:
    acme = await running.account()
    async with running.client(acme) as client:
        answer = await client.post("/v1/events", json={"name": "login_user", "payload": {}})
    assert answer.status_code == 400
    assert [d["field"] for d in answer.json()["details"]] == ["payload.email"]
