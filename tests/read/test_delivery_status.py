"""deliveryStatus beside the engagement status, through the real pipeline: the field, the filter,
and which outcome wins when a delivery is followed (or preceded) by a bounce or a deferral."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import Account, Harness
from tests.read.story import folded, post

pytestmark = pytest.mark.integration

BASE = "/v1/deliveries/c2/d2"
HARD = {"class": "hard", "code": "5.1.1", "reason": "no such user"}
SOFT = {"class": "soft", "code": "4.2.2", "reason": "mailbox full"}
# recipient -> its events (type, minute past noon, extra) and the outcome they add up to
CASES: dict[str, tuple[list[tuple[str, int, dict[str, Any]]], str, str]] = {
    "queued@x.test": ([("sent", 0, {})], "pending", "sent"),
    "deferred@x.test": ([("sent", 0, {}), ("deferred", 5, {})], "pending", "deferred"),
    "ok@x.test": ([("sent", 0, {}), ("delivered", 1, {})], "delivered", "delivered"),
    "opened@x.test": ([("sent", 0, {}), ("opened", 9, {})], "delivered", "opened"),
    "gone@x.test": (
        [("sent", 0, {}), ("delivered", 1, {}), ("bounced", 30, {"bounce": HARD})],
        "failed",
        "hard_bounced",
    ),
    "late-soft@x.test": (
        [("sent", 0, {}), ("delivered", 1, {}), ("bounced", 30, {"bounce": SOFT})],
        "delivered",
        "delivered",
    ),
    "retried@x.test": (
        [("sent", 0, {}), ("bounced", 1, {"bounce": SOFT}), ("delivered", 40, {})],
        "delivered",
        "delivered",
    ),
    "late-deferral@x.test": (
        [("sent", 0, {}), ("delivered", 1, {}), ("deferred", 30, {})],
        "delivered",
        "delivered",
    ),
    "full@x.test": ([("sent", 0, {}), ("bounced", 1, {"bounce": SOFT})], "failed", "soft_bounced"),
    "skipped@x.test": ([("dropped", 0, {})], "failed", "dropped"),
}


def events() -> list[dict[str, Any]]:
    return [
        {
            "type": kind,
            "occurred_at": f"2025-07-01T12:{minute:02d}:00Z",
            "campaign_id": "c2",
            "delivery_id": "d2",
            "recipient": {"email": email},
            **extra,
        }
        for email, (steps, _, _) in CASES.items()
        for kind, minute, extra in steps
    ]


@pytest.fixture
async def outcomes(running: Harness, acme: Account) -> Any:
    async with running.client(acme) as client:
        await post(client, events())
        await folded(running, len(events()))
        yield client


async def recipients(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"{BASE}/recipients", params={**params, "sort": "email"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["paging"]["totalCount"] == len(body["recipients"])
    rows: list[dict[str, Any]] = body["recipients"]
    return rows


async def test_every_recipient_has_its_delivery_status_beside_its_status(
    outcomes: httpx.AsyncClient,
) -> None:
    rows = await recipients(outcomes)
    got = {r["email"]: (r["deliveryStatus"], r["status"]) for r in rows}
    assert got == {email: (outcome, status) for email, (_, outcome, status) in CASES.items()}


@pytest.mark.parametrize("wanted", ["pending", "delivered", "failed", "pending,failed"])
async def test_delivery_status_filters_the_list(outcomes: httpx.AsyncClient, wanted: str) -> None:
    rows = await recipients(outcomes, deliveryStatus=wanted)
    expected = sorted(e for e, (_, outcome, _) in CASES.items() if outcome in wanted.split(","))
    assert [r["email"] for r in rows] == expected


async def test_delivery_status_combines_with_the_other_filters_and_the_export(
    outcomes: httpx.AsyncClient,
) -> None:
    rows = await recipients(outcomes, deliveryStatus="delivered", is_bounced="true")
    assert [r["email"] for r in rows] == ["late-soft@x.test", "retried@x.test"]
    export = await outcomes.get(
        f"{BASE}/export", params={"format": "jsonl", "deliveryStatus": "failed", "sort": "email"}
    )
    assert export.status_code == 200
    assert export.text.count('"deliveryStatus":"failed"') == 3


async def test_delivery_statuses_add_up_to_the_summarys_funnel(
    outcomes: httpx.AsyncClient,
) -> None:
    summary = (await outcomes.get(f"{BASE}/summary")).json()
    assert len(await recipients(outcomes, deliveryStatus="delivered")) == summary["delivered"]
    assert len(await recipients(outcomes, deliveryStatus="failed")) == summary["undelivered"]


@pytest.mark.parametrize("value", ["sent", "failed,", "Failed", ""])
async def test_a_bad_delivery_status_is_named(outcomes: httpx.AsyncClient, value: str) -> None:
    response = await outcomes.get(f"{BASE}/recipients", params={"deliveryStatus": value})
    assert response.status_code == 400
    assert response.json()["details"][0]["parameter"] == "deliveryStatus"
