"""Signs Standard Webhooks requests for the shared contract test, with keys generated here.

`v1`: base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")) with a `whsec_` secret;
`v1a`: base64(ed25519 signature) over the same bytes, verified with a `whpk_` public key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import replace
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.webhooks.base import Context, Credentials, WebhookRequest

NAME = "standard-webhooks"


def new_secret() -> str:
    """A symmetric secret as senders show it: `whsec_` + base64 of 24-64 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "whpk_" + base64.b64encode(raw).decode()


def v1(secret: str, signed: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def v1a(key: Ed25519PrivateKey, signed: bytes) -> str:
    return "v1a," + base64.b64encode(key.sign(signed)).decode()


def signed_headers(
    prefix: str,
    body: bytes,
    at: datetime,
    *,
    msg_id: str | None = None,
    secrets_: tuple[str, ...] = (),
    keys: tuple[Ed25519PrivateKey, ...] = (),
) -> dict[str, str]:
    """`<prefix>-id/-timestamp/-signature` headers with one signature per secret and key."""
    msg_id = msg_id or "msg_" + secrets.token_hex(12)
    timestamp = str(int(at.timestamp()))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signatures = [v1(s, signed) for s in secrets_] + [v1a(k, signed) for k in keys]
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": timestamp,
        f"{prefix}-signature": " ".join(signatures),
    }


class StandardWebhooksSigner:
    name = NAME
    content_type = "application/json"
    has_timestamp = True
    signs_body = True

    def __init__(self) -> None:
        self.secret = new_secret()

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, NAME, secrets=(self.secret,))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, NAME, secrets=(new_secret(),))

    def sample_body(self) -> bytes:
        return (
            b'{"type":"delivered","occurred_at":"2026-03-01T11:59:30Z",'
            b'"campaign_id":"spring","delivery_id":"d-1","message_id":"m-1",'
            b'"recipient":{"email":"jane@example.com"}}'
        )

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        headers = {"content-type": self.content_type}
        headers |= signed_headers("webhook", body, at, secrets_=(self.secret,))
        return WebhookRequest(body=body, headers=headers, url=url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        auth = {"webhook-id", "webhook-timestamp", "webhook-signature"}
        return replace(request, headers={k: v for k, v in request.headers.items() if k not in auth})

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = StandardWebhooksSigner()
