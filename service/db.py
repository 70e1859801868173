"""PostgreSQL: the pool, the schema and the named queries of queries.sql."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import orjson

from service import resources

SCHEMA_PATH = resources.data() / "schema.sql"

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(text: str) -> dict[str, str]:
    """Split queries.sql into {name: statement}; each block runs until the next `-- name:`."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql: {name} defined twice")
        queries[name] = body.strip()
    return queries


def _all_queries() -> dict[str, str]:
    """queries.sql plus queries/<area>.sql; a name may be defined once across all of them."""
    return load_queries("\n".join(path.read_text() for path in resources.query_files()))


QUERIES = _all_queries()


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # Binary codecs, so COPY (binary) into the fold's staging table works too. jsonb's binary
    # form is a version byte (1) followed by the JSON text.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: b"\x01" + orjson.dumps(v),
        decoder=lambda b: orjson.loads(b[1:]),
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "json", encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog", format="binary"
    )


async def connect(dsn: str) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn, server_settings={"timezone": "UTC", "application_name": "mailfold"}
    )
    await _init_connection(conn)
    return conn


async def create_pool(dsn: str, size: int = 10) -> asyncpg.Pool[Any]:
    pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        init=_init_connection,
        server_settings={"timezone": "UTC", "application_name": "mailfold"},
        command_timeout=30,
    )
    return pool


async def apply_schema(dsn: str) -> None:
    """Apply schema.sql (idempotent) under an advisory lock, so concurrent starts don't race.
    Databases are built by service.migrations; this puts back what schema.sql names (bench's
    dropped indexes) and builds the reference its migrations are compared with."""
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7412001)")
            await conn.execute(SCHEMA_PATH.read_text())
    finally:
        await conn.close()
