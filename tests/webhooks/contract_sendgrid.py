"""Signs SendGrid requests for the shared contract test with a P-256 key generated here."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import datetime

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.webhooks.base import Context, Credentials, WebhookRequest
from service.webhooks.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The public half as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign_request(
    key: ec.EllipticCurvePrivateKey, body: bytes, url: str, at: datetime
) -> WebhookRequest:
    """A request signed as SendGrid does: ECDSA-SHA256 over the timestamp header + raw body."""
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: timestamp,
    }
    return WebhookRequest(body=body, headers=headers, url=url)


class SendGridSigner:
    name = "sendgrid"
    content_type = "application/json"
    has_timestamp = True

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, "sendgrid", secrets=(public_key_text(self.key),))

    def wrong_credentials(self, account: str) -> Credentials:
        other = ec.generate_private_key(ec.SECP256R1())
        return Credentials(account, "sendgrid", secrets=(public_key_text(other),))

    def sample_body(self) -> bytes:
        return orjson.dumps(
            [
                {
                    "email": "example@test.com",
                    "timestamp": 1513299569,
                    "event": "delivered",
                    "sg_event_id": "rWVYmVk90MjZJ9iohOBa3w==",
                    "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
                    "response": "250 OK",
                }
            ]
        )

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        return sign_request(self.key, body, url, at)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        auth = {SIGNATURE_HEADER, TIMESTAMP_HEADER}
        return replace(request, headers={k: v for k, v in request.headers.items() if k not in auth})

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = SendGridSigner()
