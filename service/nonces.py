"""Nonces of accepted webhook requests, kept in PostgreSQL so every service process shares them.

A repeat of a verified request whose record is already on the broker (a Mailgun token, a Svix or
Standard Webhooks message id seen before) is answered 2xx and not produced again: that stops a
captured Mailgun signature being replayed over other event data, and a retry of a delivery whose
2xx got lost still ends the sender's retries.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg

from service.auth import DATABASE_DOWN
from service.db import QUERIES
from service.errors import Unavailable
from service.webhooks.base import Nonce

log = logging.getLogger("mailfold.nonces")
PURGE_SECONDS = 60.0


class NonceMemory:
    def __init__(self, pool: asyncpg.Pool[Any], purge_seconds: float = PURGE_SECONDS) -> None:
        self._pool = pool
        self._purge_seconds = purge_seconds
        self._next_purge = time.monotonic() + purge_seconds

    async def seen(self, account: str, provider: str, nonce: Nonce) -> bool:
        """Whether a request with this nonce was accepted before, within its window."""
        try:
            found: bool = await self._pool.fetchval(
                QUERIES["find_webhook_nonce"], account, provider, nonce.value
            )
        except DATABASE_DOWN as exc:
            raise Unavailable("nonce store unavailable; retry later") from exc
        return found

    async def remember(self, account: str, provider: str, nonce: Nonce) -> bool:
        """Remember an accepted request's nonce; True when it was new. Never raises: the record
        is on the broker already, so a store that failed costs only replay protection, and the
        failure is logged."""
        try:
            new: bool = await self._pool.fetchval(
                QUERIES["remember_webhook_nonce"], account, provider, nonce.value, nonce.expires_at
            )
            if time.monotonic() >= self._next_purge:
                await self.purge()
        except (*DATABASE_DOWN, asyncpg.PostgresError) as exc:
            log.warning(
                "nonce not remembered: %s", type(exc).__name__,
                extra={"account": account, "source": provider},
            )  # fmt: skip
            return False
        return new

    async def purge(self) -> int:
        """Delete every nonce past its window; how many went."""
        self._next_purge = time.monotonic() + self._purge_seconds
        done = await self._pool.execute(QUERIES["delete_expired_webhook_nonces"])
        return int(done.rsplit(" ", 1)[-1])
