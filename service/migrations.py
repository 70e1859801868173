"""Versioned migrations: migrations/NNNN_name.sql, applied in order, each once, recorded.

`migrate` builds a new database and upgrades an old one the same way: under an advisory lock it
runs every file not yet in schema_migrations, each in its own transaction with its row, then
makes the ledger's partitions ahead and rebuilds the report rollups a migration asks for.
0001 is the first release's schema and, like it, idempotent, so a database that release built
before migrations were recorded upgrades from 0001 too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from service import db, resources
from service.errors import MailfoldError
from service.read import reports

FOLDER = resources.data() / "migrations"
# Taken for the whole run (session level), so concurrent runs apply each migration once.
LOCK = 7412001
# A migration's line asking for the rollups to be recomputed from the ledger once it is applied.
REBUILD_REPORTS = "-- then: reports rebuild"

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def rebuilds_reports(self) -> bool:
        return any(line.strip() == REBUILD_REPORTS for line in self.sql.splitlines())


def load() -> list[Migration]:
    """Every migration in version order; refuses gaps, repeats and misnamed files."""
    found = []
    for path in FOLDER.iterdir():
        if not path.name.endswith(".sql"):
            continue
        match = _FILE.match(path.name)
        if match is None:
            raise MailfoldError(f"migrations: {path.name} is not NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MailfoldError("migrations: versions must run 1, 2, 3... without gaps or repeats")
    return found


async def applied(conn: Any) -> dict[int, str]:
    """{version: checksum} of the migrations recorded in the database."""
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


async def apply(conn: Any, migration: Migration) -> None:
    """Run one migration and record it, in one transaction."""
    async with conn.transaction():
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            migration.version,
            migration.name,
            migration.checksum,
        )


async def rebuild_reports(conn: Any) -> int:
    """Recompute every account's report rollups from the ledger; returns the rows written."""
    accounts = await conn.fetch("SELECT account_id FROM accounts ORDER BY account_id")
    return sum([await reports.rebuild(conn, row["account_id"]) for row in accounts])


async def migrate(dsn: str) -> list[str]:
    """Apply the migrations the database lacks, then make the ledger's partitions ahead; returns
    the names applied, e.g. ["0002_reports_refusals"]."""
    conn = await db.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
        await conn.execute(CREATE_TABLE)
        done = await applied(conn)
        pending = []
        for migration in load():
            if migration.version not in done:
                pending.append(migration)
            elif done[migration.version] != migration.checksum:
                label = f"{migration.version:04d}_{migration.name}"
                raise MailfoldError(f"migrations: {label} changed since it was applied")
        for migration in pending:
            await apply(conn, migration)
        if any(m.rebuilds_reports for m in pending):
            await rebuild_reports(conn)
        if await conn.fetchval("SELECT to_regproc('mailfold_ensure_partitions') IS NOT NULL"):
            await conn.execute("SELECT mailfold_ensure_partitions()")
        return [f"{m.version:04d}_{m.name}" for m in pending]
    finally:
        await conn.close()  # ends the session and its advisory lock
