"""One delivery to five people, posted through the Event API, and helpers to wait for it."""

from __future__ import annotations

import random
from typing import Any

import httpx

from tests.harness import Harness, wait_for

CAMPAIGN, DELIVERY = "c1", "d1"
BASE = f"/v1/deliveries/{CAMPAIGN}/{DELIVERY}"
JOHN, JANE, BOB, ANN, EVE = (
    "john.doe@example.com",
    "jane.smith@example.com",
    "bob.brown@example.com",
    "ann.onym@example.com",
    "eve.dropped@example.com",
)


def event(kind: str, at: str, email: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "occurred_at": at,
        "campaign_id": CAMPAIGN,
        "delivery_id": DELIVERY,
        "recipient": {"email": email, **extra.pop("recipient", {})},
        **extra,
    }


def sends() -> list[dict[str, Any]]:
    out = []
    for email, version, first, last in [
        (JOHN, "A", "John", "Doe"),
        (JANE, "B", "Jane", "Smith"),
        (BOB, "A", "Bob", "Brown"),
        (ANN, "B", "Ann", "Onym"),
    ]:
        rcpt = {"first_name": first, "surname": last}
        out.append(event("sent", "2025-06-01T12:00:00Z", email, ab_version=version, recipient=rcpt))
    return out


def story() -> list[dict[str, Any]]:
    """Sends, deliveries, opens and clicks human and machine, a hard bounce, a drop, an
    unsubscribe, a spam report and a sale, shuffled: arrival order must not matter."""
    hard = {"class": "hard", "code": "5.1.1", "reason": "no such user"}
    events = [
        *sends(),
        event("dropped", "2025-06-01T12:00:00Z", EVE, bounce={"reason": "unsubscribed"}),
        event("delivered", "2025-06-01T12:58:00Z", JOHN),
        event("delivered", "2025-06-01T12:59:00Z", JANE),
        event("delivered", "2025-06-01T12:59:30Z", ANN),
        event("opened", "2025-06-01T13:00:00Z", JOHN, machine=False, ip="198.51.100.7"),
        event("opened", "2025-06-01T13:05:00Z", JOHN, machine=True, user_agent="Mozilla/5.0"),
        event("clicked", "2025-06-01T13:01:30Z", JOHN, url="https://shop.test/a", machine=False),
        event("clicked", "2025-06-01T13:02:30Z", JOHN, url="https://shop.test/b"),
        event("clicked", "2025-06-01T13:03:30Z", JOHN, url="https://shop.test/a", machine=True),
        event("opened", "2025-06-01T14:22:00Z", JANE),
        event("unsubscribed", "2025-06-01T14:25:00Z", JANE),
        event("bounced", "2025-06-01T12:01:00Z", BOB, bounce=hard),
        event("complained", "2025-06-02T09:00:00Z", ANN),
        event(
            "converted",
            "2025-06-01T15:00:00Z",
            JOHN,
            conversion={"amount": 1287, "currency": "EUR"},
        ),
    ]
    random.Random(7).shuffle(events)
    return events


# posted after the rest: an open that happened late in the evening of the first day
LATE = event("opened", "2025-06-01T23:30:00Z", ANN, machine=False)
TOTAL = len(story()) + 1


async def post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/events", json=events)
    assert response.status_code == 202, response.text


async def folded(h: Harness, total: int) -> None:
    """Wait until `total` distinct events are in the ledger and folded."""
    await wait_for(
        lambda: h.fetch("SELECT count(*) AS n FROM events WHERE delivery_id IS NOT NULL"),
        lambda rows: rows[0]["n"] >= total,
    )
    await wait_for(
        lambda: h.fetch("SELECT coalesce(sum(event_count), 0) AS n FROM recipients"),
        lambda rows: rows[0]["n"] >= total,
    )


async def tell_story(h: Harness, client: httpx.AsyncClient) -> None:
    await post(client, story())
    await folded(h, TOTAL - 1)
    await post(client, [LATE])
    await folded(h, TOTAL)
