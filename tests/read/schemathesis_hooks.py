"""Schemathesis hooks for tests/test_openapi.py: constraints between parameters that OpenAPI
cannot state. Generated queries get dateFrom <= dateTo and each sort field at most once (an
older name, such as seed 000's spamAt, counting as the field it names)."""

from __future__ import annotations

from typing import Any

import schemathesis

from service.errors import BadInput
from service.read.params import moment
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
    return query
