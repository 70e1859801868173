"""Query-parameter parsing shared by the read endpoints: each problem is a 400 naming it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from service.errors import BadInput


def bad(param: str, message: str) -> BadInput:
    return BadInput(f"{param}: {message}", details=[{"parameter": param, "message": message}])


def integer(params: Any, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad(name, f"must be an integer between {low} and {high}") from None
    if not low <= value <= high:
        raise bad(name, f"must be between {low} and {high}")
    return value


def moment(params: Any, name: str, *, end: bool) -> datetime | None:
    """A date (`2025-06-01`: the whole day, UTC) or a zoned date-time (`...T10:00:00+02:00`).

    As an upper bound a date means the end of that day; times are inclusive either way.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time(), UTC)
            return start + timedelta(days=1) - timedelta(microseconds=1) if end else start
        text = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad(name, "must be a date (YYYY-MM-DD) or an ISO-8601 date-time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def known_only(params: Any, allowed: set[str]) -> None:
    for key in params:
        if key not in allowed:
            raise bad(key, f"unknown parameter (expected one of {', '.join(sorted(allowed))})")
