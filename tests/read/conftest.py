"""Fixtures of the read API's integration tests: the app and the pipeline, and the story told."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.harness import Account, Harness
from tests.read.story import tell_story


@pytest.fixture
async def running(harness: Harness) -> Harness:
    await harness.start_app()
    await harness.start_pipeline()
    return harness


@pytest.fixture
async def acme(running: Harness) -> Account:
    return await running.account("acme")


@pytest.fixture
async def told(running: Harness, acme: Account) -> AsyncIterator[httpx.AsyncClient]:
    """A client of acme's, once the story is folded."""
    async with running.client(acme) as client:
        await tell_story(running, client)
        yield client
