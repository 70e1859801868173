"""Finds the Signer of a provider module (tests/webhooks/contract_<module>.py)."""

from __future__ import annotations

import importlib
from typing import Any


def signer_of(module: str) -> Any:
    return importlib.import_module(f"tests.webhooks.contract_{module}").SIGNER
