"""A service whose MAILFOLD_SECRET_KEY is not the key the provider credentials were stored with
answers webhooks 503 with Retry-After, never a 4xx or a 500, and logs which credentials."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from service.providers import save
from service.webhooks import PROVIDER_MODULES
from tests.harness import Harness
from tests.webhooks.contract_test_helpers import signer_of

pytestmark = pytest.mark.integration

OTHER_KEY = "the-key-the-credentials-were-stored-with"
SIGNERS = [signer_of(m) for m in PROVIDER_MODULES if signer_of(m).credentials("acme").secrets]


async def store(harness: Harness, secret_key: str, account: str, signer: Any) -> None:
    creds = signer.credentials(account)
    pool = await harness.pool()
    async with pool.acquire() as conn:
        await save(conn, secret_key, account, signer.name, options=dict(creds.options),
                   secret=creds.secrets[0])  # fmt: skip


async def test_credentials_under_another_key_answer_503_and_log_whose(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(SIGNERS) >= 8 and harness.settings.secret_key != OTHER_KEY
    await harness.account("acme")
    await harness.account("good")
    for signer in SIGNERS:
        await store(harness, OTHER_KEY, "acme", signer)
    await store(harness, harness.settings.secret_key, "good", SIGNERS[0])
    await harness.start_app()
    async with harness.client() as client:
        for signer in SIGNERS:
            path = f"/webhooks/{signer.name}/acme"
            request = signer.sign(signer.sample_body(), harness.base_url + path, datetime.now(UTC))
            r = await client.post(path, content=request.body, headers=dict(request.headers))
            assert (r.status_code, r.headers.get("retry-after")) == (503, "60"), r.text
            body = r.json()
            assert body["error"] == "credentials_unreadable", body
            assert "acme" in body["message"] and signer.name in body["message"]
            assert (await client.get(path)).status_code == 503
        # The same service reads credentials stored under its own key.
        good = SIGNERS[0]
        path = f"/webhooks/{good.name}/good"
        request = good.sign(good.sample_body(), harness.base_url + path, datetime.now(UTC))
        r = await client.post(path, content=request.body, headers=dict(request.headers))
        assert r.status_code == 200, r.text
    logged = [r for r in caplog.records if r.name == "mailfold.providers"]
    named = {(r.account, r.source) for r in logged if r.levelno == logging.ERROR}  # type: ignore[attr-defined]
    assert named == {("acme", s.name) for s in SIGNERS}
    for record in logged:
        text = record.getMessage()
        assert "MAILFOLD_SECRET_KEY" in text
        assert OTHER_KEY not in text and harness.settings.secret_key not in text
        assert not any(s.credentials("acme").secrets[0] in text for s in SIGNERS)
