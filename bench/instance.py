"""The benchmark's own Kafka and PostgreSQL (started by scripts/bench on their own ports and
state folder), and the per-run resources on them: databases cloned from a template with the
schema applied, fresh topics, an account with SendGrid configured, settings for child processes.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import asyncpg

from bench import sendgrid
from bench.procs import ROOT
from service import db, kafka, migrations
from service.auth import create_account
from service.providers import save
from service.settings import Settings

TEMPLATE = "bench_template"


@dataclass(frozen=True)
class Account:
    account: str
    login: str
    secret: str


class Instance:
    """Where the benchmark runs: a broker, a PostgreSQL cluster and a scratch folder."""

    def __init__(self, state: Path, kafka_bootstrap: str, pg_url: str, run_tag: str) -> None:
        self.state = state
        self.kafka_bootstrap = kafka_bootstrap
        self.pg_url = pg_url.rstrip("/")  # postgresql://user@host:port, no database
        self.tag = run_tag
        self.scratch = state / "runs" / run_tag
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.secret_key = secrets.token_hex(32)
        self.signing_key = sendgrid.new_key()
        self.key_file = self.scratch / "sendgrid-key.pem"
        self.key_file.write_bytes(sendgrid.private_pem(self.signing_key))
        self._dbs: list[str] = []
        self._count = 0

    @classmethod
    def from_env(cls, run_tag: str) -> Instance:
        state = Path(os.environ.get("MAILFOLD_STATE_DIR", ROOT / ".mailfold" / "bench"))
        bootstrap = os.environ.get("MAILFOLD_KAFKA_BOOTSTRAP", "127.0.0.1:49092")
        pg = os.environ.get("MAILFOLD_BENCH_PG", "postgresql://mailfold@127.0.0.1:45432")
        return cls(state, bootstrap, pg, run_tag)

    def dsn(self, database: str) -> str:
        return f"{self.pg_url}/{database}"

    def name(self, what: str) -> str:
        self._count += 1
        return f"b{self.tag}_{self._count:03d}_{what}"

    # -- PostgreSQL ------------------------------------------------------------------------

    async def admin(self) -> asyncpg.Connection[Any]:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(self.dsn("postgres"))
        return conn

    async def prepare_template(self) -> None:
        """A database built by the migrations, cloned for every run."""
        conn = await self.admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await conn.close()
        await migrations.migrate(self.dsn(TEMPLATE))

    async def fresh_database(self, what: str) -> str:
        """A new database cloned from the template; returns its DSN."""
        name = self.name(what)
        conn = await self.admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        finally:
            await conn.close()
        self._dbs.append(name)
        return self.dsn(name)

    async def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[1]
        conn = await self.admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        if name in self._dbs:
            self._dbs.remove(name)

    async def drop_all(self) -> None:
        for name in list(self._dbs):
            await self.drop_database(self.dsn(name))
        conn = await self.admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        finally:
            await conn.close()

    async def postgres_version(self) -> str:
        conn = await self.admin()
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    def postmaster_pid(self) -> int:
        return int((self.state / "postgres" / "data" / "postmaster.pid").read_text().split()[0])

    # -- Kafka ------------------------------------------------------------------------------

    def kafka_pid(self) -> int:
        return int((self.state / "kafka" / "kafka.pid").read_text().strip())

    def kafka_version(self) -> str:
        jars = sorted((self.state / "kafka" / "lib").glob("kafka_2.13-*.jar"))
        return jars[0].stem.split("-", 1)[1] if jars else "unknown"

    # -- Settings and accounts --------------------------------------------------------------

    async def settings(self, what: str, database: str, **overrides: Any) -> Settings:
        """Settings of one run: its database, its own topics and groups; topics created."""
        name = self.name(what)
        settings = Settings(
            kafka_bootstrap=self.kafka_bootstrap,
            database_url=database,
            raw_topic=f"{name}.raw",
            events_topic=f"{name}.events",
            dlq_topic=f"{name}.dlq",
            normalize_group=f"{name}-normalize",
            fold_group=f"{name}-fold",
            secret_key=self.secret_key,
            log_level="WARNING",
        )
        settings = replace(settings, **overrides)
        await kafka.ensure_topics(settings)
        return settings

    def env(self, settings: Settings, **extra: str) -> dict[str, str]:
        """The environment a child process reads the same settings from."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFOLD_")}
        for f in fields(Settings):
            env[f"MAILFOLD_{f.name.upper()}"] = str(getattr(settings, f.name))
        env["PYTHONPATH"] = str(ROOT)
        env.update(extra)
        return env

    async def account(self, database: str, name: str = "bench") -> Account:
        """An account with the benchmark's SendGrid verification key configured."""
        conn = await db.connect(database)
        try:
            new = await create_account(conn, self.secret_key, name)
            await save(
                conn,
                self.secret_key,
                new.account,
                "sendgrid",
                options={},
                secret=sendgrid.public_key_text(self.signing_key),
            )
        finally:
            await conn.close()
        return Account(new.account, new.login, new.secret)
