"""The delivery recipient activity list (seed 000): filters, search, sort, paging.

Filters: `signal` (seed 000), the `is_*` flags (seed 004), `abVersion` (seed 002), `status`,
`deliveryStatus`, exact `email`, `contactId` and `clientContactId`, `q` and dates, all
combinable. SQL is composed only from the whitelists below; every value is a
$n parameter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.errors import NotFound
from service.http import authenticate, json, service_of
from service.read.params import (
    bad,
    boolean,
    choices,
    integer,
    known_only,
    moment,
    order_by,
    text,
)

# signal -> the column holding its first time
SIGNALS: dict[str, str] = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
    "bounced": "bounced_at",
    "dropped": "dropped_at",
    "unsubscribed": "unsubscribed_at",
    "complained": "complained_at",
    "converted": "converted_at",
    # Human-only signals: at least one open or click classified as a person's (MACHINE.md e4).
    "opened_human": "human_opened_at",
    "clicked_human": "human_clicked_at",
}
# Seed 000's older names, still accepted: `signal=spam` is `signal=complained`.
SIGNAL_ALIASES: dict[str, str] = {"spam": "complained"}
# signal -> its column in delivery_counts, the totalCount of a list filtered by nothing else
SIGNAL_COUNTS: dict[str, str] = {
    signal: column.removesuffix("_at") + "_count" for signal, column in SIGNALS.items()
}
# Without a signal, dateFrom/dateTo apply to when the delivery reached the recipient.
DELIVERY_TIME = "coalesce(delivered_at, sent_at)"
# What `q` searches: recipient_search, one text per recipient (schema.sql).
SEARCH = """recipient_key IN (SELECT s.recipient_key FROM recipient_search s
    WHERE s.account_id = {account} AND s.delivery_id = {delivery} AND s.search_text ILIKE {q})"""

# sort key -> column
SORTS: dict[str, str] = {
    "email": "email",
    "firstName": "first_name",
    "surname": "surname",
    "contactId": "contact_id",
    "clientContactId": "client_contact_id",
    "sentAt": "sent_at",
    "deliveredAt": "delivered_at",
    "openedAt": "opened_at",
    "openCount": "open_count",
    "clickedAt": "clicked_at",
    "clickCount": "click_count",
    "bouncedAt": "bounced_at",
    "unsubscribedAt": "unsubscribed_at",
    "complainedAt": "complained_at",
    "conversionsAmount": "conversions_amount",
    "conversionsNumber": "conversions_count",
    "status": "status_rank",
}
# Seed 000's older name, still accepted: `sort=spamAt` is `sort=complainedAt`.
SORT_ALIASES: dict[str, str] = {"spamAt": "complainedAt"}
# seed 004's flags -> the columns of which one is set once the thing happened. A flag says
# whether an event happened, not the outcome: a soft bounce before a delivery is still
# is_failed=true, while its deliveryStatus is delivered.
FLAGS: dict[str, tuple[str, ...]] = {
    "is_sent": ("sent_at",),
    "is_delivered": ("delivered_at",),
    "is_opened": ("opened_at",),
    "is_clicked": ("clicked_at",),
    "is_bounced": ("bounced_at",),
    "is_failed": ("dropped_at", "bounced_at"),  # recipients_undelivered_idx's predicate
    "is_skipped": ("dropped_at",),
    "is_unsubscribed": ("unsubscribed_at",),
    "is_complained": ("complained_at",),
}
# exact filters -> the column they match; `email` also the key, so it is a primary-key lookup
EXACT: dict[str, str] = {
    "email": "email",
    "contactId": "contact_id",
    "clientContactId": "client_contact_id",
}
# status name -> status_rank (the order of mailfold_status in schema.sql)
STATUSES: dict[str, int] = {
    "unknown": 0,
    "sent": 1,
    "deferred": 2,
    "dropped": 3,
    "soft_bounced": 4,
    "delivered": 5,
    "opened": 6,
    "clicked": 7,
    "unsubscribed": 8,
    "hard_bounced": 9,
    "complained": 10,
}
# deliveryStatus -> its condition: the outcome of the delivery, beside the engagement `status`.
# The three are exhaustive and exclusive, and agree with the summary's funnel: `failed` is its
# `undelivered` (lists.py), `delivered` its `delivered`. A hard bounce outranks a delivery (the
# address is gone); a soft bounce or a deferral does not (a retry that got through), whatever
# the order they happened in. An open or a click proves delivery without a delivered event.
DELIVERED = "coalesce(delivered_at, opened_at, clicked_at)"
DELIVERY_STATUSES: dict[str, str] = {
    "pending": f"(dropped_at IS NULL AND bounced_at IS NULL AND {DELIVERED} IS NULL)",
    "delivered": f"""(dropped_at IS NULL AND hard_bounced_at IS NULL
    AND {DELIVERED} IS NOT NULL)""",
    # recipients_undelivered_idx's predicate first, so that index can serve the filter
    "failed": f"""((dropped_at IS NOT NULL OR bounced_at IS NOT NULL)
    AND (dropped_at IS NOT NULL OR hard_bounced_at IS NOT NULL OR {DELIVERED} IS NULL))""",
}
DELIVERY_STATUS = f"""CASE WHEN {DELIVERY_STATUSES["failed"]} THEN 'failed'
    WHEN {DELIVERY_STATUSES["delivered"]} THEN 'delivered' ELSE 'pending' END"""
FILTERS = {
    "signal", "q", "dateFrom", "dateTo", "abVersion", "status", "deliveryStatus", *FLAGS, *EXACT,
}  # fmt: skip
PARAMS = FILTERS | {"limit", "offset", "sort"}
MAX_OFFSET = 10_000_000

COLUMNS = f"""contact_id, client_contact_id, first_name, surname, email, recipient_key, ab_version,
sent_at, delivered_at, opened_at, open_count, open_human_count, open_machine_count, clicked_at,
click_count, click_human_count, click_machine_count, unsubscribed_at, complained_at, bounced_at,
bounce_class, bounce_code, bounce_reason, dropped_at, conversions_amount, conversions_currency,
conversions_count, mailfold_status(status_rank) AS status,
{DELIVERY_STATUS} AS delivery_status"""


@dataclass
class Query:
    where: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    order: str = "recipient_key"
    limit: int = 100
    offset: int = 0
    # The delivery_counts column holding the count, while no filter but a signal applies.
    counted: str | None = None
    # The campaign condition, dropped when every recipient of the delivery is under that
    # campaign or none (`narrow`), so a page can be read from an index alone.
    campaign: str = ""
    # The `q` pattern's placeholder.
    search: str | None = None
    implied: bool = False

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def conditions(self) -> list[str]:
        return [w for w in self.where if w != self.campaign] if self.implied else self.where


def parse_sort(raw: str | None) -> str:
    """`-openedAt,surname` -> ORDER BY with nulls last and recipient_key as the tie-break."""
    return order_by(raw, SORTS, "recipient_key", aliases=SORT_ALIASES)


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def build(
    account: str, campaign: str, delivery: str, params: Any, allowed: set[str] = PARAMS
) -> Query:
    """Turn the request's parameters into a Query; BadInput names the first bad parameter."""
    known_only(params, allowed)
    query = Query()
    query.where.append(f"account_id = {query.arg(account)}")
    query.where.append(f"delivery_id = {query.arg(delivery)}")
    query.campaign = f"(campaign_id = {query.arg(campaign)} OR campaign_id IS NULL)"
    query.where.append(query.campaign)
    signal = add_signal_and_dates(query, params)
    if len(query.where) == 3 + (signal is not None):
        query.counted = SIGNAL_COUNTS[signal] if signal else "recipient_count"
    add_search(query, params)
    add_flags(query, params)
    add_exact(query, params)
    if len(query.where) > 3 + (signal is not None):
        query.counted = None
    query.limit = integer(params, "limit", 100, 1, 1000)
    query.offset = integer(params, "offset", 0, 0, MAX_OFFSET)
    query.order = parse_sort(params.get("sort"))
    return query


