"""The account and credential caches: bounded, expiring, and holding only what a look-up found.
The cache class on its own, then Authenticator and CredentialStore over a real PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import db, providers
from service.auth import Authenticator, TtlCache, create_account
from service.errors import Rejected, Unavailable
from service.providers import CredentialStore

KEY = "cache-test-key"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# A run of operations on a cache of 3 entries living 10 s: put k, get k, or let time pass.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 6)),
        st.tuples(st.just("get"), st.integers(0, 6)),
        st.tuples(st.just("wait"), st.floats(0, 6)),
    ),
    max_size=60,
)


@given(operations)
def test_the_cache_is_a_bounded_lru_whose_entries_expire(ops) -> None:
    clock = Clock()
    cache: TtlCache[int, str] = TtlCache(size=3, seconds=10.0, clock=clock)
    model: dict[int, tuple[float, str]] = {}  # key -> (stored at, value), oldest use first
    for op, arg in ops:
        if op == "wait":
            clock.now += arg
            continue
        key = int(arg)
        if op == "put":
            model.pop(key, None)
            model[key] = (clock.now, f"v{key}@{clock.now}")
            cache.put(key, model[key][1])
            while len(model) > 3:
                del model[next(iter(model))]
        else:
            hit = model.pop(key, None)
            fresh = hit is not None and clock.now - hit[0] < 10.0
            if fresh:
                assert hit is not None
                model[key] = hit  # now the most recently used
            assert cache.get(key) == (hit[1] if fresh and hit else None)
        assert len(cache) <= 3


def basic(login: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await db.create_pool(database, 2)
    yield pool
    await pool.close()


async def test_only_a_successful_authentication_is_cached(pool) -> None:
    async with pool.acquire() as conn:
        acme = await create_account(conn, KEY, "acme")
    auth = Authenticator(pool, KEY)
    with pytest.raises(Rejected):
        await auth.account(basic("mf_nobody", acme.secret), None)
    with pytest.raises(Rejected):
        await auth.account(basic(acme.login, "wrong"), None)
    assert len(auth.cache) == 0
    assert await auth.account(basic(acme.login, acme.secret), None) == "acme"
    assert len(auth.cache) == 1
    # A cached account still checks every secret it is given.
    with pytest.raises(Rejected):
        await auth.account(basic(acme.login, "wrong"), None)


async def test_logins_tried_at_random_never_fill_the_account_cache(pool) -> None:
    async with pool.acquire() as conn:
        acme = await create_account(conn, KEY, "acme")
    auth = Authenticator(pool, KEY)
    auth.cache.size = 4
    assert await auth.account(basic(acme.login, acme.secret), None) == "acme"
    for i in range(50):
        with pytest.raises(Rejected):
            await auth.account(basic(f"mf_guess{i}", "x"), None)
    assert len(auth.cache) == 1 and auth.cache.get(acme.login) is not None


async def test_an_unreachable_account_store_is_503_and_caches_nothing(database: str) -> None:
    pool = await db.create_pool(database, 1)
    auth = Authenticator(pool, KEY)
    await pool.close()
    with pytest.raises(Unavailable):
        await auth.account(basic("mf_someone", "secret"), None)
    assert len(auth.cache) == 0


async def test_credentials_are_cached_but_an_unconfigured_webhook_is_not(pool) -> None:
    store = CredentialStore(pool, KEY)
    assert await store.get("acme", "mailgun") is None
    assert len(store.cache) == 0
    async with pool.acquire() as conn:
        await create_account(conn, KEY, "acme")
        await providers.save(conn, KEY, "acme", "mailgun", options={}, secret="signing-key")
    # Configured a moment after a miss: found at once, not a cached "none" for seconds.
    found = await store.get("acme", "mailgun")
    assert found is not None and found.secrets == ("signing-key",)
    assert len(store.cache) == 1
    for i in range(20):
        assert await store.get(f"guess{i}", "mailgun") is None
    assert len(store.cache) == 1


async def test_an_unreachable_credential_store_is_503_and_caches_nothing(database: str) -> None:
    pool = await db.create_pool(database, 1)
    store = CredentialStore(pool, KEY)
    await pool.close()
    with pytest.raises(Unavailable):
        await store.get("acme", "mailgun")
    assert len(store.cache) == 0
