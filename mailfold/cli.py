"""The `mailfold` command: run the service and consumers, manage accounts and providers.

    mailfold init                         migrate the database and create the topics
    mailfold migrate                      apply the database's missing migrations/ in order
    mailfold reports rebuild [ACCOUNT]    report rollups from the ledger (default: every account)
    mailfold serve | normalizer | fold | publisher    run one component in the foreground
    mailfold accounts create NAME [--allow-ip CIDR ...]
    mailfold accounts list | show ACCOUNT | rotate-secret ACCOUNT | disable ACCOUNT | enable ACCOUNT
    mailfold accounts allow-ips ACCOUNT [CIDR ...]
    mailfold providers set ACCOUNT PROVIDER [--secret S] [--slot 1|2] ...
    mailfold providers list ACCOUNT | show ACCOUNT PROVIDER | delete ACCOUNT PROVIDER
    mailfold providers test ACCOUNT PROVIDER FILE [--header 'Name: value' ...]
    mailfold refusals ACCOUNT [PROVIDER] [--limit N]
    mailfold normalize SOURCE FILE [--account A] [--content-type TYPE]
    mailfold replay [--from TIME | --from-offset N] [--source PROVIDER] [--dry-run]
    mailfold dlq list [--reason TEXT] [--since TIME] [--limit N] [--json] | show ID
    mailfold dlq retry ID ... | retry --all [--reason TEXT] [--again]

Exit status (EXIT_* below): 0 done; 1 refused (no such account, a bad value); 2 wrong usage;
3 PostgreSQL or Kafka did not answer; 4 the given input would be refused or cannot be read
(`normalize`, `providers test`). Errors are one line on stderr, never a traceback.

It sits above `service` and `consumers` because it starts both; neither imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson

from consumers import dlq, fold, normalize, publish, replay
from mailfold import check
from service import db, kafka, logs, metrics, migrations, refusals
from service.adapters import SOURCES, derive
from service.auth import create_account, hash_secret, new_secret, parse_networks
from service.errors import MailfoldError, ParseError
from service.events import encode
from service.providers import save
from service.read import reports
from service.settings import Settings
from service.version import VERSION
from service.webhooks import PROVIDERS
from service.webhooks.base import RawRecord

EXIT_OK = 0
EXIT_REFUSED = 1  # the command was refused: no such account, a bad value
EXIT_USAGE = 2  # argparse's own status for wrong usage
EXIT_UNREACHABLE = 3  # PostgreSQL or Kafka did not answer
EXIT_INPUT = 4  # the input given would be refused or cannot be read


def iso_fields(row: Any) -> dict[str, Any]:
    """A row as JSON: times in ISO-8601."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in dict(row).items()}