def add_signal_and_dates(query: Query, params: Any) -> str | None:
    """`signal` keeps who did it; dates apply to its time (to the delivery time without one).
    Returns the signal."""
    signal: str | None = params.get("signal")
    column = DELIVERY_TIME
    if signal is not None:
        signal = SIGNAL_ALIASES.get(signal, signal)
        if signal not in SIGNALS:
            raise bad("signal", f"must be one of {', '.join(SIGNALS)}, or spam (complained)")
        column = SIGNALS[signal]
        query.where.append(f"{column} IS NOT NULL")
    date_from = moment(params, "dateFrom", end=False)
    date_to = moment(params, "dateTo", end=True)
    if date_from and date_to and date_from > date_to:
        raise bad("dateTo", "is before dateFrom")
    if date_from:
        query.where.append(f"{column} >= {query.arg(date_from)}")
    if date_to:
        query.where.append(f"{column} <= {query.arg(date_to)}")
    return signal


def add_search(query: Query, params: Any) -> None:
    """`q`: a substring of the e-mail, first name, surname or client contact id (trigram index)."""
    q = params.get("q")
    if q is None:
        return
    if not 1 <= len(q) <= 200 or "\x00" in q:
        raise bad("q", "must be 1 to 200 characters, none of them NUL")
    query.search = query.arg(f"%{escape_like(q.strip())}%")
    query.where.append(SEARCH.format(account="$1", delivery="$2", q=query.search))


