"""Brevo's Signer: HTTP Basic credentials (Brevo's other option, a Bearer token, is covered by
test_brevo.py)."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.webhooks.contract_test_helpers import BasicSigner, basic, fresh_pair

__all__ = ["SIGNER", "basic", "fresh_credentials", "fresh_token"]
FIXTURES = Path(__file__).parent / "fixtures" / "brevo"


def fresh_credentials() -> str:
    return fresh_pair("brevo")


def fresh_token() -> str:
    return secrets.token_urlsafe(32)


SIGNER = BasicSigner("brevo", (FIXTURES / "delivered.json").read_bytes())
