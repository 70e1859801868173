"""Versioned migrations on the real database: from empty they build exactly what schema.sql
describes; a database of the first release upgrades to it keeping every row, with its report
rollups rebuilt; runs at once apply each migration once; the ledger's partitions are made ahead
and take in what waited in events_default."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from starlette.datastructures import QueryParams

from consumers import fold
from service import db, migrations
from service.errors import MailfoldError
from service.read import reports
from service.settings import Settings
from tests.conftest import DATABASE, missing

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
Blank = Callable[[], Awaitable[str]]
PG_DUMP = shutil.which("pg_dump") or os.path.join(
    os.environ.get("MAILFOLD_PG_BIN", "/usr/lib/postgresql/15/bin"), "pg_dump"
)


@pytest.fixture
async def blank() -> AsyncIterator[Blank]:
    """Makes empty databases (no schema at all), dropped after the test."""
    made: list[str] = []
    try:
        admin = await asyncpg.connect(f"{DATABASE}/postgres", timeout=10)
    except Exception as exc:
        missing(f"PostgreSQL at {DATABASE}", exc)

    async def make() -> str:
        name = f"mailfold_test_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{DATABASE}/{name}"

    try:
        yield make
    finally:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def schema_of(dsn: str) -> list[str]:
    """The database's catalog as pg_dump writes it: tables, columns with types, defaults,
    nullability and generation, indexes, constraints, functions with their bodies, triggers,
    partitions and comments."""
    if not os.access(PG_DUMP, os.X_OK):
        missing("pg_dump", FileNotFoundError(PG_DUMP))
    dump = subprocess.run(
        [PG_DUMP, "--schema-only", "--no-owner", "--no-privileges", "--dbname", dsn],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PGTZ": "UTC"},
    ).stdout
    # pg_dump's own version and its per-run \restrict key are not the schema
    return [
        line
        for line in dump.splitlines()
        if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict"))
    ]


async def from_schema_sql(dsn: str) -> str:
    await db.apply_schema(dsn)
    conn = await db.connect(dsn)
    try:
        await conn.execute("SELECT mailfold_ensure_partitions()")
    finally:
        await conn.close()
    return dsn


def assert_same_schema(got: list[str], want: list[str]) -> None:
    missing_lines = sorted(set(want) - set(got))
    extra_lines = sorted(set(got) - set(want))
    assert (missing_lines, extra_lines) == ([], [])
    assert got == want


async def test_migrations_from_empty_build_what_schema_sql_describes(blank: Blank) -> None:
    migrated, reference = await blank(), await from_schema_sql(await blank())
    applied = await migrations.migrate(migrated)
    assert applied == [f"{m.version:04d}_{m.name}" for m in migrations.load()]
    assert_same_schema(schema_of(migrated), schema_of(reference))


async def test_runs_at_once_apply_each_migration_once_and_again_nothing(blank: Blank) -> None:
    dsn = await blank()
    runs = await asyncio.gather(*(migrations.migrate(dsn) for _ in range(3)))
    assert sorted(name for run in runs for name in run) == sorted(
        f"{m.version:04d}_{m.name}" for m in migrations.load()
    )
    assert await migrations.migrate(dsn) == []
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    finally:
        await conn.close()
    assert {(r["version"], r["name"], r["checksum"]) for r in rows} == {
        (m.version, m.name, m.checksum) for m in migrations.load()
    }


async def test_a_changed_migration_is_refused(blank: Blank) -> None:
    dsn = await blank()
    await migrations.migrate(dsn)
    conn = await db.connect(dsn)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    finally:
        await conn.close()
    with pytest.raises(MailfoldError, match="0001_baseline changed"):
        await migrations.migrate(dsn)


# -- upgrading the first release's database ----------------------------------------------------

# Rows in the first release's columns: two accounts, a delivery with a sent, delivered, opened and
# clicked recipient, a hard bounce, a drop, an unattributed event and one of 2040 (default).
RELEASE_DATA = """
INSERT INTO accounts (account_id, name, login, secret_hash, time_zone)
VALUES ('acme', 'Acme', 'acme-login', '\\x01', 'UTC'),
       ('beta', 'Beta', 'beta-login', '\\x02', 'UTC');
INSERT INTO provider_settings (account_id, provider, options) VALUES ('acme', 'sendgrid', '{}');
INSERT INTO events (event_id, occurred_at, account_id, source, type, native_type, campaign_id,
                    delivery_id, message_id, recipient_key, email, machine, bounce_class,
                    bounce_code, bounce_reason, url, user_agent, ip)
