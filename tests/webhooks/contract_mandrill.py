"""Signer for the shared contract test: Mandrill's X-Mandrill-Signature.

base64(HMAC-SHA1(webhook key, URL + each form field's key and value in key order)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from service.webhooks.base import Context, Credentials, WebhookRequest

FIXTURES = Path(__file__).parent / "fixtures" / "mandrill"


def form_body(events_json: str) -> bytes:
    """A POST body as Mandrill sends it: one form field holding the JSON array."""
    return urlencode({"mandrill_events": events_json}).encode()


def signature(key: str, url: str, body: bytes) -> str:
    """What Mandrill puts in X-Mandrill-Signature for `body` posted to `url`."""
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    signed = url + "".join(name + fields[name] for name in sorted(fields))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


class MandrillSigner:
    name = "mandrill"
    content_type = "application/x-www-form-urlencoded"
    has_timestamp = False
    signs_body = True

    def __init__(self) -> None:
        self.key = secrets.token_urlsafe(16)

    def credentials(self, account: str) -> Credentials:
        return Credentials(account=account, provider=self.name, secrets=(self.key,))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(
            account=account, provider=self.name, secrets=(secrets.token_urlsafe(16),)
        )

    def sample_body(self) -> bytes:
        return form_body((FIXTURES / "send_with_metadata.json").read_text())

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        headers = {
            "content-type": self.content_type,
            "x-mandrill-signature": signature(self.key, url, body),
        }
        return WebhookRequest(body=body, headers=headers, url=url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k != "x-mandrill-signature"}
        return WebhookRequest(request.body, headers, request.url, request.remote_addr)

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = MandrillSigner()
