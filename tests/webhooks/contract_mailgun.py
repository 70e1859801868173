"""Signs Mailgun requests for the shared contract test with a signing key generated here.

Mailgun signs only the body's `signature.timestamp` + `signature.token`, never the `event-data`,
so a change to the event data alone cannot be detected (`signs_body = False`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from service.webhooks.base import Context, Credentials, WebhookRequest


def sign_body(key: str, body: bytes, at: datetime, token: str | None = None) -> bytes:
    """`body` with the `signature` object Mailgun would add at time `at`."""
    data: dict[str, Any] = orjson.loads(body)
    timestamp = str(int(at.timestamp()))
    token = token or secrets.token_hex(25)  # Mailgun's tokens are 50 characters
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    data["signature"] = {"timestamp": timestamp, "token": token, "signature": digest}
    return orjson.dumps(data)


class MailgunSigner:
    name = "mailgun"
    content_type = "application/json"
    has_timestamp = True
    stale_after = timedelta(hours=8, minutes=6)  # past Mailgun's 8 hours of retries and the window
    signs_body = False

    def __init__(self) -> None:
        self.key = secrets.token_hex(16)

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, "mailgun", secrets=(self.key,))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, "mailgun", secrets=(secrets.token_hex(16),))

    def sample_body(self) -> bytes:
        return orjson.dumps(
            {
                "event-data": {
                    "event": "delivered",
                    "id": "hTWCTD81RtiDN-",
                    "timestamp": 1534108637.153125,
                    "recipient": "recipient@example.com",
                    "message": {
                        "headers": {"message-id": "20180812211713.1.DF5966851B4BAA99@example.org"}
                    },
                    "delivery-status": {"code": 250, "message": "OK"},
                }
            }
        )

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        headers = {"content-type": self.content_type}
        return WebhookRequest(body=sign_body(self.key, body, at), headers=headers, url=url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        data = orjson.loads(request.body)
        data.pop("signature", None)
        return replace(request, body=orjson.dumps(data))

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = MailgunSigner()