VALUES
 ('00000000-0000-0000-0000-000000000001', '2025-06-01 10:00Z', 'acme', 'sendgrid', 'sent',
  'processed', 'c1', 'd1', 'm1', 'ann@example.com', 'ann@example.com', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL),
 ('00000000-0000-0000-0000-000000000002', '2025-06-01 10:01Z', 'acme', 'sendgrid', 'delivered',
  'delivered', 'c1', 'd1', 'm1', 'ann@example.com', 'ann@example.com', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL),
 ('00000000-0000-0000-0000-000000000003', '2025-06-01 12:30Z', 'acme', 'sendgrid', 'opened',
  'open', 'c1', 'd1', 'm1', 'ann@example.com', 'ann@example.com', false, NULL, NULL, NULL,
  NULL, 'Mozilla/5.0', '8.8.8.8'),
 ('00000000-0000-0000-0000-000000000004', '2025-06-02 08:00Z', 'acme', 'sendgrid', 'clicked',
  'click', 'c1', 'd1', 'm1', 'ann@example.com', 'ann@example.com', false, NULL, NULL, NULL,
  'https://example.com/a', 'Mozilla/5.0', '8.8.8.8'),
 ('00000000-0000-0000-0000-000000000005', '2025-06-01 10:00Z', 'acme', 'mailgun', 'sent',
  'accepted', 'c1', 'd1', 'm2', 'bob@example.com', 'bob@example.com', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL),
 ('00000000-0000-0000-0000-000000000006', '2025-06-01 10:05Z', 'acme', 'mailgun', 'bounced',
  'failed', 'c1', 'd1', 'm2', 'bob@example.com', 'bob@example.com', NULL, 'hard', '5.1.1',
  '550 5.1.1 user unknown', NULL, NULL, NULL),
 ('00000000-0000-0000-0000-000000000007', '2025-06-01 10:00Z', 'acme', 'sendgrid', 'dropped',
  'dropped', 'c1', 'd1', 'm3', 'cat@example.com', 'cat@example.com', NULL, NULL, NULL,
  'Unsubscribed Address', NULL, NULL, NULL),
 ('00000000-0000-0000-0000-000000000008', '2025-06-03 09:00Z', 'beta', 'sendgrid', 'bounced',
  'bounce', NULL, NULL, 'm9', 'dan@example.com', 'dan@example.com', NULL, 'soft', NULL, NULL,
  NULL, NULL, NULL),
 ('00000000-0000-0000-0000-000000000009', '2040-02-01 09:00Z', 'beta', 'sendgrid', 'sent',
  'processed', 'c2', 'd2', 'm8', 'eve@example.com', 'eve@example.com', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL);
INSERT INTO messages (account_id, message_id, recipient_key, campaign_id, delivery_id)
VALUES ('acme', 'm1', 'ann@example.com', 'c1', 'd1'), ('acme', 'm2', 'bob@example.com', 'c1', 'd1');
INSERT INTO recipients (account_id, delivery_id, recipient_key, campaign_id, email, sent_at,
                        delivered_at, opened_at, human_opened_at, last_opened_at, open_count,
                        open_human_count, clicked_at, human_clicked_at, last_clicked_at,
                        click_count, click_human_count, bounced_at, hard_bounced_at,
                        bounce_class, bounce_code, bounce_reason, dropped_at, status_rank,
                        first_event_at, last_event_at, event_count)
VALUES
 ('acme', 'd1', 'ann@example.com', 'c1', 'ann@example.com', '2025-06-01 10:00Z',
  '2025-06-01 10:01Z', '2025-06-01 12:30Z', '2025-06-01 12:30Z', '2025-06-01 12:30Z', 1, 1,
  '2025-06-02 08:00Z', '2025-06-02 08:00Z', '2025-06-02 08:00Z', 1, 1, NULL, NULL, NULL, NULL,
  NULL, NULL, 7, '2025-06-01 10:00Z', '2025-06-02 08:00Z', 4),
 ('acme', 'd1', 'bob@example.com', 'c1', 'bob@example.com', '2025-06-01 10:00Z', NULL, NULL,
  NULL, NULL, 0, 0, NULL, NULL, NULL, 0, 0, '2025-06-01 10:05Z', '2025-06-01 10:05Z', 'hard',
  '5.1.1', '550 5.1.1 user unknown', NULL, 9, '2025-06-01 10:00Z', '2025-06-01 10:05Z', 2),
 ('acme', 'd1', 'cat@example.com', 'c1', 'cat@example.com', NULL, NULL, NULL, NULL, NULL, 0, 0,
  NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, '2025-06-01 10:00Z', 3,
  '2025-06-01 10:00Z', '2025-06-01 10:00Z', 1);
