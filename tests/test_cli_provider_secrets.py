"""`mailfold providers set` refuses, before storing anything, a secret its provider cannot use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.webhooks.contract_standard_webhooks import new_secret

ROOT = Path(__file__).resolve().parents[1]


def providers_set(*args: str) -> subprocess.CompletedProcess[str]:
    # No database at this address: a refusal must come before any connection is tried.
    return subprocess.run(
        [sys.executable, "-m", "mailfold", "providers", "set", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={
            "MAILFOLD_SECRET_KEY": "unused",
            "MAILFOLD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "PATH": "/usr/bin:/bin",
        },
    )


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (new_secret().removeprefix("whsec_"), "neither prefix"),
        ("whsk_c2VjcmV0", "private signing key"),
    ],
)
def test_standard_webhooks_secret_without_its_prefix_is_refused(secret: str, reason: str) -> None:
    done = providers_set("acme", "standard-webhooks", "--secret", secret)
    assert done.returncode == 1
    assert done.stderr.startswith("mailfold: standard-webhooks: the secret is refused: ")
    assert reason in done.stderr and secret not in done.stderr


def test_a_prefixed_secret_goes_on_to_be_stored() -> None:
    done = providers_set("acme", "standard-webhooks", "--secret", new_secret())
    assert "the secret is refused" not in done.stderr
    assert done.returncode != 0  # only because no database answers at that address