def out(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    out({"migrations": await migrations.migrate(settings.database_url)})


async def cmd_reports(settings: Settings, args: argparse.Namespace) -> None:
    conn = await db.connect(settings.database_url)
    try:
        if args.account is None:
            out({"rows": await migrations.rebuild_reports(conn)})
        elif await conn.fetchval(db.QUERIES["show_account"], args.account) is None:
            raise MailfoldError(f"no account {args.account!r}")
        else:
            out({"account": args.account, "rows": await reports.rebuild(conn, args.account)})
    finally:
        await conn.close()


async def cmd_init(settings: Settings, args: argparse.Namespace) -> None:
    applied = await migrations.migrate(settings.database_url)
    await kafka.ensure_topics(settings, extra=[settings.suppressions_topic])
    out(
        {
            "migrations": applied,
            "topics": [
                settings.raw_topic,
                settings.events_topic,
                settings.dlq_topic,
                settings.suppressions_topic,
            ],
        }
    )


async def cmd_accounts(settings: Settings, args: argparse.Namespace) -> None:
    conn = await db.connect(settings.database_url)
    try:
        if args.action == "create":
            new = await create_account(conn, settings.secret_key, args.name, args.allow_ip)
            out({"account": new.account, "login": new.login, "secret": new.secret})
        elif args.action == "list":
            for row in await conn.fetch(db.QUERIES["list_accounts"]):
                out(iso_fields(row))
        elif args.action == "show":
            row = await conn.fetchrow(db.QUERIES["show_account"], args.account)
            if row is None:
                raise MailfoldError(f"no account {args.account!r}")
            out(iso_fields(row))
        elif args.action in ("disable", "enable"):
            query, disable = db.QUERIES["set_account_disabled"], args.action == "disable"
            row = await conn.fetchrow(query, args.account, disable)
            if row is None:
                raise MailfoldError(f"no account {args.account!r}")
            out(iso_fields({"account": args.account, "disabled_at": row["disabled_at"]}))
        elif args.action == "rotate-secret":
            secret = new_secret()
            hashed = hash_secret(settings.secret_key, secret)
            done = await conn.execute(db.QUERIES["rotate_account_secret"], args.account, hashed)
            if done.endswith(" 0"):
                raise MailfoldError(f"no account {args.account!r}")
            out({"account": args.account, "secret": secret})
        else:
            nets = parse_networks(args.cidrs)
            done = await conn.execute(db.QUERIES["set_allowed_ips"], args.account, nets)
            if done.endswith(" 0"):
                raise MailfoldError(f"no account {args.account!r}")
            out({"account": args.account, "allowed_ips": nets})
    finally:
        await conn.close()


async def show_or_delete_providers(settings: Settings, args: argparse.Namespace) -> None:
    conn = await db.connect(settings.database_url)
    try:
        if not await conn.fetchval(db.QUERIES["find_account"], args.account):
            raise MailfoldError(f"no account {args.account!r}")
        if args.action == "list":
            for row in await conn.fetch(db.QUERIES["list_provider_settings"], args.account):
                out(iso_fields(row))
            return
        if args.action == "show":
            query = db.QUERIES["show_provider_settings"]
            row = await conn.fetchrow(query, args.account, args.provider)
            if row is None:
                raise MailfoldError(f"no {args.provider} settings for account {args.account!r}")
            out(iso_fields(row))
            return
        done = await conn.execute(
            db.QUERIES["delete_provider_settings"], args.account, args.provider
        )
        if done.endswith(" 0"):
            raise MailfoldError(f"no {args.provider} settings for account {args.account!r}")
        out({"account": args.account, "provider": args.provider, "deleted": True})
    finally:
        await conn.close()


def pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MailfoldError(f"{flag} expects KEY=VALUE, got {item!r}")
        result[key] = value
    return result


async def cmd_providers(settings: Settings, args: argparse.Namespace) -> None:
    if args.action in ("list", "show", "delete"):
        await show_or_delete_providers(settings, args)
        return
    if args.action == "test":
        await cmd_providers_test(settings, args)
        return
    options: dict[str, Any] = pairs(args.option, "--option")
    if args.webhook_url:
        options["webhook_url"] = args.webhook_url
    if args.topic_arn:
        options["topic_arns"] = args.topic_arn
    if args.user:
        options["user"] = args.user
    if args.allow_ip:
        options["allowed_ips"] = parse_networks(args.allow_ip)
    if args.time_zone:
        try:
            ZoneInfo(args.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise MailfoldError(f"unknown time zone {args.time_zone!r}") from exc
        options["time_zone"] = args.time_zone
    if args.metadata_key:
        options["metadata_keys"] = pairs(args.metadata_key, "--metadata-key")
    secret = args.secret
    if args.secret_file:
        secret = Path(args.secret_file).read_text().strip()
    check_secret(args.provider, secret)
    conn = await db.connect(settings.database_url)
    try:
        if not await conn.fetchval(db.QUERIES["find_account"], args.account):
            raise MailfoldError(f"no account {args.account!r}")
        await save(
            conn,
            settings.secret_key,
            args.account,
            args.provider,
            options=options,
            secret=secret,
            slot=args.slot,
            retire_slot=args.retire_slot,
        )
    finally:
        await conn.close()
    # Never echo the secret itself.
    out(
        {
            "account": args.account,
            "provider": args.provider,
            "options": options,
            "secret_slot": args.slot if secret else None,
            "retired_slot": args.retire_slot,
        }
    )


async def cmd_providers_test(settings: Settings, args: argparse.Namespace) -> None:
    """Print the events a captured request would yield; check.Refused says why it would not."""
    body = read_input(args.file)
    headers = check.parse_headers(args.header)
    events = await check.check(
        settings, args.account, args.provider, body, headers, url=args.url, remote=args.remote
    )
    for event in events:
        sys.stdout.buffer.write(encode(event) + b"\n")


async def cmd_refusals(settings: Settings, args: argparse.Namespace) -> None:
    """An account's latest refused webhook requests, newest first, one JSON document each."""
    if args.provider is not None and args.provider not in PROVIDERS:
        raise MailfoldError(f"unknown provider {args.provider!r} (one of {', '.join(PROVIDERS)})")
    conn = await db.connect(settings.database_url)
    try:
        if not await conn.fetchval(db.QUERIES["find_account"], args.account):
            raise MailfoldError(f"no account {args.account!r}")
        rows = await refusals.latest(conn, args.account, args.provider, args.limit)
    finally:
        await conn.close()
    for row in rows:
        out(refusals.refusal_json(row))


def check_secret(provider: str, secret: str | None) -> None:
    """Refuse, before anything is stored, a secret the provider's adapter could never use."""
    adapter = PROVIDERS.get(provider)
    if secret is None or adapter is None or adapter.check_secret is None:
        return
    try:
        adapter.check_secret(secret)
    except ValueError as exc:
        raise MailfoldError(f"{provider}: the secret is refused: {exc}") from exc


def read_input(file: str) -> bytes:
    """A file's bytes, or stdin's for `-`; a file that cannot be read is one line, not OSError
    (which the command reports as an unreachable database)."""
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise MailfoldError(f"cannot read {file}: {exc.strerror or exc}") from exc


def cmd_normalize(args: argparse.Namespace) -> int:
    body = read_input(args.file)
    record = RawRecord(
        account=args.account,
        source=args.source,
        body=body,
        content_type=args.content_type,
        received_at=datetime.now(UTC),
        headers=pairs(args.header, "--header"),
    )
    try:
        events = derive(record)
    except ParseError as exc:
        print(f"mailfold normalize: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    for event in events:
        sys.stdout.buffer.write(encode(event) + b"\n")
    return 0


def parse_time(text: str, flag: str) -> datetime:
    try:
        return replay.parse_since(text)
    except ValueError as exc:
        raise MailfoldError(f"{flag} expects an ISO-8601 date or time: {exc}") from exc


async def cmd_replay(settings: Settings, args: argparse.Namespace) -> None:
    since = None
    if args.since:
        try:
            since = replay.parse_since(args.since)
        except ValueError as exc:
            raise MailfoldError(f"--from expects an ISO-8601 date or time: {exc}") from exc
    summary = await replay.serve(
        settings,
        since=since,
        from_offset=args.from_offset,
        source=args.source,
        dry_run=args.dry_run,
    )
    out({**summary.as_dict(), "dry_run": args.dry_run})


async def cmd_dlq(settings: Settings, args: argparse.Namespace) -> None:
    if args.action == "list":
        since = parse_time(args.since, "--since") if args.since else None
        letters = await dlq.list_letters(settings, args.reason, since=since, limit=args.limit)
        if args.json:
            out([x.as_dict() for x in letters])
        else:
            sys.stdout.write(dlq.table(letters) + "\n")
    elif args.action == "show":
        out(await dlq.show(settings, args.id))
    else:
        if bool(args.ids) == args.all:
            raise MailfoldError("dlq retry takes letter ids (PARTITION:OFFSET) or --all")
        retried = await dlq.retry(
            settings, args.ids, every=args.all, reason=args.reason, again=args.again
        )
        out({"retried": retried})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mailfold", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"mailfold {VERSION}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="migrate the database and create the Kafka topics")
    sub.add_parser("migrate", help="apply the database's missing migrations, in order")
    rebuild = sub.add_parser("reports", help="the report builder's rollups").add_subparsers(
        dest="action", required=True
    )
    rebuild.add_parser(
        "rebuild", help="recompute an account's rollups from the ledger (none given: every one)"
    ).add_argument("account", nargs="?")
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    sub.add_parser("normalizer", help="run the normalize consumer")
    sub.add_parser("fold", help="run the fold consumer")
    sub.add_parser("publisher", help="publish suppressions to their Kafka topic")

    acc = sub.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    create = acc.add_parser("create", help="create an account; prints its login and secret")
    create.add_argument("name")
    create.add_argument("--allow-ip", action="append", metavar="CIDR")
    allow = acc.add_parser("allow-ips", help="replace the IP allow list (none: any address)")
    allow.add_argument("account")
    allow.add_argument("cidrs", nargs="*")
    acc.add_parser("list", help="every account, its login and configured providers")
    rotate = acc.add_parser("rotate-secret", help="a new secret (printed once); the old one ends")
    rotate.add_argument("account")
    for action, text in [
        ("show", "one account: login, allow list, providers, whether disabled (no secret)"),
        ("disable", "refuse the account's webhooks, Event API and read API (data is kept)"),
        ("enable", "accept a disabled account's requests again"),
    ]:
        acc.add_parser(action, help=text).add_argument("account")

    prov = sub.add_parser("providers", help="configure provider webhooks").add_subparsers(
        dest="action", required=True
    )
    plist = prov.add_parser("list", help="an account's provider settings (never the secrets)")
    plist.add_argument("account")
    pshow = prov.add_parser("show", help="one provider's settings (never the secrets)")
    pshow.add_argument("account")
    pshow.add_argument("provider")
    ptest = prov.add_parser(
        "test", help="check a captured request against the stored credentials; print its events"
    )
    ptest.add_argument("account")
    ptest.add_argument("provider")
    ptest.add_argument("file", help="the captured request body, or - for stdin")
    ptest.add_argument("--header", action="append", metavar="'NAME: VALUE'")
    ptest.add_argument("--url", help="the URL the request was posted to (default: its webhook)")
    ptest.add_argument("--remote", metavar="ADDRESS", help="the sender's address (allow lists)")
    pdel = prov.add_parser("delete", help="forget a provider's settings and secrets")
    pdel.add_argument("account")
    pdel.add_argument("provider")
    pset = prov.add_parser("set", help="set a provider's credentials for an account")
    pset.add_argument("account")
    pset.add_argument("provider")
    pset.add_argument("--secret", help="signing key, public key or user:password (see README)")
    pset.add_argument("--secret-file", help="read the secret from a file (e.g. a PEM key)")
    pset.add_argument("--slot", type=int, choices=[1, 2], default=1, help="secret slot (rotation)")
    pset.add_argument("--retire-slot", type=int, choices=[1, 2], help="delete a slot's secret")
    pset.add_argument("--webhook-url", help="Mandrill: the exact URL the webhook posts to")
    pset.add_argument("--topic-arn", action="append", help="SES: an allowed SNS topic ARN")
    pset.add_argument("--user", help="Basic-auth user name (Postmark, SparkPost)")
    pset.add_argument("--metadata-key", action="append", metavar="FIELD=KEY")
    pset.add_argument(
        "--allow-ip", action="append", metavar="CIDR", help="inwise: source allow list"
    )
    pset.add_argument("--time-zone", help="inwise: the IANA zone of its zone-less times")
    pset.add_argument("--option", action="append", metavar="KEY=VALUE")

    refused = sub.add_parser("refusals", help="an account's latest refused webhook requests")
    refused.add_argument("account")
    refused.add_argument("provider", nargs="?")
    refused.add_argument("--limit", type=int, default=refusals.KEPT, metavar="N")

    norm = sub.add_parser("normalize", help="print the canonical events a raw body yields")
    norm.add_argument("source", choices=SOURCES)
    norm.add_argument("file", help="a file with one raw request body, or - for stdin")
    norm.add_argument("--account", default="local")
    norm.add_argument("--content-type", default="application/json")
    norm.add_argument("--header", action="append", metavar="NAME=VALUE")

    rep = sub.add_parser("replay", help="re-derive mailfold.events from mailfold.raw")
    start = rep.add_mutually_exclusive_group()
    start.add_argument("--from", dest="since", metavar="TIME", help="ISO time (UTC if no zone)")
    start.add_argument("--from-offset", type=int, metavar="N", help="offset N of every partition")
    rep.add_argument("--source", choices=SOURCES, help="only raw records of this source")
    rep.add_argument("--dry-run", action="store_true", help="derive and count, produce nothing")

    dead = sub.add_parser("dlq", help="the dead-letter topic").add_subparsers(
        dest="action", required=True
    )
    dlist = dead.add_parser("list", help="what was set aside, when, from where and why")
    dlist.add_argument("--reason", metavar="TEXT", help="only letters whose reason contains TEXT")
    dlist.add_argument("--since", metavar="TIME", help="only letters set aside since (ISO, UTC)")
    dlist.add_argument("--limit", type=int, metavar="N", help="only the newest N letters")
    dlist.add_argument("--json", action="store_true", help="JSON instead of a table")
    dshow = dead.add_parser("show", help="one dead letter: headers and body")
    dshow.add_argument("id", metavar="ID", help="PARTITION:OFFSET as dlq list shows")
    dretry = dead.add_parser("retry", help="produce letters again to their original topic")
    dretry.add_argument("ids", nargs="*", metavar="ID")
    dretry.add_argument("--all", action="store_true", help="every letter (see --reason)")
    dretry.add_argument("--reason", metavar="TEXT", help="with --all: only reasons with TEXT")
    dretry.add_argument(
        "--again", action="store_true", help="with --all: also letters retried before"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "normalize":  # offline: needs no settings, no secret key
        try:
            return cmd_normalize(args)
        except MailfoldError as exc:
            print(f"mailfold: {exc.message}", file=sys.stderr)
            return EXIT_REFUSED
    settings = Settings.from_env()
    try:
        logs.configure(settings.log_level, settings.log_format)
        metrics.configure(settings.metrics_host)
        if args.command == "serve":
            from service.app import create_app
            from service.server import Server

            Server.for_app(
                create_app(settings), args.host or settings.host, args.port or settings.port
            ).run()
        elif args.command == "normalizer":
            asyncio.run(normalize.serve(settings))
        elif args.command == "fold":
            asyncio.run(fold.serve(settings))
        elif args.command == "publisher":
            asyncio.run(publish.serve(settings))
        elif args.command == "init":
            asyncio.run(cmd_init(settings, args))
        elif args.command == "migrate":
            asyncio.run(cmd_migrate(settings, args))
        elif args.command == "reports":
            asyncio.run(cmd_reports(settings, args))
        elif args.command == "accounts":
            asyncio.run(cmd_accounts(settings, args))
        elif args.command == "providers":
            asyncio.run(cmd_providers(settings, args))
        elif args.command == "refusals":
            asyncio.run(cmd_refusals(settings, args))
        elif args.command == "replay":
            asyncio.run(cmd_replay(settings, args))
        elif args.command == "dlq":
            asyncio.run(cmd_dlq(settings, args))
    except check.Refused as exc:
        print(f"mailfold: would be refused: {exc.message}", file=sys.stderr)
        return EXIT_INPUT
    except MailfoldError as exc:
        print(f"mailfold: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    except UNREACHABLE as exc:
        print(f"mailfold: {unreachable(exc, settings)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_OK


# A database or broker that does not answer: one line naming it, not a traceback.
UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    *kafka.BROKER_ERRORS,
)


def unreachable(exc: BaseException, settings: Settings) -> str:
    """What could not be reached, where (never the DSN's password), and how to start it."""
    if isinstance(exc, kafka.BROKER_ERRORS):
        what = f"Kafka at {settings.kafka_bootstrap} (MAILFOLD_KAFKA_BOOTSTRAP)"
    else:
        dsn = urlsplit(settings.database_url)
        where = f"{dsn.hostname}:{dsn.port or 5432}{dsn.path}"
        what = f"PostgreSQL at {where} (MAILFOLD_DATABASE_URL)"
    return f"cannot reach {what}: {exc}; is it running? (locally: scripts/services start)"
