"""Signs Resend requests for the shared contract test as Svix does, with a secret made here.

base64(HMAC-SHA256(base64-decoded secret, f"{svix-id}.{svix-timestamp}.{body}")), sent as
`v1,<signature>` in `svix-signature`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from service.webhooks.base import Context, Credentials, WebhookRequest
from tests.webhooks.contract_standard_webhooks import new_secret, signed_headers

FIXTURES = Path(__file__).parent / "fixtures" / "resend"
AUTH_HEADERS = frozenset({"svix-id", "svix-timestamp", "svix-signature"})


def sign_request(
    secrets_: tuple[str, ...], body: bytes, url: str, at: datetime, msg_id: str | None = None
) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    headers |= signed_headers("svix", body, at, msg_id=msg_id, secrets_=secrets_)
    return WebhookRequest(body=body, headers=headers, url=url)


class ResendSigner:
    name = "resend"
    content_type = "application/json"
    has_timestamp = True
    signs_body = True

    def __init__(self) -> None:
        self.secret = new_secret()

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(self.secret,))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(new_secret(),))

    def sample_body(self) -> bytes:
        return (FIXTURES / "delivered.json").read_bytes()

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        return sign_request((self.secret,), body, url, at)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k not in AUTH_HEADERS}
        return replace(request, headers=headers)

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = ResendSigner()