def add_flags(query: Query, params: Any) -> None:
    """The `is_*` flags (true: it happened; false: it did not), `abVersion`, `status` and
    `deliveryStatus`."""
    for name, columns in FLAGS.items():
        flag = boolean(params, name)
        if flag is not None:
            query.where.append(flag_sql(columns, flag))
    version = text(params, "abVersion")
    if version is not None:
        query.where.append(f"ab_version = {query.arg(version)}")
    statuses = choices(params, "status", STATUSES)
    if statuses is not None:
        ranks = [STATUSES[s] for s in statuses]
        query.where.append(f"status_rank = ANY({query.arg(ranks)}::smallint[])")
    outcomes = choices(params, "deliveryStatus", DELIVERY_STATUSES)
    if outcomes is not None:
        query.where.append(f"({' OR '.join(DELIVERY_STATUSES[o] for o in outcomes)})")


def flag_sql(columns: tuple[str, ...], flag: bool) -> str:
    """true: one of the columns is set; false: none is."""
    if flag:
        either = " OR ".join(f"{c} IS NOT NULL" for c in columns)
        return either if len(columns) == 1 else f"({either})"
    return " AND ".join(f"{c} IS NULL" for c in columns)


def add_exact(query: Query, params: Any) -> None:
    """`email`, `contactId`, `clientContactId`: exact matches (an address in any case)."""
    for name, column in EXACT.items():
        value = text(params, name)
        if value is None:
            continue
        if name == "email":  # addresses are stored lower-cased, and key their recipient
            value = query.arg(value.lower())
            query.where.append(f"recipient_key = {value} AND email = {value}")
        else:
            query.where.append(f"{column} = {query.arg(value)}")


def page_sql(query: Query) -> tuple[str, list[Any]]:
    """The page: its keys first (from an index alone where the filters allow), then the rows.

    Skipping `offset` rows costs an index entry each instead of a row each.
    """
    where = " AND ".join(query.conditions())
    args = [*query.args, query.limit, query.offset]
    n = len(query.args)
    if query.order == "recipient_key" and only_search(query):
        # `q` alone: the page's keys come from the search table (one row per recipient)
        keys = (
            "SELECT s.recipient_key FROM recipient_search s WHERE s.account_id = $1 "
            f"AND s.delivery_id = $2 AND s.search_text ILIKE {query.search} "
            f"ORDER BY s.recipient_key LIMIT ${n + 1} OFFSET ${n + 2}"
        )
    else:
        columns = ", ".join(order_columns(query.order))
        keys = (
            f"SELECT {columns} FROM recipients WHERE {where} "
            f"ORDER BY {query.order} LIMIT ${n + 1} OFFSET ${n + 2}"
        )
    sql = (
        f"SELECT {COLUMNS} FROM recipients WHERE account_id = $1 AND delivery_id = $2 "
        f"AND {query.campaign} AND recipient_key IN (SELECT recipient_key FROM ({keys}) k) "
        f"ORDER BY {query.order}"
    )
    return sql, args


def order_columns(order: str) -> list[str]:
    """The columns an ORDER BY of parse_sort names."""
    return [part.split()[0] for part in order.split(", ")]


def only_search(query: Query) -> bool:
    """Whether `q` is the only filter besides the delivery, and the campaign is implied: then
    the search table alone answers (it holds one row per recipient)."""
    return query.search is not None and query.implied and len(query.conditions()) == 3


