"""Postmark's Signer: HTTP Basic credentials on the webhook URL; Postmark signs nothing."""

from __future__ import annotations

import json

from tests.webhooks.contract_test_helpers import BasicSigner, basic, fresh_pair

__all__ = ["SIGNER", "basic", "fresh_credentials"]

# postmarkapp.com/developer/webhooks/delivery-webhook example, with attribution metadata.
DELIVERY = {
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


def fresh_credentials() -> str:
    return fresh_pair("postmark")


SIGNER = BasicSigner("postmark", json.dumps(DELIVERY).encode())
