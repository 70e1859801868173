"""Nonces of accepted webhook requests, shared through PostgreSQL by every service process: a
repeat is answered 200 and not produced again, a forged request burns nothing, and a retry after
a 503 still lands. Real broker and database; the raw sink only fails on cue (a seam Mailfold owns).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import uvicorn

from service import db
from service.app import create_app
from service.errors import Unavailable
from service.nonces import NonceMemory
from service.providers import save
from service.settings import Settings
from service.webhooks.base import Nonce, WebhookRequest
from service.webhooks.mailgun import RETRY_SPAN
from tests.harness import Harness
from tests.integration.test_webhooks import RecordingSink
from tests.webhooks.contract_mailgun import SIGNER as MAILGUN
from tests.webhooks.contract_mailgun import sign_body
from tests.webhooks.contract_resend import SIGNER as RESEND
from tests.webhooks.contract_resend import sign_request
from tests.webhooks.contract_standard_webhooks import SIGNER as STANDARD
from tests.webhooks.contract_standard_webhooks import signed_headers

pytestmark = pytest.mark.integration
TOKEN = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"


class CueSink(RecordingSink):
    """The real producer, failing the next send on cue, remembering what it landed."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.fail_next = False

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if self.fail_next:
            self.fail_next = False
            raise Unavailable("broker did not acknowledge (on cue)")
        await super().send(topic, value, key=key, headers=headers)


@pytest.fixture
async def sink(harness: Harness) -> AsyncIterator[CueSink]:
    """The service, with Mailgun, Resend and Standard Webhooks configured for account `acme`."""
    await harness.account("acme")
    pool = await harness.pool()
    async with pool.acquire() as conn:
        for signer in (MAILGUN, RESEND, STANDARD):
            creds = signer.credentials("acme")
            await save(conn, harness.settings.secret_key, "acme", creds.provider,
                       options={}, secret=creds.secrets[0])  # fmt: skip
    cue = CueSink(harness.settings)
    await harness.start_app(sink=cue)
    yield cue
    await cue.producer.stop()


async def post(harness: Harness, path: str, request: WebhookRequest, base: str = "") -> Any:
    async with harness.client() as client:
        url = (base or harness.base_url) + path
        return await client.post(url, content=request.body, headers=dict(request.headers))


def mailgun(body: bytes, at: datetime, token: str = TOKEN, key: str = "") -> WebhookRequest:
    signed = sign_body(key or MAILGUN.key, body, at, token=token)
    return WebhookRequest(signed, {"content-type": "application/json"}, "")


def with_event_data(request: WebhookRequest, **changes: Any) -> WebhookRequest:
    """The same signature object over other event data (Mailgun does not sign the event)."""
    data = orjson.loads(request.body)
    data["event-data"] |= changes
    return WebhookRequest(orjson.dumps(data), request.headers, request.url)