def count_sql(query: Query) -> tuple[str, list[Any]]:
    """totalCount: a lookup in delivery_counts when no filter but a signal applies."""
    if query.counted:
        sql = (
            f"SELECT coalesce(sum({query.counted}), 0)::bigint FROM delivery_counts "
            "WHERE account_id = $1 AND delivery_id = $2 "
            "AND (campaign_id = $3 OR campaign_id IS NULL)"
        )
        return sql, list(query.args[:3])
    if only_search(query) and query.search:
        sql = (
            "SELECT count(*) FROM recipient_search s WHERE s.account_id = $1 "
            "AND s.delivery_id = $2 AND s.search_text ILIKE $3"
        )
        return sql, [*query.args[:2], query.args[int(query.search[1:]) - 1]]
    return f"SELECT count(*) FROM recipients WHERE {' AND '.join(query.where)}", list(query.args)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def as_is(value: datetime | None) -> datetime | None:
    return value


def number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def to_json(row: Any, when: Callable[[datetime | None], Any] = iso) -> dict[str, Any]:
    """One recipient in the seed's field names, plus bounce, status and the human/machine split.
    `when` writes the times (`as_is` leaves them to orjson, which writes what `iso` does)."""
    return {
        "contactId": row["contact_id"],
        "clientContactId": row["client_contact_id"],
        "firstName": row["first_name"],
        "surname": row["surname"],
        "email": row["email"],
        "sentAt": when(row["sent_at"]),
        "deliveredAt": when(row["delivered_at"]),
        "openedAt": when(row["opened_at"]),
        "openCount": row["open_count"],
        "openCountHuman": row["open_human_count"],
        "openCountMachine": row["open_machine_count"],
        "clickedAt": when(row["clicked_at"]),
        "clickCount": row["click_count"],
        "clickCountHuman": row["click_human_count"],
        "clickCountMachine": row["click_machine_count"],
        "unsubscribedAt": when(row["unsubscribed_at"]),
        "complainedAt": when(row["complained_at"]),
        "bouncedAt": when(row["bounced_at"]),
        "bounceClass": row["bounce_class"],
        "bounceCode": row["bounce_code"],
        "bounceReason": row["bounce_reason"],
        "droppedAt": when(row["dropped_at"]),
        "conversionsAmount": number(row["conversions_amount"]),
        "conversionsCurrency": row["conversions_currency"],
        "conversionsNumber": row["conversions_count"],
        "abVersion": row["ab_version"],
        "status": row["status"],
        "deliveryStatus": row["delivery_status"],
    }


def path_id(request: Request, name: str) -> str:
    """An id from the path; one no row can hold (over 256 characters, a NUL) is a 404."""
    value: str = request.path_params[name]
    if not 1 <= len(value) <= 256 or "\x00" in value:
        raise NotFound(f"{name} {value[:64]!r} not found")
    return value


def delivery_ids(request: Request) -> tuple[str, str]:
    return path_id(request, "campaignId"), path_id(request, "deliveryId")


async def require_delivery(conn: Any, account: str, campaign: str, delivery: str) -> None:
    """404 unless the account has recipients of that delivery under that campaign."""
    await delivery_scope(conn, account, campaign, delivery)


async def delivery_scope(conn: Any, account: str, campaign: str, delivery: str) -> bool:
    """404 unless the account has recipients of that delivery under that campaign (or none);
    True when every recipient of the delivery is under that campaign or none."""
    row = await conn.fetchrow(db.QUERIES["delivery_scope"], account, campaign, delivery)
    if row is None or not row["found"]:
        raise NotFound(f"delivery {campaign}/{delivery} not found")
    return bool(row["only"])


def narrow(query: Query, only: bool) -> None:
    """Drop the campaign condition when delivery_scope found it holds for every recipient."""
    query.implied = only


# to_json's field names, in order (the export's CSV header)
FIELD_NAMES = tuple(to_json(defaultdict(lambda: None)))


async def endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/recipients"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    query = build(account, campaign, delivery, request.query_params)
    async with svc.pool.acquire() as conn:
        narrow(query, await delivery_scope(conn, account, campaign, delivery))
        sql, args = page_sql(query)
        rows = await conn.fetch(sql, *args)
        sql, args = count_sql(query)
        total = await conn.fetchval(sql, *args)
    return json(
        {
            "recipients": [to_json(r, as_is) for r in rows],
            "paging": {"start": query.offset, "count": len(rows), "totalCount": total},
        }
    )
