"""Query-parameter parsing shared by the read endpoints: each problem is a 400 naming it."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from service.errors import BadInput


def bad(param: str, message: str) -> BadInput:
    return BadInput(f"{param}: {message}", details=[{"parameter": param, "message": message}])


_INTEGER = re.compile(r"-?[0-9]{1,20}")
# RFC 3339 (section 5.6): a full-date, or a date-time with seconds and a zone.
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATE_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def integer(params: Any, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise bad(name, f"must be an integer between {low} and {high}")
    value = int(raw)
    if not low <= value <= high:
        raise bad(name, f"must be between {low} and {high}")
    return value


def moment(params: Any, name: str, *, end: bool) -> datetime | None:
    """An RFC 3339 date (`2025-06-01`: the whole day, UTC) or date-time (`...T10:00:00+02:00`).

    As an upper bound a date means the end of that day; times are inclusive either way.
    """
    raw = params.get(name)
    if raw is None:
        return None
    try:
        if _DATE.fullmatch(raw):
            day = date.fromisoformat(raw)
            return datetime.combine(day, time.max if end else time.min, UTC)
        match = _DATE_TIME.fullmatch(raw)
        if match is None:
            raise ValueError(raw)
        return _zoned(*match.groups())
    except ValueError:
        raise bad(name, "must be an RFC 3339 date (YYYY-MM-DD) or date-time") from None


def _zoned(
    day: str,
    hh: str,
    mm: str,
    ss: str,
    frac: str | None,
    z: str | None,
    sign: str,
    oh: str,
    om: str,
) -> datetime:
    # A leap second (:60) is read as the last instant of its minute.
    second, micro = (59, 999_999) if ss == "60" else (int(ss), int((frac or "0")[:6].ljust(6, "0")))
    local = datetime.combine(date.fromisoformat(day), time(int(hh), int(mm), second, micro))
    if z is not None:
        return local.replace(tzinfo=UTC)
    if int(oh) > 23 or int(om) > 59:
        raise ValueError("offset out of range")
    offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
    try:
        return local.replace(tzinfo=timezone(offset)).astimezone(UTC)
    except OverflowError:  # an offset pushes it past year 1 or 9999: beyond any event anyway
        return (datetime.min if local.year == 1 else datetime.max).replace(tzinfo=UTC)


def known_only(params: Any, allowed: set[str]) -> None:
    for key in params:
        if key not in allowed:
            raise bad(key, f"unknown parameter (expected one of {', '.join(sorted(allowed))})")


def boolean(params: Any, name: str) -> bool | None:
    """`true` or `false`; None when absent."""
    raw = params.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise bad(name, "must be true or false")
    return bool(raw == "true")


def choices(params: Any, name: str, allowed: Iterable[str]) -> list[str] | None:
    """A comma-separated subset of `allowed`, in the order given, without repeats."""
    raw = params.get(name)
    if raw is None:
        return None
    options = list(allowed)
    picked: list[str] = []
    for item in raw.split(","):
        if item not in options:
            raise bad(name, f"{item!r} is not one of {', '.join(options)}")
        if item not in picked:
            picked.append(item)
    return picked


def text(params: Any, name: str, limit: int = 256) -> str | None:
    """A string of 1 to `limit` characters (PostgreSQL text holds no NUL); None when absent."""
    raw = params.get(name)
    if raw is None:
        return None
    if not 1 <= len(raw) <= limit or "\x00" in raw:
        raise bad(name, f"must be 1 to {limit} characters, none of them NUL")
    return str(raw)


@functools.cache
def zones() -> frozenset[str]:
    """The IANA time-zone names this system knows."""
    return frozenset(zoneinfo.available_timezones())


def time_zone(params: Any, name: str, default: str) -> str:
    """An IANA time-zone name (`Europe/Prague`); `default` when absent."""
    raw = params.get(name)
    if raw is None:
        return default
    if raw not in zones():
        raise bad(name, "must be an IANA time-zone name such as Europe/Prague or UTC")
    return str(raw)


# Feed positions: (transaction id, sequence number), as "<xact>-<seq>" on the wire. The digit
# counts keep both within their types (xid8, bigint) for longer than any database lives.
FEED_START = (0, 0)
CURSOR_PATTERN = "[0-9]{1,19}-[0-9]{1,18}"
_CURSOR = re.compile(CURSOR_PATTERN)


def feed_position(params: Any, name: str) -> tuple[int, int]:
    """A cursor handed out by a feed endpoint; absent means from the beginning."""
    raw = params.get(name)
    if raw is None:
        return FEED_START
    if not _CURSOR.fullmatch(raw):
        raise bad(name, "must be a cursor returned by this endpoint (digits-digits)")
    xact, _, seq = raw.partition("-")
    return int(xact), int(seq)


def format_position(xact: int, seq: int) -> str:
    return f"{xact}-{seq}"


# The one sort syntax of every endpoint that sorts: a comma list of field names, each at most
# once, `-` before a field for descending (`+` or nothing for ascending).
SORT_FORM = "a comma list of fields, each once, `-` before a field for descending"


def sort_fields(
    raw: str | None, fields: Iterable[str], aliases: dict[str, str] | None = None
) -> list[tuple[str, bool]]:
    """`-openedAt,surname` -> [("openedAt", True), ("surname", False)]: (field, descending).

    `aliases` maps an older name to its field; an empty or absent `raw` gives []."""
    known = list(fields)
    aliases = aliases or {}
    picked: list[tuple[str, bool]] = []
    for token in raw.split(",") if raw else []:
        token = token.strip()
        desc = token.startswith("-")
        name = token[1:] if desc or token.startswith("+") else token
        name = aliases.get(name, name)
        if name not in known:
            raise bad("sort", f"unknown field {name!r}: {SORT_FORM}, of {', '.join(known)}")
        if any(name == seen for seen, _ in picked):
            raise bad("sort", f"field {name!r} given twice: {SORT_FORM}")
        picked.append((name, desc))
    return picked


def order_by(
    raw: str | None,
    sorts: dict[str, str],
    tie: str,
    *,
    default: str = "",
    aliases: dict[str, str] | None = None,
) -> str:
    """The sort parameter (`default` when absent or empty) as an ORDER BY over the `sorts`
    columns, nulls last, with `tie` breaking ties."""
    picked = sort_fields(raw or default, sorts, aliases)
    parts = [f"{sorts[name]} {'DESC' if desc else 'ASC'} NULLS LAST" for name, desc in picked]
    return ", ".join([*parts, tie])
