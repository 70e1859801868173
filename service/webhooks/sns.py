"""Amazon SNS over HTTPS: the JSON envelope, its RSA signature and the URLs it may send us to.

Docs: Amazon SNS developer guide, "Verifying the signatures of Amazon SNS messages"
(sns-verify-signature-of-message) and "Amazon SNS message and JSON formats"
(sns-message-and-json-formats); SignatureVersion 2 (SHA256) as set with SetTopicAttributes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# Only Amazon SNS's own regional endpoints serve signing certificates and confirmations.
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")

# The signed fields of each message type, already in byte order (SNS-VER step 5).
# `Subject` is signed only when the notification has one.
_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION,
    "UnsubscribeConfirmation": _CONFIRMATION,
}
OPTIONAL_FIELDS = frozenset({"Subject"})

# SignatureVersion -> digest of the PKCS#1 v1.5 signature ("SHA1withRSA" / "SHA256withRSA").
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

FetchCertificate = Callable[[str], Awaitable[bytes]]


class EnvelopeError(ValueError):
    """The request is not a genuine, well-formed SNS message; the text says why."""


def load_envelope(body: bytes) -> dict[str, Any]:
    """The SNS envelope of a POST body (SNS posts JSON as text/plain)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EnvelopeError("body is not an SNS JSON envelope") from exc
    if not isinstance(data, dict):
        raise EnvelopeError("body is not an SNS JSON envelope")
    if data.get("Type") not in SIGNED_FIELDS:
        raise EnvelopeError(f"unknown SNS message Type {data.get('Type')!r}")
    return data


def is_sns_url(url: str) -> bool:
    """True for an https URL on an Amazon SNS host, with no credentials and the default port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.username is None
        and parts.password is None
        and port in (None, 443)
        and SNS_HOST.fullmatch(parts.hostname or "") is not None
    )


def is_certificate_url(url: str) -> bool:
    """A `SigningCertURL` we may fetch: an SNS host and a `.pem` path, nothing else."""
    parts = urlsplit(url)
    return (
        is_sns_url(url) and parts.path.endswith(".pem") and not parts.query and not parts.fragment
    )


def is_confirmation_url(url: str, topic_arn: str) -> bool:
    """A `SubscribeURL` that confirms a subscription to `topic_arn` at SNS and does nothing else."""
    if not is_sns_url(url):
        return False
    query = parse_qs(urlsplit(url).query)
    return query.get("Action") == ["ConfirmSubscription"] and query.get("TopicArn") == [topic_arn]


def string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """Name, newline, value, newline for each signed field, with the JSON-decoded values."""
    parts: list[str] = []
    for name in SIGNED_FIELDS[envelope["Type"]]:
        value = envelope.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise EnvelopeError(f"{name} is missing or not a string")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode()


async def verify_signature(
    envelope: Mapping[str, Any], fetch_certificate: FetchCertificate, now: datetime
) -> None:
    """Raise EnvelopeError unless the envelope carries a valid signature by an SNS certificate.

    Everything that can be checked locally is checked before the certificate is fetched, and
    nothing is fetched from a URL that is not an SNS `.pem`. Errors of the fetch itself propagate:
    a certificate that could not be fetched is a reason to retry, not to refuse.
    """
    version = envelope.get("SignatureVersion")
    digest = DIGESTS.get(version) if isinstance(version, str) else None
    if digest is None:
        raise EnvelopeError(f"unsupported SignatureVersion {version!r}")
    url = envelope.get("SigningCertURL")
    if not isinstance(url, str) or not is_certificate_url(url):
        raise EnvelopeError("SigningCertURL is not an Amazon SNS certificate URL")
    signature = _decode_signature(envelope.get("Signature"))
    signed = string_to_sign(envelope)
    public_key = _public_key(await fetch_certificate(url), now)
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), digest())
    except InvalidSignature as exc:
        raise EnvelopeError("signature does not match") from exc


def _decode_signature(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise EnvelopeError("Signature is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError("Signature is not base64") from exc


def _public_key(pem: bytes, now: datetime) -> rsa.RSAPublicKey:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise EnvelopeError("signing certificate is not a PEM X.509 certificate") from exc
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise EnvelopeError("signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise EnvelopeError("signing certificate does not hold an RSA key")
    return key
