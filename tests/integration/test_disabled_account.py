"""A disabled account: its webhooks, Event API and read API are refused with 403 and a reason
that says so, and nothing it posts reaches the broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service import db
from service.providers import save
from tests.harness import Harness
from tests.webhooks.contract_test_helpers import signer_of

pytestmark = pytest.mark.integration
EVENT = {"type": "sent", "occurred_at": "2025-06-01T12:00:00Z", "delivery_id": "d1",
         "recipient": {"email": "a@example.com"}}  # fmt: skip


def refused_as_disabled(answer: object) -> bool:
    status, body = answer.status_code, answer.json()  # type: ignore[attr-defined]
    return status == 403 and body["error"] == "account_disabled" and "disabled" in body["message"]


async def test_a_disabled_accounts_requests_are_refused_with_403(harness: Harness) -> None:
    acme = await harness.account("acme")
    signer = signer_of("sendgrid")
    pool = await harness.pool()
    async with pool.acquire() as conn:
        secret = signer.credentials("acme").secrets[0]
        await save(conn, harness.settings.secret_key, "acme", "sendgrid", options={}, secret=secret)
        await conn.execute(db.QUERIES["set_account_disabled"], "acme", True)
    await harness.start_app()
    path = "/webhooks/sendgrid/acme"
    signed = signer.sign(signer.sample_body(), harness.base_url + path, datetime.now(UTC))
    async with harness.client(acme) as client:
        assert refused_as_disabled(await client.post("/v1/events", json=EVENT))
        assert refused_as_disabled(await client.get("/v1/campaigns"))
        hook = await client.post(path, content=signed.body, headers=dict(signed.headers))
        assert refused_as_disabled(hook)
        assert refused_as_disabled(await client.get(path))
    async with harness.client() as anonymous:
        # Without credentials it is still a 401: being disabled is said only to the account.
        assert (await anonymous.get("/v1/campaigns")).status_code == 401
