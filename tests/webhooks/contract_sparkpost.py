"""Signer for the shared contract test: SparkPost authenticates with HTTP Basic credentials.

SparkPost event webhooks carry no signature, so the credentials vouch for the sender but not
for the body: `signs_body` is False and a tampered body with good credentials still verifies.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from pathlib import Path

from service.webhooks.base import Context, Credentials, WebhookRequest

FIXTURES = Path(__file__).parent / "fixtures" / "sparkpost"


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


class SparkPostSigner:
    name = "sparkpost"
    content_type = "application/json"
    has_timestamp = False
    signs_body = False

    def __init__(self) -> None:
        self.pair = f"sparkpost-{secrets.token_hex(4)}:{secrets.token_urlsafe(24)}"

    def credentials(self, account: str) -> Credentials:
        return Credentials(account=account, provider=self.name, secrets=(self.pair,))

    def wrong_credentials(self, account: str) -> Credentials:
        other = f"sparkpost-{secrets.token_hex(4)}:{secrets.token_urlsafe(24)}"
        return Credentials(account=account, provider=self.name, secrets=(other,))

    def sample_body(self) -> bytes:
        return (FIXTURES / "delivery.json").read_bytes()

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        headers = {"content-type": self.content_type, "authorization": basic(self.pair)}
        return WebhookRequest(body=body, headers=headers, url=url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        return WebhookRequest(request.body, headers, request.url, request.remote_addr)

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = SparkPostSigner()
