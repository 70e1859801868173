"""Brevo's Signer: HTTP Basic credentials (Brevo's other option, a Bearer token, is covered by
test_brevo.py).

Brevo signs nothing, so a changed body with the right credentials is indistinguishable from a
genuine one (`signs_body = False`); only the credentials can be wrong or missing.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from pathlib import Path

from service.webhooks.base import Context, Credentials, WebhookRequest

FIXTURES = Path(__file__).parent / "fixtures" / "brevo"


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def fresh_credentials() -> str:
    return f"brevo-{secrets.token_hex(4)}:{secrets.token_urlsafe(24)}"


def fresh_token() -> str:
    return secrets.token_urlsafe(32)


class BrevoSigner:
    name = "brevo"
    content_type = "application/json"
    has_timestamp = False
    signs_body = False

    def __init__(self) -> None:
        self.secret = fresh_credentials()

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(self.secret,))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(fresh_credentials(),))

    def sample_body(self) -> bytes:
        return (FIXTURES / "delivered.json").read_bytes()

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        headers = {"content-type": self.content_type, "authorization": basic(self.secret)}
        return WebhookRequest(body=body, headers=headers, url=url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        return WebhookRequest(request.body, headers, request.url, request.remote_addr)

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = BrevoSigner()
