"""Why a webhook was refused: the last refusals per account and provider, shown to the account
(GET /v1/webhooks/refusals) and the operator (`mailfold refusals`), bounded, and never in the
way of the request that was refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from service import db, refusals
from service.app import Service
from service.providers import save
from tests.harness import Account, Harness, wait_for
from tests.webhooks.contract_test_helpers import signer_of

pytestmark = pytest.mark.integration
SIGNER = signer_of("sendgrid")
PATH = "/webhooks/sendgrid/acme"


async def configured(harness: Harness) -> tuple[Account, Account]:
    acme, beta = await harness.account("acme"), await harness.account("beta")
    pool = await harness.pool()
    async with pool.acquire() as conn:
        secret = SIGNER.credentials("acme").secrets[0]
        await save(conn, harness.settings.secret_key, "acme", "sendgrid", options={}, secret=secret)
    await harness.start_app()
    return acme, beta


async def post_tampered(harness: Harness, request_id: str) -> Any:
    signed = SIGNER.sign(SIGNER.sample_body(), harness.base_url + PATH, datetime.now(UTC))
    headers = {**signed.headers, "x-request-id": request_id}
    async with harness.client() as client:
        return await client.post(PATH, content=signed.body + b" ", headers=headers)


async def listed(harness: Harness, account: Account, **params: str) -> Any:
    async with harness.client(account) as client:
        answer = await client.get("/v1/webhooks/refusals", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["refusals"]


def service(harness: Harness) -> Service:
    svc: Service = harness._server.config.app.state.service  # type: ignore[union-attr]
    return svc


async def test_a_refused_webhook_is_shown_to_its_account_only(harness: Harness) -> None:
    acme, beta = await configured(harness)
    answer = await post_tampered(harness, "req-tampered-1")
    assert answer.status_code == 401
    async with harness.client() as client:  # not configured: not kept (anyone can invent these)
        assert (await client.post("/webhooks/sendgrid/nobody", content=b"[]")).status_code == 404
        assert (await client.post("/webhooks/mailgun/acme", content=b"[]")).status_code == 404

    found = await wait_for(lambda: listed(harness, acme), lambda x: len(x) == 1)
    (refusal,) = found
    assert (refusal["provider"], refusal["status"]) == ("sendgrid", 401)
    assert refusal["reason"] == answer.json()["message"]
    assert (refusal["remoteAddr"], refusal["requestId"]) == ("127.0.0.1", "req-tampered-1")
    assert set(refusal) == {"provider", "refusedAt", "status", "reason", "remoteAddr", "requestId"}
    assert await listed(harness, acme, provider="mailgun") == []
    assert await listed(harness, beta) == []
    async with harness.client(acme) as client:
        bad = await client.get("/v1/webhooks/refusals", params={"provider": "nope"})
        assert bad.status_code == 400 and bad.json()["details"][0]["parameter"] == "provider"

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mailfold", "refusals", "acme", "sendgrid"],
        env=harness.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["requestId"] == "req-tampered-1"


async def test_only_the_newest_refusals_are_kept(harness: Harness) -> None:
    await harness.account("acme")
    log = refusals.RefusalLog(await harness.pool())
    for n in range(refusals.KEPT + 30):
        log.add(refusals.refused("acme", "sendgrid", 401, f"refusal {n}", "192.0.2.1", None))
    log.add(refusals.refused("acme", "mailgun", 401, "another provider", None, None))
    await log.flush()
    log.add(refusals.refused("acme", "sendgrid", 413, "the latest", None, None))
    await log.flush()
    rows = await refusals.latest(await harness.pool(), "acme", "sendgrid", 1000)
    assert len(rows) == refusals.KEPT
    assert rows[0]["reason"] == "the latest"
    assert rows[-1]["reason"] == f"refusal {30 + 1}"
    assert len(await refusals.latest(await harness.pool(), "acme", None, 1000)) == refusals.KEPT + 1


async def test_a_database_outage_leaves_a_refusal_a_401(harness: Harness) -> None:
    await configured(harness)
    svc = service(harness)
    assert (await post_tampered(harness, "warm")).status_code == 401  # credentials now cached
    await svc.refusals.flush()
    broken = await db.create_pool(harness.settings.database_url, 1)
    await broken.close()  # every acquire now fails, as during an outage
    svc.refusals = refusals.RefusalLog(broken)
    before = dropped(await metrics_text(harness))
    answers = await asyncio.gather(*(post_tampered(harness, f"r{n}") for n in range(5)))
    assert [a.status_code for a in answers] == [401] * 5
    await svc.refusals.flush()  # fails inside, raises nothing
    assert dropped(await metrics_text(harness)) == before + 5


async def metrics_text(harness: Harness) -> str:
    async with harness.client() as client:
        return (await client.get("/metrics")).text


def dropped(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("mailfold_refusals_dropped_total "):
            return float(line.split()[1])
    return 0.0
