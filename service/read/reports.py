"""The report builder (`GET /v1/reports`): counts and rates across deliveries, grouped and
filtered by the report builder's own field names.

Answers come from the rollups the fold keeps in its own transaction (schema.sql): report_hours,
one row per account, UTC hour, campaign, delivery, source and A/B version, and report_audience,
the opens and clicks of those rows per client and country. Nothing reads the events ledger at
request time.

- Grouping fields: `date`, `hour` (of the day, 0-23), `week` (ISO, `2025-W23`), `month_year`
  (`2025-06`), `quarter` (`2025-Q2`), `year`, `day_of_month`, `day_of_week` (ISO, Monday = 1),
  all in `timeZone` (IANA name, UTC by default; its offset must be whole hours, the rollups'
  grain); `post` (the campaign id), `message` (the delivery id), `ab_version`, `source` (the
  provider, or `api`); `client` (the mail client or browser family of an open or click) and
  `country_name` (the country of its address), which only the open and click counts have.
  Unknown values are "".
- Aggregated fields: per recipient, counted once in the hour it first reached the state, with
  the delivery summary's definitions: `sum_total`, `sum_sended`, `sum_delivered`,
  `sum_opened_unique`, `sum_clicked_unique`, `sum_unsubscribed`, `sum_spam_reports`,
  `sum_churn`, `sum_bounce_*` (by the kind of the recipient's bounce), `sum_stop_*` (by the kind
  of its drop); per event: `sum_opened`, `sum_clicked`; and the ten rates. The open and click
  fields and their rates have `_human` variants (opens and clicks whose verdict is "a person").
- Filters: any grouping field as a parameter, with the modifiers `ge:`, `le:` and `in:` (comma
  list) or a bare value for equality; `date` may be given twice (`date=ge:...&date=le:...`).
  Without a date filter the last 7 days apply.
- At most 100 groups, in ascending order of the grouping fields, then a totals row over every
  group (grouping values "" or null, `date` 1970-01-01). `metadata.truncated` tells when groups
  were left out.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.http import authenticate, json, service_of
from service.read.params import bad, time_zone

MAX_GROUPS = 100
DEFAULT_DAYS = 7
DEFAULT_FIELDS = "date,sum_sended,sum_delivered,sum_opened_unique,sum_clicked_unique"
LOCAL = "(hour AT TIME ZONE $2)"


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Group:
    """A grouping field: its SQL over a rollup row (native types, cheap per row), the form of a
    filter value, and the conversions between the answer's text and the SQL value."""

    sql: str
    pattern: str  # what a filter value must look like
    to_sql: Callable[[str], Any] = _same  # a filter value as the SQL value
    to_json: Callable[[Any], Any] = _same  # the SQL value as the answer shows it
    audience: bool = False  # only report_audience has it
    total: Any = ""  # its value in the totals row


def _week(value: str) -> date:
    year, week = value.split("-W")
    try:
        return date.fromisocalendar(int(year), int(week), 1)
    except ValueError:
        raise bad("week", f"{value} is not an ISO week") from None


