"""`mailfold providers test`: what a captured webhook request would get, without posting it.

The request is checked exactly as the service checks it (the adapter's verify over the raw
bytes with the account's stored credentials, then its parse), so an operator can tell a wrong
secret from a wrong URL from a stale capture. Nothing is produced and no nonce is remembered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service import db
from service.adapters import derive
from service.app import kept_headers
from service.errors import MailfoldError, ParseError
from service.events import Event
from service.providers import CredentialStore, metadata_keys
from service.settings import Settings
from service.sns_client import SnsClient
from service.webhooks import PROVIDERS
from service.webhooks.base import Context, RawRecord, WebhookRequest


class Refused(MailfoldError):
    """The captured request would be refused; the message is the service's reason."""


def parse_headers(values: list[str] | None) -> dict[str, str]:
    """`Name: value` pairs (as curl -H takes them) with lower-cased names."""
    headers = {}
    for item in values or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise MailfoldError(f"--header expects 'Name: value', got {item!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


async def check(
    settings: Settings,
    account: str,
    provider: str,
    body: bytes,
    headers: dict[str, str],
    *,
    url: str | None = None,
    remote: str | None = None,
) -> list[Event]:
    """The events a request would yield; Refused with the reason the service would give."""
    adapter = PROVIDERS.get(provider)
    if adapter is None:
        raise MailfoldError(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    pool = await db.create_pool(settings.database_url, 1)
    try:
        credentials = await CredentialStore(pool, settings.secret_key).get(account, provider)
    finally:
        await pool.close()
    if credentials is None:
        raise MailfoldError(f"no {provider} webhook is configured for account {account!r}")
    if credentials.disabled:
        raise Refused(f"403: account {account!r} is disabled")
    given_url = url or str(credentials.options.get("webhook_url") or "")
    given_url = given_url or f"http://{settings.host}:{settings.port}/webhooks/{provider}/{account}"
    webhook = WebhookRequest(body, headers, given_url, remote)
    context = Context(
        replay_window=timedelta(seconds=settings.replay_window_s),
        fetch_certificate=SnsClient(settings.sns_cert_dir).fetch_certificate,
    )
    try:
        await adapter.verify(webhook, credentials, context)
    except MailfoldError as exc:
        raise Refused(f"{exc.status}: {exc.message}") from exc
    record = RawRecord(
        account=account,
        source=provider,
        body=body,
        content_type=headers.get("content-type", "application/octet-stream"),
        received_at=datetime.now(UTC),
        headers=kept_headers(headers, adapter.keep_headers, credentials),
        metadata_keys=metadata_keys(credentials),
    )
    try:
        return derive(record)
    except ParseError as exc:
        status = 400 if adapter.parse_at_ingest else 200
        where = "refused" if status == 400 else "accepted, then set aside on the DLQ"
        raise Refused(f"{status}: verified but {where}: {exc}") from exc
