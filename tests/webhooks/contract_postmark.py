"""Postmark's Signer: HTTP Basic credentials, the only authentication Postmark offers.

Postmark signs nothing, so a changed body with the right credentials is indistinguishable from
a genuine one (`signs_body = False`); only the credentials can be wrong or missing.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime

from service.webhooks.base import Context, Credentials, WebhookRequest


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def fresh_credentials() -> str:
    return f"postmark-{secrets.token_hex(4)}:{secrets.token_urlsafe(24)}"


class PostmarkSigner:
    name = "postmark"
    content_type = "application/json"
    has_timestamp = False
    signs_body = False

    def __init__(self) -> None:
        self.secret = fresh_credentials()

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, "postmark", secrets=(self.secret,))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, "postmark", secrets=(fresh_credentials(),))

    def sample_body(self) -> bytes:
        # postmarkapp.com/developer/webhooks/delivery-webhook example, with attribution metadata.
        delivery = {
            "RecordType": "Delivery",
            "MessageStream": "outbound",
            "ServerID": 23,
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Recipient": "john@example.com",
            "Tag": "welcome-email",
            "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
            "Details": "Test delivery webhook details",
            "Metadata": {"campaign_id": "spring", "delivery_id": "d-1"},
        }
        return json.dumps(delivery).encode()

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        headers = {"content-type": self.content_type, "authorization": basic(self.secret)}
        return WebhookRequest(body=body, headers=headers, url=url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        return WebhookRequest(body=request.body, headers=headers, url=request.url)

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = PostmarkSigner()
