"""The OpenAPI 3.1 description of every endpoint, served at /openapi.json.

Parameters are described as strictly as the endpoints check them (tests/test_openapi.py runs
schemathesis against the live app), and the whitelists come from the modules that enforce them.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import docs, refusals
from service.events import EventType
from service.http import json, service_of
from service.read import (
    activities,
    campaigns,
    deliveries,
    export,
    histograms,
    links,
    recipients,
    reports,
    timeline,
)
from service.read import schemas as s
from service.settings import Settings
from service.webhooks import PROVIDERS

Spec = dict[str, Any]
DELIVERY = "/v1/deliveries/{campaignId}/{deliveryId}"


def query(name: str, schema: Spec, description: str) -> Spec:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def path_param(name: str, description: str, example: str) -> Spec:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": s.PATH_ID,
        "description": description,
        "example": example,
    }


def page(limit: int, default: int, max_offset: int) -> list[Spec]:
    return [
        query("limit", s.integer(1, limit, default), f"Page size, 1 to {limit}."),
        query("offset", s.integer(0, max_offset, 0), "How many rows to skip."),
    ]


def dates(what: str) -> list[Spec]:
    tail = "a date means the whole day, UTC; inclusive."
    return [
        query("dateFrom", s.MOMENT, f"{what} from (RFC 3339 date or date-time); {tail}"),
        query("dateTo", s.MOMENT, f"{what} up to; not before dateFrom (400); {tail}"),
    ]


def recipient_filters() -> list[Spec]:
    flags = [
        query(
            name,
            {"type": "boolean"},
            f"true: recipients whose {' or '.join(cols)} is set; false: none is.",
        )
        for name, cols in recipients.FLAGS.items()
    ]
    return [
        *exact_filters(),
        query(
            "signal",
            {"type": "string", "enum": [*recipients.SIGNALS, *recipients.SIGNAL_ALIASES]},
            "Who did it; `spam` is an alias of `complained` (seed 000).",
        ),
        query("q", s.text(200), "Substring of the e-mail, first name, surname or client id."),
        *dates("The signal's time (without a signal: the delivery time)"),
        *flags,
        query("abVersion", s.text(256), "The A/B version the recipient was sent."),
        query("status", s.comma_list(recipients.STATUSES), "Comma-separated statuses."),
        query(
            "deliveryStatus",
            s.comma_list(recipients.DELIVERY_STATUSES),
            "Comma-separated delivery outcomes: pending, delivered, failed (bounced or dropped).",
        ),
    ]


def exact_filters() -> list[Spec]:
    return [
        query("email", s.text(256), "Only the recipient with this e-mail address (any case)."),
        query("contactId", s.text(256), "Only recipients with exactly this contact id."),
        query("clientContactId", s.text(256), "Only recipients with exactly this client id."),
    ]


def sort(keys: Any, default: str = "", aliases: dict[str, str] | None = None) -> Spec:
    """The one sort syntax (service/read/params.py, sort_fields)."""
    described = "Comma-separated fields, each once, `-` for descending; nulls last."
    if default:
        described += f" Default `{default}`."
    if aliases:
        described += " Older names still accepted: " + ", ".join(
            f"`{old}` (`{new}`)" for old, new in aliases.items()
        )
        described += "."
    return query("sort", s.sort_list([*keys, *(aliases or {})]), described)


def recipient_sort() -> Spec:
    return sort(recipients.SORTS, aliases=recipients.SORT_ALIASES)


def delivery_params() -> list[Spec]:
    return [
        path_param("campaignId", "Campaign id.", "c1"),
        path_param("deliveryId", "Delivery id.", "d1"),
    ]


def delivery_op(summary: str, parameters: list[Spec], body: Spec) -> Spec:
    return operation(
        summary,
        [*delivery_params(), *parameters],
        {"200": s.ok(body), **s.errors("400", "401", "403", "404")},
    )


def operation(summary: str, parameters: list[Spec], responses: Spec) -> Spec:
    return {"get": {"summary": summary, "parameters": parameters, "responses": responses}}


def read_paths() -> dict[str, Spec]:
    feed = [
        query("since", s.CURSOR, "A cursor returned by an earlier call; absent: the beginning."),
    ]
    return {
        f"{DELIVERY}/recipients": delivery_op(
            "Recipient activity list (seed 000) with seed 004's flags and seed 002's fields.",
            [*recipient_filters(), *page(1000, 100, recipients.MAX_OFFSET), recipient_sort()],
            s.paged("recipients", s.RECIPIENT),
        ),
        f"{DELIVERY}/recipients/{{recipient}}/timeline": delivery_op(
            "One recipient's events in the delivery, in event-time order, paged.",
            [
                path_param("recipient", "E-mail address or contact id.", "john.doe@example.com"),
                *page(timeline.MAX_EVENTS, 1000, timeline.MAX_OFFSET),
            ],
            s.TIMELINE,
        ),
        f"{DELIVERY}/summary": delivery_op(
            "Funnel counts and rates (seeds 001, 003); denominators in docs/read-api.md.",
            [],
            s.SUMMARY,
        ),
        f"{DELIVERY}/histogram": delivery_op(
            "Counts per hour, day or month of event time, in a time zone.",
            [
                query("interval", s.enum(histograms.INTERVALS, "hourly"), "Bucket size."),
                query("timeZone", s.ZONE, "IANA time zone; default: the account's."),
                *dates("Event time"),
            ],
            s.HISTOGRAM,
        ),
        f"{DELIVERY}/links": delivery_op(
            "Clicks and unique clickers per link, machine clicks apart.",
            [
                sort(links.SORTS, "-clicks"),
                *page(1000, 100, 1_000_000),
            ],
            s.paged("links", s.LINK),
        ),
        f"{DELIVERY}/sent": delivery_op(
            "Recipients the delivery was sent to (not dropped), bounced ones included.",
            [
                query("q", s.text(200), "Search."),
                *exact_filters(),
                *page(1000, 100, recipients.MAX_OFFSET),
                recipient_sort(),
            ],
            s.paged("sent", s.SENT),
        ),
        f"{DELIVERY}/undelivered": delivery_op(
            "Recipients dropped or bounced without delivery, with the reason.",
            [
                query("q", s.text(200), "Search."),
                *exact_filters(),
                *page(1000, 100, recipients.MAX_OFFSET),
                recipient_sort(),
            ],
            s.paged("undelivered", s.UNDELIVERED),
        ),
        f"{DELIVERY}/export": operation(
            "The recipient list, any filter, streamed as CSV or JSON lines.",
            [
                *delivery_params(),
                query("format", s.enum(export.FORMATS, "csv"), "csv or jsonl."),
                *recipient_filters(),
                recipient_sort(),
            ],
            export_responses(),
        ),
        f"{DELIVERY}/ab": delivery_op(
            "A/B results: the funnel per version, open and click rates tested against the best.",
            [],
            s.ab_report("campaignId", "deliveryId"),
        ),
        "/v1/campaigns/{campaignId}/ab": operation(
            "A/B results over a campaign's deliveries: the funnel per version, with z-tests.",
            [path_param("campaignId", "Campaign id.", "c1")],
            {"200": s.ok(s.ab_report("campaignId")), **s.errors("400", "401", "403", "404")},
        ),
        "/v1/deliveries": operation(
            "The account's deliveries, each with its funnel counts and rates (all, human-only).",
            list_params(deliveries.SORTS, "a substring of the delivery or campaign id"),
            {"200": s.ok(s.paged("deliveries", s.DELIVERY_ROW)), **s.errors("400", "401", "403")},
        ),
        "/v1/campaigns": operation(
            "The account's campaigns, each with its deliveries' funnel counts and rates.",
            list_params(campaigns.SORTS, "a substring of the campaign id"),
            {"200": s.ok(s.paged("campaigns", s.CAMPAIGN_ROW)), **s.errors("400", "401", "403")},
        ),
        "/v1/campaigns/{campaignId}": operation(
            "A campaign across its deliveries: funnel, conversions, revenue per currency, rates.",
            [path_param("campaignId", "Campaign id.", "c1")],
            {"200": s.ok(s.CAMPAIGN_SUMMARY), **s.errors("400", "401", "403", "404")},
        ),
        "/v1/activities": operation(
            "The account's events by event time (seed 001 activities); default: the last 7 days.",
            [
                *dates("Event time"),
                query("type", s.comma_list(activities.TYPES), "Comma-separated event types."),
                query("campaignId", s.text(256), "Only this campaign."),
                query("deliveryId", s.text(256), "Only this delivery."),
                query(
                    "contact",
                    s.text(256),
                    "Only this contact: an e-mail address, contact id or client contact id.",
                ),
                query("machine", {"type": "boolean"}, "true: machine events; false: the others."),
                sort(activities.SORTS, "occurredAt"),
                *page(1000, 100, activities.MAX_OFFSET),
            ],
            {"200": s.ok(s.paged("activities", s.ACTIVITY)), **s.errors("400", "401", "403")},
        ),
        "/v1/contacts/{key}/activities": operation(
            "One contact's activity log across all its deliveries; default: the last 7 days.",
            [
                contact_key(),
                *dates("Event time"),
                query("type", s.comma_list(activities.TYPES), "Comma-separated event types."),
                query("campaignId", s.text(256), "Only this campaign."),
                query("deliveryId", s.text(256), "Only this delivery."),
                query("machine", {"type": "boolean"}, "true: machine events; false: the others."),
                sort(activities.SORTS, "occurredAt"),
                *page(1000, 100, activities.MAX_OFFSET),
            ],
            {"200": s.ok(s.CONTACT_ACTIVITIES), **s.errors("400", "401", "403", "404")},
        ),
        "/v1/contacts/{key}/timeline": operation(
            "One contact's events across all its deliveries, in event-time order, paged.",
            [contact_key(), *page(timeline.MAX_EVENTS, 1000, timeline.MAX_OFFSET)],
            {"200": s.ok(s.CONTACT_TIMELINE), **s.errors("400", "401", "403", "404")},
        ),
        "/v1/activities/recent": operation(
            "Everything folded since a cursor (seed 001 recentActivities); never skips or repeats.",
            [*feed, query("limit", s.integer(1, 1000, 100), "At most this many.")],
            {"200": s.ok(s.feed("activities", s.ACTIVITY)), **s.errors("400", "401", "403")},
        ),
        "/v1/suppressions": operation(
            "Addresses not to mail again (hard bounce, complaint, unsubscribe), since a cursor.",
            [*feed, query("limit", s.integer(1, 10_000, 1000), "At most this many.")],
            {"200": s.ok(s.feed("suppressions", s.SUPPRESSION)), **s.errors("400", "401", "403")},
        ),
        "/v1/reports": operation(
            "The report builder: counts and rates across deliveries, grouped by the fields named "
            "in `fields`, at most 100 groups then a totals row; from rollups the fold keeps.",
            report_params(),
            {"200": s.ok(s.REPORT), **s.errors("400", "401", "403")},
        ),
        "/v1/webhooks/refusals": operation(
            "The account's latest refused webhook requests, newest first: when, the status and "
            f"reason, from where (the last {refusals.KEPT} per provider; never a body).",
            [
                query("provider", {"type": "string", "enum": list(PROVIDERS)}, "Only this one."),
                query("limit", s.integer(1, refusals.KEPT, refusals.KEPT), "At most this many."),
            ],
            {"200": s.ok(s.REFUSALS), **s.errors("400", "401", "403")},
        ),
    }


def report_params() -> list[Spec]:
    """The report builder's fields, time zone and one filter per grouping field."""
    groups = "|".join(reports.GROUPS)
    sums = "|".join([*reports.AGGREGATES, *reports.ALIASES])
    # a comma list of fields, at least one of them aggregated
    fields = f"^(({groups}|{sums}),)*({sums})(,({groups}|{sums}))*$"
    return [
        query(
            "fields",
            {"type": "string", "pattern": fields},
            "Grouping and aggregated fields, comma-separated (default "
            f"`{reports.DEFAULT_FIELDS}`). A client or country_name allows only the open and "
            "click counts.",
        ),
        query("timeZone", s.ZONE, "IANA name with whole-hour offsets; UTC by default."),
        *[
            {
                **query(
                    name,
                    {"type": "array", "items": {"type": "string", "pattern": pattern}},
                    f"Only groups whose {name} is the value, `ge:`/`le:` it, or `in:` a comma "
                    "list." + (" Without it, the last 7 days." if name == "date" else ""),
                ),
                "style": "form",
                "explode": True,
            }
            for name, group in reports.GROUPS.items()
            for pattern in [reports.filter_pattern(group)]
        ],
    ]


