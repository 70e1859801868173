"""The HTTP service: ingest (Event API, provider webhooks), the read API and health.

`create_app(settings)` wires everything; tests may pass their own raw sink or certificate source
(seams Mailfold owns), never a fake broker or database.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import db, docs, events_api, kafka, metrics, refusals
from service.access import AccessLog
from service.auth import Authenticator
from service.errors import (
    BadInput,
    Disabled,
    MailfoldError,
    NotFound,
    ParseError,
    UnsupportedMediaType,
)
from service.http import (
    BodyReads,
    error_response,
    json,
    new_request_id,
    read_body,
    remote_addr,
    request_id,
)
from service.ingest import Ingest, RawSink
from service.nonces import NonceMemory
from service.providers import CredentialStore, metadata_keys
from service.read import ROUTES as READ_ROUTES
from service.settings import Settings
from service.sns_client import SnsClient
from service.webhooks import PROVIDERS
from service.webhooks.base import Context, Credentials, RawRecord, WebhookRequest

log = logging.getLogger("mailfold.service")


class Service:
    """The state request handlers share, built in the lifespan."""

    def __init__(self, settings: Settings, sink: RawSink | None, context: Context | None) -> None:
        self.settings = settings
        self.body_reads = BodyReads(
            settings.max_body_reads, settings.body_timeout_s, settings.retry_after_s
        )
        self.producer: kafka.Producer | None = None
        self.sink = sink
        sns_client = SnsClient(settings.sns_cert_dir)
        self.context = context or Context(
            replay_window=timedelta(seconds=settings.replay_window_s),
            fetch_certificate=sns_client.fetch_certificate,
            confirm_subscription=sns_client.confirm_subscription if settings.sns_confirm else None,
        )
        self.pool: asyncpg.Pool[Any]
        self.ingest: Ingest
        self.auth: Authenticator
        self.credentials: CredentialStore
        self.nonces: NonceMemory
        self.refusals: refusals.RefusalLog

    async def start(self) -> None:
        self.pool = await db.create_pool(self.settings.database_url, self.settings.db_pool_size)
        if self.sink is None:
            self.producer = kafka.Producer(self.settings)
            await self.producer.try_start()
            self.sink = self.producer
        s = self.settings
        self.ingest = Ingest(self.sink, s.raw_topic, s.max_in_flight, s.retry_after_s)
        self.auth = Authenticator(self.pool, s.secret_key)
        self.credentials = CredentialStore(self.pool, s.secret_key)
        self.nonces = NonceMemory(self.pool)
        self.refusals = refusals.RefusalLog(self.pool)
        self.refusals.start()

    async def stop(self) -> None:
        self.ingest.closing = True
        if self.producer is not None:
            await self.producer.stop()  # flushes what is in flight
        await self.refusals.stop()
        await self.pool.close()


async def post_events(request: Request) -> Response:
    svc: Service = request.app.state.service
    s = svc.settings
    rid = trace(request, events_api.SOURCE)
    svc.ingest.check()
    remote = remote_addr(request, s)
    account = await svc.auth.account(request.headers.get("authorization"), remote)
    check_json(request.headers.get("content-type"))
    body = await read_body(request, s.max_body_bytes)
    items, problems = events_api.validate(body, s.max_events_per_post)
    request.state.event_count = len(items)
    if problems:
        raise BadInput(f"{len(problems)} problem(s) in the posted events", details=problems)
    record = RawRecord(
        account=account,
        source=events_api.SOURCE,
        body=body,
        content_type="application/json",
        received_at=datetime.now(UTC),
        request_id=rid,
    )
    await svc.ingest.accept(record, remote)
    count_accepted(request)
    echoed = events_api.echo(body, items)
    if echoed is not None:  # one named event posted alone: 201 with the event
        return json(echoed, 201, {"X-Request-Id": rid})
    return json({"accepted": len(items), "request_id": rid}, 202)


def check_json(content_type: str | None) -> None:
    """The Event API reads JSON only: another declared type is refused (415) before the body is
    read; a post that declares none is read as JSON."""
    if content_type is None:
        return
    kind = content_type.partition(";")[0].strip().lower()
    if kind != "application/json" and not (
        kind.startswith("application/") and kind.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"the Event API takes application/json, not {content_type[:100]!r}"
        )


async def post_webhook(request: Request) -> Response:
    svc: Service = request.app.state.service
    provider, account = request.path_params["provider"], request.path_params["account"]
    adapter = PROVIDERS.get(provider)
    rid = trace(request, provider if adapter else "unknown")
    if adapter is None:
        raise NotFound(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    credentials = await svc.credentials.get(account, provider)
    if credentials is None:
        raise NotFound(f"no {provider} webhook is configured for account {account!r}")
    # From here on a 4xx is a refusal worth keeping (an unknown account or provider is not:
    # anyone can invent those, and keeping them would let anyone fill the table).
    request.state.webhook = (account, provider)
    if credentials.disabled:
        raise Disabled(f"account {account!r} is disabled")
    svc.ingest.check()
    limit = svc.settings.webhook_body_limit(adapter.max_body_bytes)
    body = await read_body(request, limit)
    remote = remote_addr(request, svc.settings)
    webhook = WebhookRequest(body, dict(request.headers), str(request.url), remote)
    await adapter.verify(webhook, credentials, svc.context)
    if adapter.handshake is not None:
        reply = await adapter.handshake(webhook, credentials, svc.context)
        if reply is not None:
            await record_handshake(svc, account, provider, reply.body)
            return json(reply.body, reply.status)
    nonce = adapter.nonce(webhook, svc.context) if adapter.nonce is not None else None
    if nonce is not None and await svc.nonces.seen(account, provider, nonce):
        # Already on the broker: a retry whose 2xx was lost, or a replay; never produced twice.
        count_accepted(request)
        return json({"accepted": True, "duplicate": True, "request_id": rid}, 200)
    record = RawRecord(
        account=account,
        source=provider,
        body=body,
        content_type=request.headers.get("content-type", "application/octet-stream"),
        received_at=datetime.now(UTC),
        request_id=rid,
        headers=kept_headers(request.headers, adapter.keep_headers, credentials),
        metadata_keys=metadata_keys(credentials),
    )
    if adapter.parse_at_ingest:
        try:
            adapter.parse(record)
        except ParseError as exc:
            raise BadInput(str(exc)) from exc
    await svc.ingest.accept(record, remote)
    if nonce is not None:  # only once on the broker, so a retry after a 503 still lands
        await svc.nonces.remember(account, provider, nonce)
    count_accepted(request)
    return json({"accepted": True, "request_id": rid}, 200)


def kept_headers(
    headers: Mapping[str, str], keep: tuple[str, ...], credentials: Credentials
) -> dict[str, str]:
    """Request headers (lower-case names) the adapter reads in parse(), plus the account's time
    zone for providers whose times carry none (inwise); never taken from the request itself."""
    kept = {h: headers[h] for h in keep if h in headers}
    zone = credentials.options.get("time_zone")
    if isinstance(zone, str) and zone:
        kept["time-zone"] = zone
    return kept


async def webhook(request: Request) -> Response:
    """POST delivers events; providers (Mandrill) check the URL with HEAD or GET beforehand."""
    if request.method == "POST":
        return await post_webhook(request)
    svc: Service = request.app.state.service
    provider, account = request.path_params["provider"], request.path_params["account"]
    if provider not in PROVIDERS:
        raise NotFound(f"unknown provider {provider!r}")
    credentials = await svc.credentials.get(account, provider)
    if credentials is None:
        raise NotFound(f"no {provider} webhook is configured for account {account!r}")
    if credentials.disabled:
        raise Disabled(f"account {account!r} is disabled")
    return json({"ok": True})


async def record_handshake(svc: Service, account: str, provider: str, body: dict[str, Any]) -> None:
    """Keep a trace of subscription handshakes an adapter reports (`subscription` in its reply)."""
    sub = body.get("subscription")
    if not isinstance(sub, dict):
        return
    await svc.pool.execute(
        db.QUERIES["record_sns_subscription"],
        account,
        sub.get("topic_arn"),
        sub.get("status"),
        sub.get("message_id"),
    )
    log.info("%s handshake: %s", provider, sub.get("status"), extra={"account": account})


async def healthz(request: Request) -> Response:
    return json({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc: Service = request.app.state.service
    checks: dict[str, str] = {}
    try:
        await svc.pool.fetchval("SELECT 1", timeout=2)
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"down: {type(exc).__name__}"
    try:
        await kafka.cluster_answers(svc.settings.kafka_bootstrap, 2.0)
        checks["kafka"] = "ok"
    except Exception as exc:
        checks["kafka"] = f"down: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    headers = None if ready else {"Retry-After": str(svc.settings.retry_after_s)}
    return json({"ready": ready, "checks": checks}, 200 if ready else 503, headers)


def trace(request: Request, source: str) -> str:
    """Mark an ingest request for metrics and logs; returns its request id."""
    rid = request_id(request)
    request.state.ingest = (source, rid)
    return rid


def count_accepted(request: Request) -> None:
    source, _ = request.state.ingest
    metrics.REQUESTS.inc(source=source, outcome="accepted", reason="none")
    if source == events_api.SOURCE:
        n = request.state.event_count
        metrics.EVENTS.inc(n, source=source, outcome="accepted", reason="none")


def count_refused(request: Request, reason: str) -> None:
    """Count a refused ingest request (and its events); read requests are not counted."""
    source, rid = getattr(request.state, "ingest", (None, None))
    if source is None:
        return
    metrics.REQUESTS.inc(source=source, outcome="refused", reason=reason)
    n = getattr(request.state, "event_count", 0)
    if n:
        metrics.EVENTS.inc(n, source=source, outcome="refused", reason=reason)
    log.info("refused: %s", reason, extra={"request_id": rid, "source": source})


async def metrics_endpoint(request: Request) -> Response:
    return Response(metrics.REGISTRY.render(), media_type=metrics.CONTENT_TYPE)


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MailfoldError)
    count_refused(request, exc.code)
    keep_refusal(request, exc)
    return error_response(exc)


def keep_refusal(request: Request, exc: MailfoldError) -> None:
    """Keep a configured webhook's 4xx for `mailfold refusals` (never awaits, never raises)."""
    webhook = getattr(request.state, "webhook", None)
    if webhook is None or not 400 <= exc.status < 500:
        return
    svc: Service = request.app.state.service
    _, rid = request.state.ingest
    remote = remote_addr(request, svc.settings)
    account, provider = webhook
    svc.refusals.add(refusals.refused(account, provider, exc.status, exc.message, remote, rid))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    count_refused(request, "internal")
    _, rid = getattr(request.state, "ingest", (None, None))
    log.exception(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        extra={"request_id": rid or request.headers.get("x-request-id")},
    )
    # Never a 4xx for our own failure: providers that don't retry 4xx would drop the event.
    return json({"error": "internal", "message": "internal error; retry later"}, 500)


def create_app(
    settings: Settings | None = None, *, sink: RawSink | None = None, context: Context | None = None
) -> Starlette:
    settings = settings or Settings.from_env()
    service = Service(settings, sink, context)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = Starlette(
        # Routes are tried in order: ingest, the hot path, first.
        routes=[
            Route("/v1/events", post_events, methods=["POST"]),
            Route("/webhooks/{provider}/{account}", webhook, methods=["POST", "GET", "HEAD"]),
            Route("/v1/webhooks/refusals", refusals.endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/docs", docs.page),
            Route("/docs/{asset}", docs.asset),
            *READ_ROUTES,
        ],
        lifespan=lifespan,
        exception_handlers={MailfoldError: on_error, Exception: on_unexpected},
        middleware=[Middleware(AccessLog, new_id=new_request_id)],
    )
    app.state.service = service
    return app
