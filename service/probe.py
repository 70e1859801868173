"""Readiness probes the service scripts use: a real connection, with a timeout.

python -m service.probe kafka HOST:PORT [--timeout S]
python -m service.probe postgres DSN [--timeout S]
python -m service.probe createdb DSN NAME
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from service.kafka import cluster_answers


async def _postgres(dsn: str, timeout: float) -> None:
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def _createdb(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="service.probe")
    parser.add_argument("what", choices=["kafka", "postgres", "createdb"])
    parser.add_argument("target")
    parser.add_argument("name", nargs="?")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        if args.what == "kafka":
            asyncio.run(cluster_answers(args.target, args.timeout))
        elif args.what == "postgres":
            asyncio.run(_postgres(args.target, args.timeout))
        else:
            asyncio.run(_createdb(args.target, args.name))
    except Exception as exc:
        print(f"{args.what}: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
