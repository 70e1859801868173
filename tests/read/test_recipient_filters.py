"""Seed 004's flags both ways and the exact email, contactId and clientContactId filters on every
recipient list, through the real pipeline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import Harness
from tests.read.story import ANN, BASE, BOB, EVE, JANE, JOHN, TOTAL, event, folded, post

pytestmark = pytest.mark.integration

KIM = "kim.lee@example.com"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"is_sent": "true"}, [ANN, BOB, JANE, JOHN]),
        ({"is_sent": "false"}, [EVE]),
        ({"is_delivered": "true"}, [ANN, JANE, JOHN]),
        ({"is_delivered": "false"}, [BOB, EVE]),
        ({"is_failed": "true"}, [BOB, EVE]),
        ({"is_failed": "false"}, [ANN, JANE, JOHN]),
        ({"is_skipped": "true"}, [EVE]),
        ({"is_skipped": "false"}, [ANN, BOB, JANE, JOHN]),
        ({"is_failed": "true", "is_skipped": "false"}, [BOB]),
        ({"is_sent": "true", "is_opened": "false"}, [BOB]),
    ],
)
async def test_seed_004s_flags_work_both_ways(
    told: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    body = (await told.get(f"{BASE}/recipients", params={**params, "sort": "email"})).json()
    assert [r["email"] for r in body["recipients"]] == expected
    assert body["paging"]["totalCount"] == len(expected)


@pytest.fixture
async def contacts(running: Harness, told: httpx.AsyncClient) -> httpx.AsyncClient:
    """The story plus a recipient with both contact ids and one known by a contact id alone."""
    ids = {"contact_id": "c-7", "client_contact_id": "K7"}
    await post(
        told,
        [
            event("sent", "2025-06-01T12:00:00Z", KIM, recipient=ids),
            {**event("sent", "2025-06-01T12:00:00Z", ""), "recipient": {"contact_id": "c-8"}},
        ],
    )
    await folded(running, TOTAL + 2)
    return told


async def keys(client: httpx.AsyncClient, path: str, key: str, **params: str) -> list[Any]:
    response = await client.get(f"{BASE}/{path}", params=params)
    assert response.status_code == 200, response.text
    return [(r["email"], r["contactId"]) for r in response.json()[key]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"email": JOHN.upper()}, [(JOHN, None)]),
        ({"email": "c-8"}, []),
        ({"contactId": "c-7"}, [(KIM, "c-7")]),
        ({"clientContactId": "K7"}, [(KIM, "c-7")]),
        ({"clientContactId": "k7"}, []),
        ({"contactId": "K7"}, []),
        ({"contactId": "c-8"}, [(None, "c-8")]),
        ({"contactId": "c-7", "is_opened": "true"}, []),
    ],
)
async def test_exact_filters_match_one_field_exactly(
    contacts: httpx.AsyncClient, params: dict[str, str], expected: list[Any]
) -> None:
    assert await keys(contacts, "recipients", "recipients", **params) == expected


async def test_exact_filters_apply_to_every_recipient_list(contacts: httpx.AsyncClient) -> None:
    assert await keys(contacts, "sent", "sent", email=JANE) == [(JANE, None)]
    assert await keys(contacts, "sent", "sent", clientContactId="K7") == [(KIM, "c-7")]
    assert await keys(contacts, "sent", "sent", email=EVE) == []
    assert await keys(contacts, "undelivered", "undelivered", email=EVE) == [(EVE, None)]
    assert await keys(contacts, "undelivered", "undelivered", contactId="c-7") == []
    export = await contacts.get(f"{BASE}/export", params={"format": "jsonl", "contactId": "c-8"})
    assert export.status_code == 200 and export.text.count("\n") == 1
    assert '"contactId":"c-8"' in export.text


@pytest.mark.parametrize(("name", "value"), [("email", ""), ("contactId", "x" * 257)])
async def test_a_bad_exact_filter_is_named(told: httpx.AsyncClient, name: str, value: str) -> None:
    response = await told.get(f"{BASE}/recipients", params={name: value})
    assert response.status_code == 400
    assert response.json()["details"][0]["parameter"] == name
