"""Schemathesis hooks for tests/test_openapi.py: constraints between parameters that OpenAPI
cannot state. Generated queries get dateFrom <= dateTo and each sort field at most once (an
older name, such as seed 000's spamAt, counting as the field it names). Report builder queries
get at least one aggregated field, only open and click counts beside a client or country, a
whole-hour time zone and real calendar dates."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import schemathesis

from service.errors import BadInput
from service.read import reports
from service.read.params import moment, zones
from service.read.recipients import SORT_ALIASES


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if not query:
        return query
    start = stop = None
    if isinstance(query.get("dateFrom"), str) and isinstance(query.get("dateTo"), str):
        try:
            start = moment(query, "dateFrom", end=False)
            stop = moment(query, "dateTo", end=True)
        except BadInput:
            pass
    if start and stop and start > stop:
        query["dateFrom"], query["dateTo"] = query["dateTo"], query["dateFrom"]
    sort = query.get("sort")
    if isinstance(sort, str) and "," in sort:
        seen: dict[str, str] = {}
        for token in sort.split(","):
            name = token.lstrip("+-")
            seen.setdefault(SORT_ALIASES.get(name, name), token)
        query["sort"] = ",".join(seen.values())
    if isinstance(query.get("fields"), str):
        report_query(query)
    return query


def report_query(query: dict[str, Any]) -> None:
    names = query["fields"].split(",")
    audience = any(n in ("client", "country_name") for n in names) or any(
        query.get(n) for n in ("client", "country_name")
    )
    counted = set(reports.PER_EVENT)
    known = {**reports.AGGREGATES, **{a: reports.AGGREGATES[n] for a, n in reports.ALIASES.items()}}
    kept = [  # names it does not know are left alone: a negative case stays one
        n for n in names if not audience or n not in known or set(known[n].counters) <= counted
    ]
    if not any(n in known for n in kept):
        kept.append("sum_opened")
    query["fields"] = ",".join(kept)
    zone = query.get("timeZone")
    if isinstance(zone, str) and zone in zones():
        try:
            years = range(1970, datetime.now(UTC).year + 2)
            reports.whole_hours(
                zone, *(datetime(y, m, 1, tzinfo=UTC) for y in years for m in (1, 7))
            )
        except BadInput:
            query["timeZone"] = "UTC"
    for name in ("date",):
        values = query.get(name)
        if isinstance(values, list):
            query[name] = [_REAL_DATE.sub(_real, v) if isinstance(v, str) else v for v in values]


_REAL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _real(match: re.Match[str]) -> str:
    try:
        date.fromisoformat(match.group())
        return match.group()
    except ValueError:
        return match.group()[:8] + "28"
