"""Shared pieces of the Signers: finding a provider's Signer, and the one for providers that
authenticate by HTTP Basic credentials and sign nothing (Postmark, Mailjet, Brevo)."""

from __future__ import annotations

import base64
import importlib
import secrets
from datetime import datetime
from typing import Any

from service.webhooks.base import Context, Credentials, WebhookRequest


def signer_of(module: str) -> Any:
    return importlib.import_module(f"tests.webhooks.contract_{module}").SIGNER


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def fresh_pair(provider: str) -> str:
    """A new `user:password` secret."""
    return f"{provider}-{secrets.token_hex(4)}:{secrets.token_urlsafe(24)}"


class BasicSigner:
    """A changed body with the right credentials is indistinguishable from a genuine one
    (`signs_body = False`); only the credentials can be wrong or missing."""

    content_type = "application/json"
    has_timestamp = False
    signs_body = False

    def __init__(self, name: str, sample: bytes) -> None:
        self.name = name
        self.secret = fresh_pair(name)
        self._sample = sample

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(self.secret,))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(fresh_pair(self.name),))

    def sample_body(self) -> bytes:
        return self._sample

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        headers = {"content-type": self.content_type, "authorization": basic(self.secret)}
        return WebhookRequest(body=body, headers=headers, url=url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        return WebhookRequest(request.body, headers, request.url, request.remote_addr)

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)