async def test_a_mailgun_token_lands_once_and_a_replay_over_other_data_lands_never(
    harness: Harness, sink: CueSink
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    genuine = mailgun(MAILGUN.sample_body(), now)
    first = await post(harness, "/webhooks/mailgun/acme", genuine)
    assert first.status_code == 200 and "duplicate" not in first.json(), first.text
    again = await post(harness, "/webhooks/mailgun/acme", genuine)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    forged = with_event_data(genuine, recipient="attacker@example.com", event="complained")
    replayed = await post(harness, "/webhooks/mailgun/acme", forged)
    assert replayed.status_code == 200 and replayed.json()["duplicate"] is True
    assert sink.sent == [genuine.body]
    rows = await harness.fetch("SELECT provider, nonce, expires_at FROM webhook_nonces")
    window = timedelta(seconds=harness.settings.replay_window_s)
    assert [tuple(r) for r in rows] == [("mailgun", TOKEN, now + RETRY_SPAN + window)]


async def test_another_service_process_knows_the_token_too(harness: Harness, sink: CueSink) -> None:
    genuine = mailgun(MAILGUN.sample_body(), datetime.now(UTC))
    assert (await post(harness, "/webhooks/mailgun/acme", genuine)).status_code == 200
    other = CueSink(harness.settings)
    config = uvicorn.Config(create_app(harness.settings, sink=other), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="on")  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        replayed = await post(harness, "/webhooks/mailgun/acme", genuine, base)
        assert replayed.status_code == 200 and replayed.json()["duplicate"] is True
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        await other.producer.stop()
    assert other.sent == [] and sink.sent == [genuine.body]


async def test_a_forged_signature_burns_no_token(harness: Harness, sink: CueSink) -> None:
    now = datetime.now(UTC)
    forged = mailgun(MAILGUN.sample_body(), now, key="not-the-signing-key")
    assert (await post(harness, "/webhooks/mailgun/acme", forged)).status_code == 401
    genuine = mailgun(MAILGUN.sample_body(), now)
    accepted = await post(harness, "/webhooks/mailgun/acme", genuine)
    assert accepted.status_code == 200 and "duplicate" not in accepted.json()
    assert sink.sent == [genuine.body]


async def test_a_retry_after_a_503_lands(harness: Harness, sink: CueSink) -> None:
    """Mailgun sends the same signature object again; it was never accepted, so it lands."""
    genuine = mailgun(MAILGUN.sample_body(), datetime.now(UTC))
    sink.fail_next = True
    refused = await post(harness, "/webhooks/mailgun/acme", genuine)
    assert refused.status_code == 503 and "retry-after" in refused.headers
    assert await harness.fetch("SELECT * FROM webhook_nonces") == []
    retried = await post(harness, "/webhooks/mailgun/acme", genuine)
    assert retried.status_code == 200 and "duplicate" not in retried.json()
    assert sink.sent == [genuine.body]


@pytest.mark.parametrize("provider", ["resend", "standard-webhooks"])
async def test_a_resent_message_id_gets_200_and_is_not_produced_again(
    harness: Harness, sink: CueSink, provider: str
) -> None:
    """Svix and Standard Webhooks senders sign each attempt anew, under the same message id."""
    now = datetime.now(UTC)

    def attempt(msg_id: str, at: datetime) -> WebhookRequest:
        if provider == "resend":
            return sign_request((RESEND.secret,), RESEND.sample_body(), "", at, msg_id)
        body = STANDARD.sample_body()
        headers = signed_headers("webhook", body, at, msg_id=msg_id, secrets_=(STANDARD.secret,))
        return WebhookRequest(body, {"content-type": "application/json"} | headers, "")

    path = f"/webhooks/{provider}/acme"
    first = await post(harness, path, attempt("msg_1", now - timedelta(seconds=5)))
    assert first.status_code == 200 and "duplicate" not in first.json(), first.text
    retry = await post(harness, path, attempt("msg_1", now))
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    other = await post(harness, path, attempt("msg_2", now))
    assert other.status_code == 200 and "duplicate" not in other.json()
    assert len(sink.sent) == 2
    rows = await harness.fetch("SELECT nonce FROM webhook_nonces ORDER BY nonce")
    assert [r["nonce"] for r in rows] == ["msg_1", "msg_2"]


async def test_nonces_past_their_window_are_forgotten_and_purged(
    harness: Harness, settings: Settings
) -> None:
    await harness.account("acme")
    pool = await db.create_pool(settings.database_url, 2)
    try:
        memory = NonceMemory(pool)
        now = datetime.now(UTC)
        live, gone = Nonce("live", now + timedelta(minutes=5)), Nonce("gone", now - timedelta(1))
        assert await memory.remember("acme", "mailgun", live) is True
        assert await memory.remember("acme", "mailgun", live) is False
        assert await memory.remember("acme", "mailgun", gone) is True
        assert await memory.seen("acme", "mailgun", live) is True
        assert await memory.seen("acme", "mailgun", gone) is False
        assert await memory.seen("acme", "resend", live) is False  # per provider
        assert await memory.purge() == 1
        rows = await pool.fetch("SELECT nonce FROM webhook_nonces")
        assert [r["nonce"] for r in rows] == ["live"]
    finally:
        await pool.close()
