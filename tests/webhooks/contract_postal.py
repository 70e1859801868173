"""Signs Postal requests for the shared contract test with an RSA key generated here.

Postal sends base64(RSA PKCS#1 v1.5 SHA-256(body)) as X-Postal-Signature-256 and the SHA-1
equivalent as X-Postal-Signature; the account holds the public key as base64 DER.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import datetime
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from service.webhooks.base import Context, Credentials, WebhookRequest

FIXTURES = Path(__file__).parent / "fixtures" / "postal"
AUTH_HEADERS = frozenset({"x-postal-signature", "x-postal-signature-256", "x-postal-signature-kid"})


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def spare_key() -> rsa.RSAPrivateKey:
    """A second key for "wrong key" cases; RSA generation is slow enough to do once."""
    return new_key()


def public_key_text(key: rsa.RSAPrivateKey) -> str:
    """The public half as `postal default-dkim-record` prints it: base64 DER, no armour."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def signature(key: rsa.RSAPrivateKey, body: bytes, algorithm: hashes.HashAlgorithm) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), algorithm)).decode()


def sign_request(
    key: rsa.RSAPrivateKey, body: bytes, url: str, *, sha1: bool = True, sha256: bool = True
) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if sha1:
        headers["x-postal-signature"] = signature(key, body, hashes.SHA1())
    if sha256:
        headers["x-postal-signature-256"] = signature(key, body, hashes.SHA256())
    return WebhookRequest(body=body, headers=headers, url=url)


class PostalSigner:
    name = "postal"
    content_type = "application/json"
    has_timestamp = False
    signs_body = True

    def __init__(self) -> None:
        self.key = new_key()

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(public_key_text(self.key),))

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, self.name, secrets=(public_key_text(spare_key()),))

    def sample_body(self) -> bytes:
        return (FIXTURES / "message_sent.json").read_bytes()

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        return sign_request(self.key, body, url)

    def strip(self, request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k not in AUTH_HEADERS}
        return replace(request, headers=headers)

    def context(self, now: datetime) -> Context:
        return Context(now=lambda: now)


SIGNER = PostalSigner()