INSERT INTO delivery_stats (account_id, delivery_id, hour, type, event_count, human_count)
VALUES ('acme', 'd1', '2025-06-01 10:00Z', 'sent', 2, 0),
       ('acme', 'd1', '2025-06-01 12:00Z', 'opened', 1, 1);
INSERT INTO link_stats (account_id, delivery_id, url, recipient_key, first_at, click_count)
VALUES ('acme', 'd1', 'https://example.com/a', 'ann@example.com', '2025-06-02 08:00Z', 1);
INSERT INTO suppressions (account_id, email, reason, reason_rank, reason_at, event_id,
                          campaign_id, delivery_id, first_at)
VALUES ('acme', 'bob@example.com', 'hard_bounce', 2, '2025-06-01 10:05Z',
        '00000000-0000-0000-0000-000000000006', 'c1', 'd1', '2025-06-01 10:05Z');
INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
VALUES ('mailfold-fold', 'mailfold.events', 0, 9);
INSERT INTO feed_positions (name, feed_xact, feed_seq) VALUES ('suppressions', '1', 1);
INSERT INTO dead_letter_retries (topic, partition, "offset") VALUES ('mailfold.dlq', 0, 3);
INSERT INTO webhook_nonces (account_id, provider, nonce, expires_at)
VALUES ('acme', 'mailgun', 'n1', '2030-01-01Z');
INSERT INTO sns_subscriptions (account_id, topic_arn, status)
VALUES ('acme', 'arn:aws:sns:eu-west-1:1:t', 'confirmed');
"""


async def contents(conn: Any, columns: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    """Per table: its row count and a digest of its rows in the given columns."""
    found = {}
    for table, names in columns.items():
        cols = ", ".join(f'"{c}"' for c in names)
        found[table] = tuple(
            await conn.fetchrow(
                f"SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), ''))"
                f" FROM (SELECT {cols} FROM {table}) r"
            )
        )
    return found


async def release_columns(conn: Any) -> dict[str, list[str]]:
    """Every table of the release (partitions included) and its columns, in order."""
    rows = await conn.fetch(
        """SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position) AS names
           FROM information_schema.columns
           WHERE table_schema = 'public'
             AND table_name IN (SELECT tablename FROM pg_tables WHERE schemaname = 'public')
           GROUP BY 1 ORDER BY 1"""
    )
    return {row["table_name"]: list(row["names"]) for row in rows}


async def test_a_release_database_upgrades_keeping_every_row(blank: Blank) -> None:
    old, reference = await blank(), await from_schema_sql(await blank())
    baseline = migrations.load()[0]
    conn = await db.connect(old)
    try:
        # as the first release left it: its schema.sql applied, no migrations recorded
        await conn.execute(baseline.sql)
        await conn.execute(RELEASE_DATA)
        columns = await release_columns(conn)
        before = await contents(conn, columns)
        assert before["events_default"][0] == 1 and before["delivery_counts"][0] == 1
    finally:
        await conn.close()

    applied = await migrations.migrate(old)

    assert applied == [f"{m.version:04d}_{m.name}" for m in migrations.load()]
    assert_same_schema(schema_of(old), schema_of(reference))
    conn = await db.connect(old)
    try:
        assert await contents(conn, columns) == before
        sources = await conn.fetch(
            "SELECT recipient_key, source, drop_kind FROM recipients ORDER BY 1"
        )
        assert [tuple(r) for r in sources] == [
            ("ann@example.com", "sendgrid", None),
            ("bob@example.com", "mailgun", None),
            ("cat@example.com", "sendgrid", "unsubscribed"),
        ]
        # the rollups were rebuilt from the ledger: reports answer as the ledger recomputed
        assert await conn.fetchval("SELECT count(*) FROM report_hours WHERE live") > 0
        for query in (
            "fields=date,sum_sended,sum_delivered,sum_opened,sum_opened_unique,sum_clicked,"
            "sum_bounce_xistent,sum_stop_total&date=ge:2025-05-30&date=le:2025-06-05",
            "fields=post,message,source,sum_sended,sum_stop_unsubscr,sum_bounce_total,delivery_rate"
            "&date=ge:2025-05-30&date=le:2025-06-05",
            "fields=client,country_name,sum_opened&date=ge:2025-05-30&date=le:2025-06-05",
        ):
            report = reports.parse(QueryParams(query), date(2025, 6, 5))
            got = await reports.run(conn, "acme", report)
            assert got == await reports.run(conn, "acme", report, ledger=True), query
            assert got["result"], query
    finally:
        await conn.close()


# -- the command -------------------------------------------------------------------------------


def command(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailfold", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "MAILFOLD_DATABASE_URL": database,
            "MAILFOLD_SECRET_KEY": "k",
        },
    )


async def test_migrate_and_reports_rebuild_from_the_command(database: str) -> None:
    done = command(database, "migrate")
    assert (done.returncode, json.loads(done.stdout)) == (0, {"migrations": []}), done.stderr
    conn = await db.connect(database)
    try:
        await conn.execute(RELEASE_DATA.split("INSERT INTO messages", 1)[0])
        await conn.execute("DELETE FROM report_hours")
    finally:
        await conn.close()

    one = command(database, "reports", "rebuild", "acme")
    every = command(database, "reports", "rebuild")
    unknown = command(database, "reports", "rebuild", "nobody")

    assert one.returncode == 0 and json.loads(one.stdout)["rows"] > 0, one.stderr
    # the other account's one event: a row in report_hours and one in report_days
    assert json.loads(every.stdout) == {"rows": json.loads(one.stdout)["rows"] + 2}
    assert (unknown.returncode, unknown.stderr) == (1, "mailfold: no account 'nobody'\n")


# -- the ledger's partitions -------------------------------------------------------------------


async def test_an_event_of_a_year_without_partition_moves_into_its_own(blank: Blank) -> None:
    dsn = await blank()
    await migrations.migrate(dsn)
    conn = await db.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO events (event_id, occurred_at, account_id, source, type, native_type,
                                   delivery_id, recipient_key)
               VALUES ('00000000-0000-0000-0000-0000000020a0', '2040-03-01 00:00Z', 'acme',
                       'sendgrid', 'sent', 'processed', 'd1', 'ann@example.com'),
                      ('00000000-0000-0000-0000-0000000020a1', '2041-12-31 23:59Z', 'acme',
                       'sendgrid', 'sent', 'processed', 'd1', 'bob@example.com')"""
        )
        where = "SELECT tableoid::regclass::text FROM events WHERE event_id = $1"
        assert await conn.fetchval(where, uuid.UUID(int=0x20A0)) == "events_default"
        await conn.execute("SELECT mailfold_ensure_partitions()")  # two years: not yet 2040
        assert await conn.fetchval(where, uuid.UUID(int=0x20A0)) == "events_default"

        years_ahead = 2041 - date.today().year
        made = await conn.fetchval(
            "SELECT mailfold_ensure_partitions(make_interval(years => $1))", years_ahead
        )

        assert made == 2042 - max(2036, date.today().year)
        assert await conn.fetchval(where, uuid.UUID(int=0x20A0)) == "events_2040"
        assert await conn.fetchval(where, uuid.UUID(int=0x20A1)) == "events_2041"
        assert await conn.fetchval("SELECT count(*) FROM events_default") == 0
        assert await conn.fetchval("SELECT count(*) FROM events") == 2
        assert await conn.fetchval("SELECT mailfold_ensure_partitions(interval '15 years')") >= 0
        # the partitions of the release stay as they were
        bounds = await conn.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'events_2035'"
        )
        assert bounds == "FOR VALUES FROM ('2035-01-01 00:00:00+00') TO ('2036-01-01 00:00:00+00')"
    finally:
        await conn.close()


async def test_the_fold_makes_a_missing_partition_of_the_coming_years(database: str) -> None:
    conn = await db.connect(database)
    try:
        await conn.execute(f"DROP TABLE events_{date.today().year + 1}")
        consumer = fold.Fold(Settings(database_url=database, secret_key="k"))
        try:
            await consumer.keep_partitions()
        finally:
            await consumer.close()
        made = await conn.fetchval(
            "SELECT to_regclass($1)::text", f"events_{date.today().year + 1}"
        )
        assert made == f"events_{date.today().year + 1}"
    finally:
        await conn.close()


async def test_partitions_made_at_once_by_two_sessions_are_made_once(database: str) -> None:
    years = [date.today().year + 1, date.today().year + 2]
    conns = [await db.connect(database) for _ in range(3)]
    try:
        await conns[0].execute(";".join(f"DROP TABLE events_{y}" for y in years))
        made = await asyncio.gather(
            *(c.fetchval("SELECT mailfold_ensure_partitions()") for c in conns)
        )
        assert sum(made) == 2
        for y in years:
            assert await conns[0].fetchval("SELECT to_regclass($1)::text", f"events_{y}")
    finally:
        for c in conns:
            await c.close()
