"""Operating accounts with the `mailfold` command against the real database: list, show, rotate
a secret, disable, list, show, test and delete a provider's settings (never printing a provider
secret)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service import db
from service.auth import Authenticator
from service.errors import Rejected
from tests.webhooks.contract_test_helpers import signer_of

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
KEY = "cli-accounts-test-key"


def run(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailfold", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "MAILFOLD_DATABASE_URL": database,
             "MAILFOLD_SECRET_KEY": KEY},
    )  # fmt: skip


def mailfold(database: str, *args: str) -> Any:
    done = run(database, *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(doc) for doc in split_documents(done.stdout)]


def split_documents(text: str) -> list[str]:
    """The command prints indented JSON documents one after another."""
    docs, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                docs.append(text[start : i + 1])
                start = i + 1
    return docs


async def authenticates(database: str, login: str, secret: str) -> bool:
    pool = await db.create_pool(database, 2)
    try:
        header = "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()
        try:
            await Authenticator(pool, KEY).account(header, "127.0.0.1")
            return True
        except Rejected:
            return False
    finally:
        await pool.close()


def test_accounts_are_listed_rotated_and_providers_shown_and_deleted(database: str) -> None:
    (acme,) = mailfold(database, "accounts", "create", "Acme")
    mailfold(database, "accounts", "create", "Beta")
    mailfold(database, "providers", "set", "acme", "postmark", "--secret", "pm:very-secret")
    listed = mailfold(database, "accounts", "list")
    assert [a["account"] for a in listed] == ["acme", "beta"]
    assert listed[0]["providers"] == ["postmark"] and listed[1]["providers"] == []
    assert all("secret" not in a and "secret_hash" not in a for a in listed)

    (shown,) = mailfold(database, "providers", "list", "acme")
    assert (shown["provider"], shown["secret_slots"]) == ("postmark", [1])
    assert "very-secret" not in json.dumps(shown)

    assert asyncio.run(authenticates(database, acme["login"], acme["secret"]))
    (rotated,) = mailfold(database, "accounts", "rotate-secret", "acme")
    assert rotated["secret"] != acme["secret"]
    assert not asyncio.run(authenticates(database, acme["login"], acme["secret"]))
    assert asyncio.run(authenticates(database, acme["login"], rotated["secret"]))

    (deleted,) = mailfold(database, "providers", "delete", "acme", "postmark")
    assert deleted["deleted"] is True
    assert mailfold(database, "providers", "list", "acme") == []
    assert mailfold(database, "accounts", "list")[0]["providers"] == []


def test_an_account_is_shown_disabled_and_enabled_again(database: str) -> None:
    (acme,) = mailfold(database, "accounts", "create", "Acme")
    (shown,) = mailfold(database, "accounts", "show", "acme")
    assert (shown["login"], shown["disabled_at"]) == (acme["login"], None)
    assert "secret" not in shown and "secret_hash" not in shown
    (disabled,) = mailfold(database, "accounts", "disable", "acme")
    assert disabled["disabled_at"] is not None
    (again,) = mailfold(database, "accounts", "disable", "acme")
    assert again["disabled_at"] == disabled["disabled_at"]  # the first time is kept
    assert mailfold(database, "accounts", "show", "acme")[0]["disabled_at"] is not None
    assert mailfold(database, "accounts", "enable", "acme")[0]["disabled_at"] is None


def test_an_unknown_account_is_one_line_and_exit_status_1(database: str) -> None:
    for action in ("show", "disable"):
        done = run(database, "accounts", action, "nobody")
        assert done.returncode == 1
        assert done.stderr == "mailfold: no account 'nobody'\n"


def test_a_provider_is_shown_without_its_secret(database: str) -> None:
    mailfold(database, "accounts", "create", "Acme")
    mailfold(database, "providers", "set", "acme", "postmark", "--secret", "pm:very-secret",
             "--user", "pm")  # fmt: skip
    (shown,) = mailfold(database, "providers", "show", "acme", "postmark")
    assert (shown["provider"], shown["secret_slots"]) == ("postmark", [1])
    assert shown["options"] == {"user": "pm"} and "very-secret" not in json.dumps(shown)
    done = run(database, "providers", "show", "acme", "mailgun")
    assert (done.returncode, done.stderr) == (
        1,
        "mailfold: no mailgun settings for account 'acme'\n",
    )


def test_a_captured_request_is_checked_against_the_stored_credentials(
    database: str, tmp_path: Path
) -> None:
    signer = signer_of("sendgrid")
    mailfold(database, "accounts", "create", "Acme")
    secret = signer.credentials("acme").secrets[0]
    mailfold(database, "providers", "set", "acme", "sendgrid", "--secret", secret)
    request = signer.sign(
        signer.sample_body(), "http://x/webhooks/sendgrid/acme", datetime.now(UTC)
    )
    body = tmp_path / "body.json"
    body.write_bytes(request.body)
    flags = [
        arg for name, value in request.headers.items() for arg in ("--header", f"{name}: {value}")
    ]

    good = run(database, "providers", "test", "acme", "sendgrid", str(body), *flags)
    assert good.returncode == 0, good.stderr
    events = [json.loads(line) for line in good.stdout.splitlines()]
    assert events and all(e["source"] == "sendgrid" and e["account"] == "acme" for e in events)

    body.write_bytes(request.body + b" ")
    tampered = run(database, "providers", "test", "acme", "sendgrid", str(body), *flags)
    assert (tampered.returncode, tampered.stdout) == (4, "")
    assert tampered.stderr.startswith("mailfold: would be refused: 401: sendgrid")
    assert len(tampered.stderr.splitlines()) == 1
