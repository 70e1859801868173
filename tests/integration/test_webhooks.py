"""Provider webhooks through HTTP with real signatures, against the real broker and database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pytest

from service import kafka
from service.providers import save
from service.settings import Settings
from service.webhooks import PROVIDER_MODULES
from tests.harness import Harness, wait_for
from tests.webhooks.contract_ses import CERT_URL, sign_envelope
from tests.webhooks.contract_ses import SIGNER as SES
from tests.webhooks.contract_test_helpers import signer_of

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "webhooks" / "fixtures"


class RecordingSink:
    """The real producer, remembering what it was asked to land (a seam Mailfold owns)."""

    def __init__(self, settings: Settings) -> None:
        self.producer = kafka.Producer(settings)
        self.sent: list[bytes] = []

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        await self.producer.send(topic, value, key=key, headers=headers)
        self.sent.append(value)


@pytest.fixture
async def webhooks(harness: Harness, tmp_path: Path) -> Any:
    """The service with every provider configured for account `acme`; SNS certificates local."""
    (tmp_path / PurePosixPath(CERT_URL).name).write_bytes(SES.certificate)
    harness.settings = replace(harness.settings, sns_cert_dir=str(tmp_path), sns_confirm=False)
    sink = RecordingSink(harness.settings)
    await harness.account("acme")
    pool = await harness.pool()
    async with pool.acquire() as conn:
        for module in PROVIDER_MODULES:
            creds = signer_of(module).credentials("acme")
            secret = creds.secrets[0] if creds.secrets else None
            await save(conn, harness.settings.secret_key, "acme", creds.provider,
                       options=dict(creds.options), secret=secret)  # fmt: skip
    await harness.start_app(sink=sink)
    yield sink
    await sink.producer.stop()


def post_args(request: Any) -> dict[str, Any]:
    return {"content": request.body, "headers": dict(request.headers)}


@pytest.mark.parametrize("module", PROVIDER_MODULES)
async def test_a_signed_request_lands_and_an_unsigned_one_is_refused(
    harness: Harness, webhooks: RecordingSink, module: str
) -> None:
    signer = signer_of(module)
    path = f"/webhooks/{signer.name}/acme"
    request = signer.sign(signer.sample_body(), harness.base_url + path, datetime.now(UTC))
    async with harness.client() as client:
        refused = await client.post(path, **post_args(signer.strip(request)))
        assert refused.status_code == 401, refused.text
        assert (
            refused.json()["error"] == "unauthorized" and signer.name in refused.json()["message"]
        )
        assert webhooks.sent == []
        accepted = await client.post(path, **post_args(request))
        assert accepted.status_code == 200, accepted.text
    assert webhooks.sent == [request.body]


async def test_unknown_provider_or_unconfigured_account_is_404(
    harness: Harness, webhooks: RecordingSink
) -> None:
    async with harness.client() as client:
        assert (await client.post("/webhooks/pigeon/acme", content=b"{}")).status_code == 404
        r = await client.post("/webhooks/sendgrid/nobody", content=b"[]")
        assert r.status_code == 404 and "nobody" in r.json()["message"]
        assert (await client.head("/webhooks/mandrill/acme")).status_code == 200
    assert webhooks.sent == []


async def test_signed_sendgrid_batch_and_sns_ses_bounce_become_recipient_rows(
    harness: Harness, webhooks: RecordingSink
) -> None:
    await harness.start_pipeline()
    sendgrid = signer_of("sendgrid")
    args = {"campaign_id": "spring", "delivery_id": "d-1"}
    batch = [
        {"email": "Ann@Example.com", "timestamp": 1700000000, "event": "processed",
         "sg_message_id": "m1.filter0001", **args},
        {"email": "ann@example.com", "timestamp": 1700000060, "event": "delivered",
         "sg_message_id": "m1.filter0001", **args},
        {"email": "ann@example.com", "timestamp": 1700000600, "event": "open",
         "sg_machine_open": False, "sg_message_id": "m1.filter0001", **args},
        {"email": "ann@example.com", "timestamp": 1700000700, "event": "click",
         "url": "https://shop.test/x", "sg_message_id": "m1.filter0001", **args},
        {"email": "ann@example.com", "timestamp": 1700000800, "event": "open",
         "sg_machine_open": True, "sg_message_id": "m1.filter0001", **args},
    ]  # fmt: skip
    body = orjson.dumps(batch)
    envelope = json.loads((FIXTURES / "ses" / "event_bounce.json").read_bytes())
    envelope["SigningCertURL"] = CERT_URL
    envelope["Timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    message = json.loads(envelope["Message"])
    message["mail"]["tags"].update({"campaign_id": ["spring"], "delivery_id": ["d-1"]})
    envelope["Message"] = json.dumps(message)
    ses_request = sign_envelope(envelope, SES.key)
    async with harness.client() as client:
        now = datetime.now(UTC)
        path = "/webhooks/sendgrid/acme"
        r = await client.post(path, **post_args(sendgrid.sign(body, harness.base_url + path, now)))
        assert r.status_code == 200, r.text
        r = await client.post("/webhooks/ses/acme", content=orjson.dumps(ses_request),
                              headers={"content-type": "text/plain; charset=UTF-8"})  # fmt: skip
        assert r.status_code == 200, r.text
    acme = await harness.fetch("SELECT login FROM accounts WHERE account_id = 'acme'")
    assert acme
    rows = await wait_for(
        lambda: harness.fetch("SELECT * FROM recipients ORDER BY recipient_key"),
        lambda rows: len(rows) == 2 and rows[0]["open_count"] == 2,
    )
    ann, bounced = rows
    assert (ann["recipient_key"], ann["delivery_id"], ann["campaign_id"]) == (
        "ann@example.com", "d-1", "spring")  # fmt: skip
    assert (ann["open_human_count"], ann["open_machine_count"], ann["click_count"]) == (1, 1, 1)
    assert ann["delivered_at"] == datetime.fromtimestamp(1700000060, UTC)
    assert bounced["recipient_key"] == "recipient@example.com"
    assert (bounced["bounce_class"], bounced["bounce_code"]) == ("hard", "5.1.1")


async def test_sns_handshakes_are_answered_recorded_and_never_reach_kafka(
    harness: Harness, tmp_path: Path
) -> None:
    from tests.webhooks.contract_ses import TOPIC_ARN, FakeSns
    from tests.webhooks.test_ses import confirmation

    sink = RecordingSink(harness.settings)
    sns = FakeSns({CERT_URL: SES.certificate})
    await harness.account("acme")
    pool = await harness.pool()
    async with pool.acquire() as conn:
        await save(conn, harness.settings.secret_key, "acme", "ses",
                   options={"topic_arns": [TOPIC_ARN]})  # fmt: skip
    await harness.start_app(sink=sink, context=sns.context(datetime.now(UTC)))
    headers = {"content-type": "text/plain; charset=UTF-8"}
    async with harness.client() as client:
        body = orjson.dumps(sign_envelope(confirmation(), SES.key))
        r = await client.post("/webhooks/ses/acme", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["confirmed"] is True
        assert sns.confirmed == [confirmation()["SubscribeURL"]]
        rows = await harness.fetch("SELECT status FROM sns_subscriptions")
        assert [row["status"] for row in rows] == ["confirmed"]
        body = orjson.dumps(sign_envelope(confirmation("UnsubscribeConfirmation"), SES.key))
        r = await client.post("/webhooks/ses/acme", content=body, headers=headers)
        assert r.status_code == 200
    assert len(sns.confirmed) == 1  # the unsubscribe notice is recorded, not acted on
    rows = await harness.fetch("SELECT status FROM sns_subscriptions")
    assert [row["status"] for row in rows] == ["unsubscribe_requested"]
    assert sink.sent == []
    await sink.producer.stop()