def list_params(sorts: Any, searched: str) -> list[Spec]:
    """The delivery and campaign lists' filters, sort and page (service/read/deliveries.py)."""
    return [
        query("campaignId", s.text(256), "Only this campaign."),
        *dates("First send"),
        query("q", s.text(200), f"Case-insensitive: {searched}."),
        sort(sorts, "-firstSentAt"),
        *page(1000, 100, deliveries.MAX_OFFSET),
    ]


def contact_key() -> Spec:
    return path_param(
        "key",
        "An e-mail address (any case), a contact id or a client contact id.",
        "john.doe@example.com",
    )


def export_responses() -> Spec:
    content = {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    }
    return {
        "200": {"description": "The rows, streamed.", "content": content},
        **s.errors("400", "401", "403", "404", "503"),
    }


def ingest_paths(settings: Settings) -> dict[str, Spec]:
    provider = {
        "name": "provider",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(PROVIDERS)},
    }
    account = {"name": "account", "in": "path", "required": True, "schema": s.PATH_ID}
    events = s.events_body(settings.max_events_per_post, [t.value for t in EventType])
    return {
        "/v1/events": {
            "post": {
                "summary": "Post one canonical event or an array of them (seed 003's Event API).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": events}},
                },
                "responses": {
                    "201": s.ok(
                        s.named_event_echo(),
                        "One named event (`{name, payload}`, no `type`) posted alone: "
                        "produced to Kafka and acknowledged; the event is echoed.",
                    ),
                    "202": s.ok(s.ACCEPTED, "Produced to Kafka and acknowledged."),
                    **s.errors("400", "401", "403", "413", "503"),
                },
            }
        },
        "/webhooks/{provider}/{account}": {
            "post": {
                "summary": "A provider's webhook, verified with the account's credentials.",
                "security": [],
                "parameters": [provider, account],
                "requestBody": {"required": True, "content": s.ANY_BODY},
                "responses": {
                    "200": s.ok({"type": "object"}, "Accepted, or the handshake's answer."),
                    **s.errors("400", "401", "404", "413", "503"),
                },
            },
            "get": {
                "summary": "URL check some providers make before using a webhook.",
                "security": [],
                "parameters": [provider, account],
                "responses": {"200": s.ok(s.OK_TRUE), **s.errors("404")},
            },
        },
    }


