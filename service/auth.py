"""Accounts and their credentials: Basic auth for the Event and read APIs, encrypted provider keys.

Account secrets are 256-bit random tokens, so a keyed hash (HMAC-SHA256 under
MAILFOLD_SECRET_KEY) is as strong as a slow password hash and costs microseconds per request.
Provider secrets that an HMAC needs in clear are encrypted with AES-256-GCM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.db import QUERIES
from service.errors import BadInput, Disabled, Forbidden, Rejected, Unavailable

ACCOUNT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# How long a change to an account or its provider credentials may go unnoticed.
CACHE_SECONDS = 5.0
# Entries a cache holds; beyond that the least recently used goes.
CACHE_ENTRIES = 10_000
# A database that does not answer is our outage, never the caller's fault: 503, not 500.
DATABASE_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most `size` entries, each for `seconds`, the least recently used evicted first.

    Callers put only what a successful look-up found, so a caller trying names or secrets at
    random costs a query each and never fills the cache or pushes good entries out.
    """

    def __init__(
        self,
        size: int = CACHE_ENTRIES,
        seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.seconds = seconds
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if self._clock() - hit[0] >= self.seconds:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hit[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _derive(secret_key: str, purpose: bytes) -> bytes:
    return hmac.new(secret_key.encode(), purpose, hashlib.sha256).digest()


def hash_secret(secret_key: str, secret: str) -> bytes:
    return hmac.digest(_derive(secret_key, b"account-secret"), secret.encode(), "sha256")


def encrypt(secret_key: str, plaintext: str, context: str) -> bytes:
    """AES-256-GCM with a random nonce; `context` (account/provider) is bound as associated data."""
    nonce = secrets.token_bytes(12)
    key = _derive(secret_key, b"provider-secrets")
    return nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())


def decrypt(secret_key: str, blob: bytes, context: str) -> str:
    key = _derive(secret_key, b"provider-secrets")
    return AESGCM(key).decrypt(blob[:12], blob[12:], context.encode()).decode()


@dataclass(frozen=True, slots=True)
class NewAccount:
    account: str
    login: str
    secret: str


def parse_networks(values: list[str] | None) -> list[str] | None:
    """Validate an IP allow list (addresses or CIDR blocks); None or empty means any address."""
    if not values:
        return None
    try:
        return [str(ipaddress.ip_network(v.strip(), strict=False)) for v in values]
    except ValueError as exc:
        raise BadInput(f"allowed IPs: {exc}") from exc


def new_secret() -> str:
    """A new account secret: 256 random bits, shown once, stored only as its keyed hash."""
    return f"mfs_{secrets.token_urlsafe(32)}"


async def create_account(
    conn: asyncpg.Connection[Any], secret_key: str, name: str, allowed_ips: list[str] | None = None
) -> NewAccount:
    account = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-")
    if not ACCOUNT_ID.match(account):
        raise BadInput(f"account name {name!r} gives no usable id (letters, digits, - and _)")
    login = f"mf_{secrets.token_hex(8)}"
    secret = new_secret()
    try:
        await conn.execute(
            QUERIES["create_account"],
            account,
            name,
            login,
            hash_secret(secret_key, secret),
            parse_networks(allowed_ips),
        )
    except asyncpg.UniqueViolationError as exc:
        raise BadInput(f"account {account!r} already exists") from exc
    return NewAccount(account, login, secret)


def _basic(header: str | None) -> tuple[str, str]:
    if not header or not header[:6].lower() == "basic ":
        raise Rejected("HTTP Basic credentials required (login:secret)")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Rejected("malformed Basic credentials") from exc
    login, sep, secret = decoded.partition(":")
    if not sep:
        raise Rejected("malformed Basic credentials")
    return login, secret


def address_allowed(remote: str | None, allowed: list[str] | None) -> bool:
    if not allowed:
        return True
    if remote is None:
        return False
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net) for net in allowed)


class Authenticator:
    """Checks Basic `login:secret` against the accounts table; an account that authenticated
    stays in a small in-memory cache for a few seconds (`TtlCache`)."""

    def __init__(self, pool: asyncpg.Pool[Any], secret_key: str) -> None:
        self._pool = pool
        self._secret_key = secret_key
        # hash_secret's key, derived once: every request hashes the secret it was given.
        self._hash_key = _derive(secret_key, b"account-secret")
        self._unknown = hash_secret(secret_key, "no-such-login")
        self.cache: TtlCache[str, Any] = TtlCache()

    async def _lookup(self, login: str) -> Any:
        row = self.cache.get(login)
        if row is not None:
            return row
        try:
            return await self._pool.fetchrow(QUERIES["find_login"], login)
        except DATABASE_DOWN as exc:
            raise Unavailable("account store unavailable; retry later") from exc

    async def account(self, authorization: str | None, remote: str | None) -> str:
        """The account id for these credentials; Rejected (401), Disabled or Forbidden (403)
        otherwise."""
        login, secret = _basic(authorization)
        row = await self._lookup(login)
        expected = row["secret_hash"] if row else self._unknown
        given = hmac.digest(self._hash_key, secret.encode(), "sha256")
        if not hmac.compare_digest(given, expected) or row is None:
            raise Rejected("unknown login or wrong secret")
        # Kept only once the secret matched: an unknown login or a wrong secret is never cached.
        self.cache.put(login, row)
        if row["disabled_at"] is not None:
            raise Disabled(f"account {row['account_id']!r} is disabled")
        if not address_allowed(remote, row["allowed_ips"]):
            raise Forbidden(f"address {remote} is not on this account's allow list")
        return str(row["account_id"])
