"""Per-account provider credentials: stored encrypted, loaded into `Credentials` for verify()."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidTag

from service.auth import DATABASE_DOWN, TtlCache, decrypt, encrypt
from service.db import QUERIES
from service.errors import CredentialsUnreadable, Unavailable
from service.webhooks.base import Credentials, MetadataKeys

log = logging.getLogger("mailfold.providers")


def _context(account: str, provider: str) -> str:
    return f"{account}/{provider}"


def _decrypt(secret_key: str, blob: bytes, account: str, provider: str) -> str:
    """A stored secret in clear; CredentialsUnreadable when this key does not open it (the
    authentication tag fails: stored under another MAILFOLD_SECRET_KEY, or altered)."""
    try:
        return decrypt(secret_key, blob, _context(account, provider))
    except (InvalidTag, ValueError) as exc:
        log.error(
            "cannot decrypt the %s credentials of account %s: MAILFOLD_SECRET_KEY is not the key "
            "they were stored with (set the right key, or store them again with this one)",
            provider,
            account,
            extra={"account": account, "source": provider},
        )
        raise CredentialsUnreadable(
            f"the service cannot read account {account!r}'s {provider} credentials "
            "(a server configuration problem); retry later",
            retry_after=60,
        ) from exc


async def save(
    conn: asyncpg.Connection[Any],
    secret_key: str,
    account: str,
    provider: str,
    *,
    options: dict[str, Any],
    secret: str | None = None,
    slot: int = 1,
    retire_slot: int | None = None,
) -> None:
    """Set a provider's options and, optionally, one secret slot (1 or 2) for an account."""
    async with conn.transaction():
        await conn.execute(QUERIES["upsert_provider_settings"], account, provider, options)
        if secret is not None:
            blob = encrypt(secret_key, secret, _context(account, provider))
            await conn.execute(QUERIES["upsert_provider_secret"], account, provider, slot, blob)
        if retire_slot is not None:
            await conn.execute(QUERIES["delete_provider_secret"], account, provider, retire_slot)


class CredentialStore:
    """Loads and decrypts credentials, caching them briefly so a webhook burst costs one query.
    An account or provider with none configured is looked up afresh every time, never cached."""

    def __init__(self, pool: asyncpg.Pool[Any], secret_key: str) -> None:
        self._pool = pool
        self._secret_key = secret_key
        self.cache: TtlCache[tuple[str, str], Credentials] = TtlCache()

    async def get(self, account: str, provider: str) -> Credentials | None:
        key = (account, provider)
        creds = self.cache.get(key)
        if creds is not None:
            return creds
        try:
            row = await self._pool.fetchrow(
                QUERIES["get_account_provider_credentials"], account, provider
            )
        except DATABASE_DOWN as exc:
            raise Unavailable("credential store unavailable; retry later") from exc
        if row is None:
            return None
        creds = Credentials(
            account=account,
            provider=provider,
            secrets=tuple(_decrypt(self._secret_key, b, account, provider) for b in row["secrets"]),
            options=row["options"],
            disabled=row["disabled_at"] is not None,
        )
        self.cache.put(key, creds)
        return creds


def metadata_keys(credentials: Credentials) -> MetadataKeys:
    return MetadataKeys.from_mapping(credentials.options.get("metadata_keys"))
