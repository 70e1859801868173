"""Shared fixtures. Integration tests run against the real Kafka broker and PostgreSQL that
`scripts/services start` runs (or those named by MAILFOLD_TEST_KAFKA / MAILFOLD_TEST_DATABASE):
each test gets its own topics, consumer groups and a database cloned from a template.

Locally a missing service skips those tests with the command that starts it; under CI=true it
fails them, so CI never goes green without the real thing.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service import kafka, migrations
from service.settings import Settings
from tests.harness import Harness

# The same ports scripts/services uses (MAILFOLD_KAFKA_PORT, MAILFOLD_PG_PORT), unless named.
KAFKA = os.environ.get(
    "MAILFOLD_TEST_KAFKA", f"127.0.0.1:{os.environ.get('MAILFOLD_KAFKA_PORT', '19092')}"
)
DATABASE = os.environ.get(
    "MAILFOLD_TEST_DATABASE",
    f"postgresql://mailfold@127.0.0.1:{os.environ.get('MAILFOLD_PG_PORT', '15432')}",
)
# One template per test session, so sessions run at once on one machine do not drop each other's.
TEMPLATE = f"mailfold_test_template_{os.getpid()}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the broker or the database is an integration test, marked or not,
    so `-m "not integration"` (the unit suite scripts/test runs on every Python) needs neither."""
    for item in items:
        if {"kafka_up", "template_db"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def missing(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({exc!r}); start it with: scripts/services start"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
async def kafka_up() -> str:
    try:
        await kafka.cluster_answers(KAFKA, 10)
    except Exception as exc:
        missing(f"Kafka at {KAFKA}", exc)
    return KAFKA


@pytest.fixture(scope="session")
async def template_db() -> AsyncIterator[str]:
    """A database built by the migrations, cloned for every test that needs one."""
    try:
        admin = await asyncpg.connect(f"{DATABASE}/postgres", timeout=10)
    except Exception as exc:
        missing(f"PostgreSQL at {DATABASE}", exc)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await admin.close()
    await migrations.migrate(f"{DATABASE}/{TEMPLATE}")
    yield TEMPLATE
    admin = await asyncpg.connect(f"{DATABASE}/postgres", timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database(template_db: str) -> AsyncIterator[str]:
    name = f"mailfold_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{DATABASE}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    yield f"{DATABASE}/{name}"
    admin = await asyncpg.connect(f"{DATABASE}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def settings(kafka_up: str, database: str) -> Settings:
    """Settings of one test: its own database, topics and consumer groups."""
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=kafka_up,
        database_url=database,
        raw_topic=f"t{tag}.raw",
        events_topic=f"t{tag}.events",
        dlq_topic=f"t{tag}.dlq",
        normalize_group=f"t{tag}-normalize",
        fold_group=f"t{tag}-fold",
        secret_key="test-key-" + tag,
        fold_batch_wait_ms=100,
    )
    await kafka.ensure_topics(settings)
    return settings


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    h = Harness(settings)
    try:
        yield h
    finally:
        await asyncio.wait_for(h.close(), 60)
