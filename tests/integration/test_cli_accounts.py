"""Operating accounts with the `mailfold` command against the real database: list, rotate a
secret, list and delete a provider's settings (never printing a provider secret)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service import db
from service.auth import Authenticator
from service.errors import Rejected

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
KEY = "cli-accounts-test-key"


def mailfold(database: str, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "mailfold", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "MAILFOLD_DATABASE_URL": database,
             "MAILFOLD_SECRET_KEY": KEY},
    )  # fmt: skip
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
