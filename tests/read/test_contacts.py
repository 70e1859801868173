"""A contact's activities and timeline across all its deliveries, by e-mail address, contact id
or client contact id, through the real pipeline; and the activity log's `contact` filter."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import Harness
from tests.read.story import JOHN, TOTAL, folded, post

pytestmark = pytest.mark.integration

DAYS = {"dateFrom": "2025-06-01", "dateTo": "2025-06-30"}
IDS = {"contact_id": "c-42", "client_contact_id": "56738"}
JOHN_IN_D1 = 8  # the story's sent, delivered, two opens, three clicks and a sale


def later(kind: str, at: str, delivery: str, recipient: dict[str, str]) -> dict[str, Any]:
    return {
        "type": kind,
        "occurred_at": at,
        "campaign_id": "c9",
        "delivery_id": delivery,
        "recipient": recipient,
    }


@pytest.fixture
async def contacts(running: Harness, told: httpx.AsyncClient) -> httpx.AsyncClient:
    """John again in d9, now with his contact ids, and c-42 once without an address in d10."""
    await post(
        told,
        [
            later("sent", "2025-06-05T08:00:00Z", "d9", {"email": JOHN, **IDS}),
            later("opened", "2025-06-05T09:00:00Z", "d9", {"email": JOHN}),
            later("sent", "2025-06-06T08:00:00Z", "d10", {"contact_id": "c-42"}),
        ],
    )
    await folded(running, TOTAL + 3)
    return told


async def timeline(client: httpx.AsyncClient, key: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"/v1/contacts/{key}/timeline", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_contact_id_takes_in_every_delivery_of_the_address_that_carries_it(
    contacts: httpx.AsyncClient,
) -> None:
    body = await timeline(contacts, "c-42")
    events = body["events"]
    assert body["contact"] == "c-42" and len(events) == JOHN_IN_D1 + 3
    assert [e["occurredAt"] for e in events] == sorted(e["occurredAt"] for e in events)
    deliveries = [e["deliveryId"] for e in events]
    assert deliveries.count("d1") == JOHN_IN_D1 and deliveries[-3:] == ["d9", "d9", "d10"]
    assert {e["recipientKey"] for e in events} == {JOHN, "c-42"}
    assert body["paging"] == {"start": 0, "count": len(events), "totalCount": len(events)}
    assert events[-1]["campaignId"] == "c9" and events[-1]["type"] == "sent"


async def test_a_client_contact_id_and_an_address_in_any_case_find_the_same_person(
    contacts: httpx.AsyncClient,
) -> None:
    by_client_id = await timeline(contacts, "56738")
    by_address = await timeline(contacts, JOHN.upper())
    assert len(by_client_id["events"]) == len(by_address["events"]) == JOHN_IN_D1 + 2
    assert by_client_id["events"] == by_address["events"]
    first = await timeline(contacts, "c-42", limit="2")
    assert [e["type"] for e in first["events"]] == ["sent", "delivered"]
    assert first["paging"] == {"start": 0, "count": 2, "totalCount": JOHN_IN_D1 + 3}


async def test_an_unknown_contact_is_404(contacts: httpx.AsyncClient) -> None:
    response = await contacts.get("/v1/contacts/nobody@example.com/timeline")
    assert response.status_code == 404
    assert (await contacts.get("/v1/contacts/c-4/timeline")).status_code == 404
    # a key the OpenAPI document forbids names no contact
    assert (await contacts.get("/v1/contacts/.c-42/activities")).status_code == 404


async def test_a_contacts_activities_page_the_log_across_deliveries(
    contacts: httpx.AsyncClient,
) -> None:
    url = "/v1/contacts/c-42/activities"
    body = (await contacts.get(url, params={**DAYS, "limit": "5"})).json()
    assert body["paging"] == {"start": 0, "count": 5, "totalCount": JOHN_IN_D1 + 3}
    sends = (await contacts.get(url, params={**DAYS, "type": "sent"})).json()
    assert [a["deliveryId"] for a in sends["activities"]] == ["d1", "d9", "d10"]
    only_d9 = (await contacts.get(url, params={**DAYS, "deliveryId": "d9"})).json()
    assert only_d9["paging"]["totalCount"] == 2
    assert (await contacts.get(url)).json()["paging"]["totalCount"] == 0  # the last 7 days
    refused = await contacts.get(url, params={"contact": "x"})
    assert refused.status_code == 400 and refused.json()["details"][0]["parameter"] == "contact"


@pytest.mark.parametrize(
    ("contact", "expected"),
    [("c-42", JOHN_IN_D1 + 3), ("56738", JOHN_IN_D1 + 2), (JOHN, JOHN_IN_D1 + 2), ("c-4", 0)],
)
async def test_the_logs_contact_filter_matches_contact_ids_of_addressed_recipients(
    contacts: httpx.AsyncClient, contact: str, expected: int
) -> None:
    body = (await contacts.get("/v1/activities", params={**DAYS, "contact": contact})).json()
    assert body["paging"]["totalCount"] == expected
