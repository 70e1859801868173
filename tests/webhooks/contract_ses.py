"""SES's Signer: SNS messages signed with an RSA key and a self-signed certificate made here.

SNS signs the decoded values of some envelope fields, not the body's bytes: a tamper that keeps
the JSON valid and the signed values intact (whitespace, `UnsubscribeURL`) is not detectable, so
`tamper` changes a signed value. The string to sign is built here from the SNS documentation,
independently of the adapter's own code.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from service.errors import Rejected
from service.webhooks.base import Context, Credentials, WebhookRequest

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:mailfold-ses-events"
OTHER_TOPIC_ARN = "arn:aws:sns:us-east-1:210987654321:someone-elses-topic"
CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/"
    "SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
)
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED["UnsubscribeConfirmation"] = SIGNED["SubscriptionConfirmation"]
AUTH_FIELDS = ("Signature", "SignatureVersion", "SigningCertURL")


def make_certificate(
    not_before: datetime = datetime(2000, 1, 1, tzinfo=UTC),
    not_after: datetime = datetime(2100, 1, 1, tzinfo=UTC),
) -> tuple[rsa.RSAPrivateKey, bytes]:
    """A fresh RSA key and a self-signed PEM certificate for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(Encoding.PEM)


def sign_envelope(
    envelope: dict[str, Any],
    key: rsa.RSAPrivateKey,
    *,
    version: str = "1",
    cert_url: str = CERT_URL,
) -> dict[str, Any]:
    """The envelope with SignatureVersion, SigningCertURL and a Signature, as SNS makes them."""
    signed = {k: v for k, v in envelope.items() if k not in AUTH_FIELDS}
    text = "".join(f"{name}\n{signed[name]}\n" for name in SIGNED[signed["Type"]] if name in signed)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), digest)
    signed.update(
        SignatureVersion=version,
        Signature=base64.b64encode(signature).decode(),
        SigningCertURL=cert_url,
    )
    return signed


def request(
    envelope: dict[str, Any], url: str = "https://mailfold.test/webhooks/ses/acme"
) -> WebhookRequest:
    """The POST SNS makes: the envelope as JSON, sent as text/plain, with SNS's own headers."""
    headers = {
        "content-type": SesSigner.content_type,
        "x-amz-sns-message-type": str(envelope.get("Type")),
        "x-amz-sns-message-id": str(envelope.get("MessageId")),
        "x-amz-sns-topic-arn": str(envelope.get("TopicArn")),
    }
    return WebhookRequest(body=json.dumps(envelope, indent=2).encode(), headers=headers, url=url)


@dataclass
class FakeSns:
    """The certificate source and confirmation endpoint a Context gets; records what is asked."""

    certificates: dict[str, bytes]
    fetched: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)

    async def fetch_certificate(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.certificates:  # what SNS answers for a certificate it never issued
            raise Rejected(f"ses: no SNS certificate at {url}")
        return self.certificates[url]

    async def confirm_subscription(self, url: str) -> None:
        self.confirmed.append(url)

    def context(self, now: datetime) -> Context:
        return Context(
            now=lambda: now,
            fetch_certificate=self.fetch_certificate,
            confirm_subscription=self.confirm_subscription,
        )


class SesSigner:
    name = "ses"
    content_type = "text/plain; charset=UTF-8"
    # SNS's Timestamp window spans its hour of retries (test_ses), more than the contract's
    # one stale hour.
    has_timestamp = False
    signs_body = True

    def __init__(self) -> None:
        self.key, self.certificate = make_certificate()

    def credentials(self, account: str) -> Credentials:
        return Credentials(account, "ses", options={"topic_arns": [TOPIC_ARN]})

    def wrong_credentials(self, account: str) -> Credentials:
        return Credentials(account, "ses", options={"topic_arns": [OTHER_TOPIC_ARN]})

    def sample_body(self) -> bytes:
        delivery = {
            "eventType": "Delivery",
            "mail": {
                "timestamp": "2016-10-19T23:20:52.240Z",
                "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
                "destination": ["recipient@example.com"],
                "tags": {"campaign_id": ["spring"], "delivery_id": ["d-1"]},
            },
            "delivery": {
                "timestamp": "2016-10-19T23:21:04.133Z",
                "recipients": ["recipient@example.com"],
                "smtpResponse": "250 2.6.0 Message received",
            },
        }
        envelope = {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC_ARN,
            "Subject": "Amazon SES Email Event Notification",
            "Message": json.dumps(delivery) + "\n",
            "Timestamp": "2016-10-19T23:21:05.000Z",
        }
        return json.dumps(envelope, indent=2).encode()

    def sign(self, body: bytes, url: str, at: datetime) -> WebhookRequest:
        envelope = json.loads(body)
        envelope["Timestamp"] = at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        return request(sign_envelope(envelope, self.key), url)

    def strip(self, signed: WebhookRequest) -> WebhookRequest:
        envelope = {k: v for k, v in json.loads(signed.body).items() if k not in AUTH_FIELDS}
        return request(envelope, signed.url)

    def tamper(self, signed: WebhookRequest) -> WebhookRequest:
        """The same signature over a changed Message."""
        envelope = json.loads(signed.body)
        envelope["Message"] = envelope["Message"].replace("recipient@", "attacker@")
        return request(envelope, signed.url)

    def context(self, now: datetime) -> Context:
        return FakeSns({CERT_URL: self.certificate}).context(now)


SIGNER = SesSigner()
