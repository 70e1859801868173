"""Amazon SNS over HTTPS: the JSON envelope, its RSA signature and the URLs it may send us to.

Docs: Amazon SNS developer guide, "Verifying the signatures of Amazon SNS messages"
(sns-verify-signature-of-message), "Amazon SNS message and JSON formats"
(sns-message-and-json-formats), "Amazon SNS message delivery retries"
(https://docs.aws.amazon.com/sns/latest/dg/sns-message-delivery-retries.html);
SignatureVersion 2 (SHA256) as set with SetTopicAttributes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# Only Amazon SNS's own regional endpoint serves a topic's signing certificates and
# confirmations: `sns.<region>.amazonaws.com`, `.amazonaws.com.cn` in the China partition. The
# region is spelled as AWS spells regions (us-east-1, cn-north-1, us-gov-west-1), so names that
# are not regions (`sns.s3.amazonaws.com`, where anyone may own a bucket called `sns`) never match.
REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"
SNS_HOST = re.compile(rf"sns\.({REGION})\.(amazonaws\.com(?:\.cn)?)")
# arn:<partition>:sns:<region>:<account>:<topic> -> the domain of that partition's endpoints.
TOPIC_ARN = re.compile(rf"arn:(aws|aws-cn|aws-us-gov):sns:({REGION}):[0-9]{{12}}:[A-Za-z0-9_.-]+")
PARTITION_DOMAINS = {
    "aws": "amazonaws.com",
    "aws-cn": "amazonaws.com.cn",
    "aws-us-gov": "amazonaws.com",
}
# What SNS names its signing certificates (SigningCertURL's path).
CERTIFICATE_PATH = re.compile(r"/SimpleNotificationService-[A-Za-z0-9]+\.pem")

# SNS signs a message once, when it is published, and a retry sends the same message again (same
# MessageId, Timestamp and signature). An HTTP/S delivery policy retries for at most 3,600 s in
# all, "a hard limit" (sns-message-delivery-retries; the default policy is 3 retries 20 s apart),
# so a notification is admitted while its Timestamp is within that hour plus the usual tolerance.
RETRY_SPAN = timedelta(seconds=3600)

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
    """The SNS envelope of a POST body (SNS posts JSON as text/plain), read strictly: orjson
    refuses a lone surrogate that the standard library's `json` would let through."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("body is not an SNS JSON envelope") from exc
    if not isinstance(data, dict):
        raise EnvelopeError("body is not an SNS JSON envelope")
    if data.get("Type") not in SIGNED_FIELDS:
        raise EnvelopeError(f"unknown SNS message Type {data.get('Type')!r}")
    return data


def topic_home(topic_arn: str) -> tuple[str, str] | None:
    """(region, domain) of the SNS endpoints that serve `topic_arn`, or None for no SNS ARN."""
    match = TOPIC_ARN.fullmatch(topic_arn)
    return (match[2], PARTITION_DOMAINS[match[1]]) if match else None


def url_home(url: str) -> tuple[str, str] | None:
    """(region, domain) of an https URL on an SNS endpoint, or None for any other URL.

    The authority must be the bare host (or host:443): no credentials, no other port, no
    upper case or trailing dot, and the URL holds no spaces, backslashes or non-ASCII that
    parsers disagree about.
    """
    if not (url.isascii() and url.isprintable()) or " " in url or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = parts.netloc.removesuffix(":443")
    match = SNS_HOST.fullmatch(host)
    if parts.scheme != "https" or match is None:
        return None
    return match[1], match[2]


def is_sns_url(url: str, topic_arn: str) -> bool:
    """True for an https URL on the SNS endpoint of `topic_arn`'s own partition and region."""
    home = url_home(url)
    return home is not None and home == topic_home(topic_arn)


def is_certificate_path(url: str) -> bool:
    """The path of an SNS signing certificate, with no query or fragment."""
    parts = urlsplit(url)
    return bool(CERTIFICATE_PATH.fullmatch(parts.path)) and not parts.query and not parts.fragment


def is_certificate_url(url: str, topic_arn: str) -> bool:
    """A `SigningCertURL` we may fetch: a certificate at the topic's own SNS endpoint."""
    return is_sns_url(url, topic_arn) and is_certificate_path(url)


def is_confirmation_url(url: str, topic_arn: str) -> bool:
    """A `SubscribeURL` that confirms a subscription to `topic_arn` at SNS and does nothing else."""
    if not is_sns_url(url, topic_arn):
        return False
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return (
        parts.path in ("", "/")
        and not parts.fragment
        and query.get("Action") == ["ConfirmSubscription"]
        and query.get("TopicArn") == [topic_arn]
    )


def check_timestamp(envelope: Mapping[str, Any], now: datetime, tolerance: timedelta) -> None:
    """Raise EnvelopeError unless the signed `Timestamp` is one SNS could still be delivering."""
    value = envelope.get("Timestamp")
    try:
        sent = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        sent = None
    if sent is None or sent.tzinfo is None:
        raise EnvelopeError("Timestamp is missing or not an ISO-8601 UTC time")
    if not now - RETRY_SPAN - tolerance <= sent <= now + tolerance:
        raise EnvelopeError("Timestamp is outside the window of SNS's retries")


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
    url, topic_arn = envelope.get("SigningCertURL"), envelope.get("TopicArn")
    if not isinstance(url, str) or not isinstance(topic_arn, str):
        raise EnvelopeError("SigningCertURL or TopicArn is missing")
    if not is_certificate_url(url, topic_arn):
        raise EnvelopeError("SigningCertURL is not a certificate of the topic's SNS endpoint")
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
