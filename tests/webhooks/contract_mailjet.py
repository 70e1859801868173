"""Mailjet's Signer: HTTP Basic credentials, the only authentication Mailjet offers."""

from __future__ import annotations

from pathlib import Path

from tests.webhooks.contract_test_helpers import BasicSigner, basic, fresh_pair

__all__ = ["SIGNER", "basic", "fresh_credentials"]
FIXTURES = Path(__file__).parent / "fixtures" / "mailjet"


def fresh_credentials() -> str:
    return fresh_pair("mailjet")


SIGNER = BasicSigner("mailjet", (FIXTURES / "sent.json").read_bytes())