def file_ok(kind: str, description: str) -> Spec:
    return {"description": description, "content": {kind: {"schema": {"type": "string"}}}}


def plain_paths() -> dict[str, Spec]:
    public: Spec = {"security": []}
    return {
        "/healthz": {
            "get": {**public, "summary": "Liveness.", "responses": {"200": s.ok(s.HEALTH)}}
        },
        "/readyz": {
            "get": {
                **public,
                "summary": "Readiness: PostgreSQL and Kafka answer.",
                "responses": {"200": s.ok(s.READY), "503": s.ok(s.READY, "Not ready.")},
            }
        },
        "/metrics": {
            "get": {
                **public,
                "summary": "Prometheus metrics.",
                "responses": {
                    "200": {
                        "description": "Text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                **public,
                "summary": "This document.",
                "responses": {"200": s.ok({"type": "object"})},
            }
        },
        "/docs": {
            "get": {
                **public,
                "summary": "A browsable reference over this document (Swagger UI).",
                "responses": {"200": file_ok("text/html", "The page.")},
            }
        },
        "/docs/{asset}": {
            "get": {
                **public,
                "summary": "The files the /docs page loads.",
                "parameters": [
                    {
                        "name": "asset",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["mailfold-docs.js", *docs.ASSETS]},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            kind: {"schema": {"type": "string"}}
                            for kind in sorted(set(docs.ASSETS.values()))
                        },
                    },
                    **s.errors("404"),
                },
            }
        },
    }


@functools.cache
def document(settings: Settings) -> Spec:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mailfold",
            "version": "1",
            "description": "Email-engagement events in, per-recipient state out. Every error is "
            "JSON: {error, message, details?}; a bad parameter is a 400 naming it in "
            "details[].parameter.",
        },
        "security": [{"basic": []}],
        "paths": {**plain_paths(), **ingest_paths(settings), **read_paths()},
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": s.COMPONENTS,
        },
    }


async def endpoint(request: Request) -> Response:
    """GET /openapi.json"""
    return json(document(service_of(request).settings))
