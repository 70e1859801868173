"""inwise's Signer: a secret token, since inwise signs nothing and documents no credentials.

The token rides in the webhook URL (`?token=...`); this Signer sends it as `X-Inwise-Token`,
which verify accepts too, so the request URL stays the one the test chose. A changed body with
the right token is indistinguishable from a genuine one (`signs_body = False`).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from service.webhooks.base import Context, Credentials, WebhookRequest

FIXTURES = Path(__file__).parent / "fixtures" / "inwise"


def fresh_token() -> str:
    return secrets.token_urlsafe(24)


def without_token(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return urlunsplit(parts._replace(query=urlencode(query)))


class InwiseSigner:
    name = "inwise"
    content_type = "application/x-www-form-urlencoded"
    has_timestamp = False
    signs_body = False

    def __init__(self) -> None:
        self.token = fresh_token()

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(self.token,))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(fresh_token(),))

    def sample_body(self) -> bytes:
        return (FIXTURES / "automation_email_sent.form").read_bytes().strip()

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        headers = {"content-type": self.content_type, "x-inwise-token": self.token}
        return WebhookRequest(body=body, headers=headers, url=url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k != "x-inwise-token"}
        return replace(request, headers=headers, url=without_token(request.url))

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = InwiseSigner()