def _iso_week(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def _month(value: str) -> date:
    try:
        return date(int(value[:4]), int(value[5:7]), 1)
    except ValueError:
        raise bad("month_year", f"{value} is not a month (YYYY-MM)") from None


def _quarter(value: str) -> date:
    try:
        return date(int(value[:4]), 3 * int(value[-1]) - 2, 1)
    except ValueError:
        raise bad("quarter", f"{value} is not a quarter (YYYY-Qn)") from None


def _day(value: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise bad("date", f"{value[:32]!r} is not a date (YYYY-MM-DD)") from None
    if day.year < 1970:
        raise bad("date", f"{value} is out of range (from 1970 on)")
    return day


_INT = r"[0-9]{1,4}"
_ID = r"[^,\x00]{0,256}"
_DAY = r"(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"


def _part(field: str) -> Group:
    """A number of the local time (hour, year...): date_part's float is cheaper than extract's
    numeric."""
    return Group(f"date_part('{field}', {LOCAL})::int", _INT, int, total=None)


GROUPS: dict[str, Group] = {
    "date": Group(f"{LOCAL}::date", _DAY, _day, date.isoformat, total="1970-01-01"),
    "hour": _part("hour"),
    "week": Group(f"date_trunc('week', {LOCAL})::date", r"[0-9]{4}-W[0-9]{2}", _week, _iso_week),
    "month_year": Group(
        f"date_trunc('month', {LOCAL})::date",
        r"[0-9]{4}-[0-9]{2}",
        _month,
        lambda d: d.strftime("%Y-%m"),
    ),
    "quarter": Group(
        f"date_trunc('quarter', {LOCAL})::date",
        r"[0-9]{4}-Q[1-4]",
        _quarter,
        lambda d: f"{d.year}-Q{(d.month - 1) // 3 + 1}",
    ),
    "year": _part("year"),
    "day_of_month": _part("day"),
    "day_of_week": _part("isodow"),
    "post": Group("campaign_id", _ID),
    "message": Group("delivery_id", _ID),
    "ab_version": Group("ab_version", _ID),
    "source": Group("source", _ID),
    "client": Group("client", _ID, audience=True),
    "country_name": Group("country", _ID, audience=True),
}

Sums = dict[str, int]
# The rollups' counters: per event (in both tables) and per recipient (report_hours only).
PER_EVENT = ("opened", "opened_human", "clicked", "clicked_human")
PER_RECIPIENT = (
    *("recipients", "sent", "delivered", "opened_unique", "opened_unique_human"),
    *("clicked_unique", "clicked_unique_human", "clicked_opened", "clicked_opened_human"),
    *("unsubscribed", "complained", "churned", "bounced", "bounced_nonexistent"),
    *("bounced_temporary", "bounced_spam", "dropped", "dropped_invalid", "dropped_nonexistent"),
    *("dropped_complained", "dropped_unsubscribed"),
)


def _rate(numerator: str, denominator: str) -> Callable[[Sums], float | None]:
    def rate(s: Sums) -> float | None:
        return s[numerator] / s[denominator] if s[denominator] else None

    return rate


def _count(counter: str) -> Callable[[Sums], int]:
    return lambda s: s[counter]


@dataclass(frozen=True, slots=True)
class Aggregate:
    counters: tuple[str, ...]
    value: Callable[[Sums], Any] = field(compare=False)


def _sum(counter: str) -> Aggregate:
    return Aggregate((counter,), _count(counter))


def _ratio(numerator: str, denominator: str) -> Aggregate:
    return Aggregate((numerator, denominator), _rate(numerator, denominator))


_BOUNCE_KINDS = ("bounced_nonexistent", "bounced_temporary", "bounced_spam")
AGGREGATES: dict[str, Aggregate] = {
    "sum_total": _sum("recipients"),
    "sum_sended": _sum("sent"),
    "sum_delivered": _sum("delivered"),
    "sum_unsubscribed": _sum("unsubscribed"),
    "sum_spam_reports": _sum("complained"),
    "sum_churn": _sum("churned"),
    "sum_bounce_total": _sum("bounced"),
    "sum_bounce_xistent": _sum("bounced_nonexistent"),
    "sum_bounce_temp_unavailable": _sum("bounced_temporary"),
    "sum_bounce_spam": _sum("bounced_spam"),
    "sum_bounce_other": Aggregate(
        ("bounced", *_BOUNCE_KINDS), lambda s: s["bounced"] - sum(s[k] for k in _BOUNCE_KINDS)
    ),
    "sum_stop_total": _sum("dropped"),
    "sum_stop_invalid": _sum("dropped_invalid"),
    "sum_stop_xistent": _sum("dropped_nonexistent"),
    "sum_stop_spam_added": _sum("dropped_complained"),
    "sum_stop_unsubscr": _sum("dropped_unsubscribed"),
    "delivery_rate": _ratio("delivered", "sent"),
    "bounce_rate": _ratio("bounced", "sent"),
    "unsub_rate": _ratio("unsubscribed", "delivered"),
    "abuse_rate": _ratio("complained", "delivered"),
    "churn_rate": _ratio("churned", "sent"),
}
# The open and click fields, each with its human-only variant (`_human`).
for _suffix in ("", "_human"):
    AGGREGATES |= {
        f"sum_opened{_suffix}": _sum(f"opened{_suffix}"),
        f"sum_opened_unique{_suffix}": _sum(f"opened_unique{_suffix}"),
        f"sum_clicked{_suffix}": _sum(f"clicked{_suffix}"),
        f"sum_clicked_unique{_suffix}": _sum(f"clicked_unique{_suffix}"),
        f"open_rate{_suffix}": _ratio(f"opened{_suffix}", "delivered"),
        f"open_rate_unique{_suffix}": _ratio(f"opened_unique{_suffix}", "delivered"),
        f"click_rate{_suffix}": _ratio(f"clicked{_suffix}", "delivered"),
        f"click_rate_unique{_suffix}": _ratio(f"clicked_unique{_suffix}", "delivered"),
        f"ctor{_suffix}": _ratio(f"clicked_opened{_suffix}", f"opened_unique{_suffix}"),
    }
# The same breakdowns under their spelled-out names.
ALIASES = {
    "sum_bounce_nonexistent": "sum_bounce_xistent",
    "sum_stop_nonexistent": "sum_stop_xistent",
}

_POLICY = "the sending platform applies its own sending policy before any event reaches Mailfold"
# Fields of the report builder that no event Mailfold receives can answer: refused, never zero.
UNKNOWABLE: dict[str, str] = {
    "project_id": "the account (project) is the one the credentials name",
    "message_type": "Mailfold receives email events only and does not know message types",
    "post_type": "Mailfold does not know mailing types (one-time, A/B, automated...)",
    "language": "no event Mailfold receives carries the recipient's language",
    "city_name": "Mailfold reads only the country of an address (country_name)",
    "region_name": "Mailfold reads only the country of an address (country_name)",
    "sum_selected": "Mailfold has no recipient selection; every count already applies the filters",
    "sum_stop_gdpr": _POLICY,
    "sum_stop_sendlog_added": _POLICY,
    "sum_stop_letter_single_quarantine": _POLICY,
    "sum_stop_inactive": _POLICY,
    "sum_stop_noaddress": _POLICY,
    "sum_stop_send_policy": _POLICY,
    "sum_stop_external_check": _POLICY,
}
PARAMS = {"fields", "timeZone", *GROUPS}


@dataclass(slots=True)
class Report:
    """A parsed report request: its columns, the statement's conditions and their arguments."""

    groups: list[str]
    aggregates: list[tuple[str, Aggregate]]  # (the name asked for, what it is)
    zone: str
    start: datetime
    end: datetime | None
    where: list[str]
    args: list[Any]
    filtered_audience: bool = False

    filtered_hour: bool = False

    @property
    def audience(self) -> bool:
        """Whether a client or country is asked for: only report_audience has them."""
        return self.filtered_audience or any(GROUPS[g].audience for g in self.groups)

    @property
    def rollup(self) -> str:
        """The rollup that answers: report_audience for a client or country; report_days in a
        zone that is UTC over the whole range, without the hour of the day; else report_hours."""
        if self.audience:
            return "audience"
        if self.filtered_hour or "hour" in self.groups or not utc_all_along(self):
            return "hours"
        return "days"

    @property
    def counters(self) -> list[str]:
        return sorted({c for _, a in self.aggregates for c in a.counters})

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def parse_fields(raw: str) -> tuple[list[str], list[tuple[str, Aggregate]]]:
    groups: list[str] = []
    aggregates: list[tuple[str, Aggregate]] = []
    for name in raw.split(","):
        if name in GROUPS:
            if name not in groups:
                groups.append(name)
        elif name in AGGREGATES or name in ALIASES:
            if name not in (n for n, _ in aggregates):
                aggregates.append((name, AGGREGATES[ALIASES.get(name, name)]))
        elif name in UNKNOWABLE:
            raise bad("fields", f"{name} cannot be answered: {UNKNOWABLE[name]}")
        elif name.endswith("_human") and name.removesuffix("_human") in AGGREGATES:
            raise bad("fields", f"{name}: only opens and clicks are told apart from machines")
        else:
            raise bad("fields", f"unknown field {name[:64]!r} (see the report builder's fields)")
    if not aggregates:
        raise bad("fields", "must name at least one aggregated field, such as sum_delivered")
    return groups, aggregates


def audience_only(report: Report) -> None:
    """A client or country belongs to an open or click: with either, only the open and click
    counts can be answered (a recipient may open with several clients, and a delivery or a
    bounce has none)."""
    for name, aggregate in report.aggregates:
        if not set(aggregate.counters) <= set(PER_EVENT):
            raise bad(
                "fields",
                f"{name} cannot be grouped or filtered by client or country_name: only "
                "sum_opened, sum_clicked and their _human variants can (an open or click has a "
                "client and country; a recipient may have several)",
            )


_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu"})


def utc_all_along(report: Report) -> bool:
    """Whether the report's zone is UTC from its start to its end (checked at both and at every
    half year between, where daylight saving would show)."""
    if report.zone in _UTC_NAMES:
        return True
    tz = zoneinfo.ZoneInfo(report.zone)
    end = report.end or datetime.now(UTC)
    if end.year - report.start.year > 50:
        return False  # not worth checking: the hour rows answer
    moments = [report.start, end]
    moments += [
        datetime(year, month, 1, tzinfo=UTC)
        for year in range(report.start.year, end.year + 1)
        for month in (1, 7)
        if report.start < datetime(year, month, 1, tzinfo=UTC) < end
    ]
    return all(not m.astimezone(tz).utcoffset() for m in moments)


def whole_hours(zone: str, *moments: datetime) -> None:
    tz = zoneinfo.ZoneInfo(zone)
    for at in moments:
        offset = at.astimezone(tz).utcoffset()
        if offset is not None and offset.total_seconds() % 3600:
            raise bad(
                "timeZone",
                f"{zone} is {offset} from UTC on {at.date()}; reports count by whole hours, "
                "so only zones with whole-hour offsets are supported",
            )


def _midnight(day: date, zone: str) -> datetime:
    local = datetime(day.year, day.month, day.day, tzinfo=zoneinfo.ZoneInfo(zone))
    return local.astimezone(UTC)


def filter_pattern(group: Group) -> str:
    """The filter parameter's form for a grouping field: a value, `ge:`/`le:` and a value, or
    `in:` and a comma list of values (OpenAPI's pattern)."""
    value = group.pattern.replace("\\x00", "\\u0000")
    return f"^((ge|le):)?{value}$|^in:{value}(,{value})*$"


def modifiers(param: str, values: list[str], group: Group) -> list[tuple[str, Any]]:
    """Each `op:value` of a filter parameter as (SQL operator, value), checked."""
    out: list[tuple[str, Any]] = []
    for raw in values:
        op, _, value = raw.partition(":") if raw[:3] in ("ge:", "le:", "in:") else ("", "", raw)
        items = value.split(",") if op == "in" else [value]
        for item in items:
            if not re.fullmatch(group.pattern, item):
                raise bad(param, f"{item[:64]!r} is not a valid {param} value")
        typed = [group.to_sql(i) for i in items]
        sql_op = {"ge": ">=", "le": "<=", "in": "= ANY", "": "="}[op]
        out.append((sql_op, typed if op == "in" else typed[0]))
    return out


def parse(params: Any, today: date | None = None) -> Report:
    """A report request's parameters, checked; every problem is a 400 naming its parameter."""
    unknown = sorted(set(params.keys()) - PARAMS - set(UNKNOWABLE))
    if unknown:
        raise bad(
            unknown[0][:64], "unknown parameter (expected fields, timeZone or a grouping field)"
        )
    for name in UNKNOWABLE:
        if name in params:
            raise bad(name, f"cannot filter on {name}: {UNKNOWABLE[name]}")
    raw_fields = params.get("fields")
    if raw_fields == "":
        raise bad("fields", "must name at least one field (or be left out for the default)")
    groups, aggregates = parse_fields(raw_fields or DEFAULT_FIELDS)
    zone = time_zone(params, "timeZone", "UTC")
    report = Report(groups, aggregates, zone, datetime.min.replace(tzinfo=UTC), None, [], [None])
    report.arg(zone)  # $2
    dates(report, params.getlist("date"), today)
    for name, group in GROUPS.items():
        filters = modifiers(name, params.getlist(name), group) if name != "date" else []
        report.filtered_audience |= group.audience and bool(filters)
        report.filtered_hour |= name == "hour" and bool(filters)
        for op, value in filters:
            report.where.append(f"{group.sql} {op}({report.arg(value)})")
    if report.audience:
        audience_only(report)
    return report


def dates(report: Report, values: list[str], today: date | None) -> None:
    """The `date` filters as a range of UTC hours (the rollups' index), and the days themselves
    for `in:`; the last DEFAULT_DAYS days without any."""
    zone = report.zone
    days = modifiers("date", values, GROUPS["date"])
    today = today or datetime.now(zoneinfo.ZoneInfo(zone)).date()
    start: date | None = None if days else today - timedelta(days=DEFAULT_DAYS)
    end: date | None = None
    for op, value in days:
        if op == "= ANY":
            start, end = min(value), max(value)
            report.where.append(f"{GROUPS['date'].sql} = ANY({report.arg(value)})")
        elif op in (">=", "="):
            start = value
        if op in ("<=", "="):
            end = value
    report.start = _midnight(start or date(1970, 1, 1), zone)
    report.end = _midnight(end + timedelta(days=1), zone) if end and end < date.max else None
    whole_hours(zone, report.start, report.end or datetime.now(UTC))
    report.where.append(f"hour >= {report.arg(report.start)}")
    if report.end is not None:
        report.where.append(f"hour < {report.arg(report.end)}")


def statement(report: Report, source: str) -> str:
    """The report's SQL over `source` (a rollup table, or the ledger recomputation): the groups,
    at most MAX_GROUPS + 1 of them, after the totals row."""
    groups = [GROUPS[g].sql for g in report.groups]
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in report.counters)
    # $2, the time zone, is typed here once for statements that group by no time
    where = " AND ".join(["account_id = $1", "$2::text IS NOT NULL", "live", *report.where])
    if not groups:
        return f"SELECT true AS totals, {sums} FROM {source} WHERE {where}"
    keys = ", ".join(groups)
    selected = ", ".join(f"{g} AS g{i}" for i, g in enumerate(groups))
    return (
        f"SELECT {selected}, grouping({keys}) <> 0 AS totals, {sums} FROM {source} "
        f"WHERE {where} GROUP BY GROUPING SETS (({keys}), ()) "
        f"ORDER BY totals DESC, {', '.join(f'g{i}' for i in range(len(groups)))} "
        f"LIMIT {MAX_GROUPS + 2}"
    )


def answer(report: Report, rows: list[Any]) -> dict[str, Any]:
    """The seed's answer shape from the statement's rows (totals row first)."""
    totals = [r for r in rows if r["totals"]]
    groups = [r for r in rows if not r["totals"]]
    result = []
    for row in groups[:MAX_GROUPS]:
        item = {name: GROUPS[name].to_json(row[f"g{i}"]) for i, name in enumerate(report.groups)}
        result.append(item | values(report, row))
    item = {name: GROUPS[name].total for name in report.groups}
    result.append(item | values(report, totals[0] if totals else {}))
    zone = zoneinfo.ZoneInfo(report.zone)
    return {
        "metadata": {
            "ready": True,
            "timeZone": report.zone,
            "dateFrom": report.start.astimezone(zone).date().isoformat(),
            "dateTo": (report.end.astimezone(zone).date() - timedelta(days=1)).isoformat()
            if report.end
            else None,
            "groups": min(len(groups), MAX_GROUPS),
            "truncated": len(groups) > MAX_GROUPS,
        },
        "result": result,
        "error": None,
    }


def values(report: Report, row: Any) -> dict[str, Any]:
    sums = {c: int(row.get(c) or 0) for c in report.counters}
    return {name: aggregate.value(sums) for name, aggregate in report.aggregates}


async def run(conn: Any, account: str, report: Report, ledger: bool = False) -> dict[str, Any]:
    """The report for `account` from the rollups, or, with `ledger`, recomputed from the ledger
    (the baseline, never the API's way)."""
    source = (LEDGER if ledger else TABLES)[report.rollup]
    rows = await conn.fetch(statement(report, source), account, *report.args[1:])
    return answer(report, rows)


def _ledger(name: str) -> str:
    # (a newline ends the named query: a comment may trail it)
    return f"({db.QUERIES[name]}\n) AS ledger"


KEYS = ("account_id", "hour", "campaign_id", "delivery_id", "source", "ab_version")
COLUMNS = {
    "hours": (*KEYS, *PER_EVENT, *PER_RECIPIENT),
    "days": (*KEYS, *PER_EVENT, *PER_RECIPIENT),
    "audience": (*KEYS, "client", "country", *PER_EVENT),
}
TABLES = {"hours": "report_hours", "days": "report_days", "audience": "report_audience"}
_DAYS = ", ".join(
    [
        "account_id",
        "date_trunc('day', hour, 'UTC') AS hour",
        *KEYS[2:],
        "bool_or(live) AS live",
        *(f"sum({c}) AS {c}" for c in (*PER_EVENT, *PER_RECIPIENT)),
    ]
)
# Each rollup recomputed from the ledger.
LEDGER = {
    "hours": _ledger("report_ledger_hours"),
    "days": f"(SELECT {_DAYS} FROM {_ledger('report_ledger_hours')} GROUP BY "
    "1, 2, 3, 4, 5, 6) AS ledger_days",
    "audience": _ledger("report_ledger_audience"),
}


async def rebuild(conn: Any, account: str) -> int:
    """Recompute `account`'s rollups from the ledger (after an upgrade that added them, or to
    check them); returns the rows written. The fold waits meanwhile: its own changes land after,
    on top of what this transaction saw."""
    written = 0
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE {', '.join(TABLES.values())} IN SHARE ROW EXCLUSIVE MODE")
        for rollup, table in TABLES.items():
            columns = ", ".join(COLUMNS[rollup])
            await conn.execute(f"DELETE FROM {table} WHERE account_id = $1", account)
            status = await conn.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {LEDGER[rollup]}",
                account,
            )
            written += int(status.rsplit(" ", 1)[1])
    return written


async def endpoint(request: Request) -> Response:
    """GET /v1/reports"""
    svc = service_of(request)
    account = await authenticate(request)
    report = parse(request.query_params)
    async with svc.pool.acquire() as conn:
        return json(await run(conn, account, report))
