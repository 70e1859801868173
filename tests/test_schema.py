"""schema.sql applies twice without error and every named query prepares against it."""

from __future__ import annotations

import pytest

from service import db, resources

pytestmark = pytest.mark.integration


async def test_schema_applies_twice_and_every_query_prepares(database: str) -> None:
    await db.apply_schema(database)
    await db.apply_schema(database)
    conn = await db.connect(database)
    try:
        staging = [name for name in db.QUERIES if name.startswith("create_") and "staging" in name]
        assert staging == ["create_fold_staging", "create_replay_staging"]
        for name in staging:  # several statements each: executed
            await conn.execute(db.QUERIES[name])
        for name, sql in db.QUERIES.items():
            if name not in staging:
                await conn.prepare(sql)
    finally:
        await conn.close()


def test_query_names_are_unique_and_documented() -> None:
    text = "\n".join(p.read_text() for p in resources.query_files())
    with pytest.raises(ValueError, match="twice"):
        db.load_queries(text + "\n-- name: fold_fresh\nSELECT 1;\n")
    for name in db.QUERIES:
        block = text.split(f"-- name: {name}\n", 1)[1]
        assert block.startswith("-- "), f"{name} has no one-line description"
