"""The delivery recipient activity list (seed 000): filters, search, sort, paging.

Filters: `signal` (seed 000), the `is_*` flags (seed 004), `abVersion` (seed 002), `status`,
`q` and dates, all combinable. SQL is composed only from the whitelists below; every value is a
$n parameter.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import db
from service.errors import NotFound
from service.http import authenticate, json, service_of
from service.read.params import bad, boolean, choices, integer, known_only, moment, text

# signal -> the column holding its first time
SIGNALS: dict[str, str] = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
    "bounced": "bounced_at",
    "dropped": "dropped_at",
    "unsubscribed": "unsubscribed_at",
    "spam": "complained_at",
    "converted": "converted_at",
    # Human-only signals: at least one open or click classified as a person's (MACHINE.md e4).
    "opened_human": "human_opened_at",
    "clicked_human": "human_clicked_at",
}
# Without a signal, dateFrom/dateTo apply to when the delivery reached the recipient.
DELIVERY_TIME = "coalesce(delivered_at, sent_at)"
# What `q` searches: the expression recipients_search_idx indexes (schema.sql).
SEARCH_TEXT = "mailfold_search_text(email, first_name, surname, client_contact_id)"

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
    "spamAt": "complained_at",
    "conversionsAmount": "conversions_amount",
    "conversionsNumber": "conversions_count",
    "status": "status_rank",
}
# seed 004's flags -> the column that is set once the thing happened
FLAGS: dict[str, str] = {
    "is_opened": "opened_at",
    "is_clicked": "clicked_at",
    "is_bounced": "bounced_at",
    "is_unsubscribed": "unsubscribed_at",
    "is_complained": "complained_at",
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
FILTERS = {"signal", "q", "dateFrom", "dateTo", "abVersion", "status", *FLAGS}
PARAMS = FILTERS | {"limit", "offset", "sort"}
MAX_OFFSET = 10_000_000

COLUMNS = """contact_id, client_contact_id, first_name, surname, email, recipient_key, ab_version,
sent_at, delivered_at, opened_at, open_count, open_human_count, open_machine_count, clicked_at,
click_count, click_human_count, click_machine_count, unsubscribed_at, complained_at, bounced_at,
bounce_class, bounce_code, bounce_reason, dropped_at, conversions_amount, conversions_currency,
conversions_count, mailfold_status(status_rank) AS status"""


@dataclass
class Query:
    where: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    order: str = "recipient_key"
    limit: int = 100
    offset: int = 0

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def parse_sort(raw: str | None) -> str:
    """`-openedAt,surname` -> ORDER BY with nulls last and recipient_key as the tie-break."""
    if not raw:
        return "recipient_key"
    parts = []
    seen = set()
    for token in raw.split(","):
        token = token.strip()
        desc = token.startswith("-")
        name = token[1:] if desc or token.startswith("+") else token
        if name not in SORTS:
            raise bad("sort", f"unknown field {name!r} (one of {', '.join(SORTS)})")
        if name in seen:
            raise bad("sort", f"field {name!r} given twice")
        seen.add(name)
        parts.append(f"{SORTS[name]} {'DESC' if desc else 'ASC'} NULLS LAST")
    return ", ".join([*parts, "recipient_key"])


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
    query.where.append(f"(campaign_id = {query.arg(campaign)} OR campaign_id IS NULL)")
    add_signal_and_dates(query, params)
    add_search(query, params)
    add_flags(query, params)
    query.limit = integer(params, "limit", 100, 1, 1000)
    query.offset = integer(params, "offset", 0, 0, MAX_OFFSET)
    query.order = parse_sort(params.get("sort"))
    return query


def add_signal_and_dates(query: Query, params: Any) -> None:
    """`signal` keeps who did it; dates apply to its time (to the delivery time without one)."""
    signal = params.get("signal")
    column = DELIVERY_TIME
    if signal is not None:
        if signal not in SIGNALS:
            raise bad("signal", f"must be one of {', '.join(SIGNALS)}")
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


def add_search(query: Query, params: Any) -> None:
    """`q`: a substring of the e-mail, first name, surname or client contact id (trigram index)."""
    q = params.get("q")
    if q is None:
        return
    if not 1 <= len(q) <= 200 or "\x00" in q:
        raise bad("q", "must be 1 to 200 characters, none of them NUL")
    p = query.arg(f"%{escape_like(q.strip())}%")
    query.where.append(f"{SEARCH_TEXT} ILIKE {p}")


def add_flags(query: Query, params: Any) -> None:
    """The `is_*` flags (true: it happened; false: it did not), `abVersion` and `status`."""
    for name, column in FLAGS.items():
        flag = boolean(params, name)
        if flag is not None:
            query.where.append(f"{column} IS {'NOT NULL' if flag else 'NULL'}")
    version = text(params, "abVersion")
    if version is not None:
        query.where.append(f"ab_version = {query.arg(version)}")
    statuses = choices(params, "status", STATUSES)
    if statuses is not None:
        ranks = [STATUSES[s] for s in statuses]
        query.where.append(f"status_rank = ANY({query.arg(ranks)}::smallint[])")


def page_sql(query: Query) -> tuple[str, list[Any]]:
    where = " AND ".join(query.where)
    args = [*query.args, query.limit, query.offset]
    n = len(query.args)
    sql = (
        f"SELECT {COLUMNS} FROM recipients WHERE {where} "
        f"ORDER BY {query.order} LIMIT ${n + 1} OFFSET ${n + 2}"
    )
    return sql, args


def count_sql(query: Query) -> tuple[str, list[Any]]:
    return f"SELECT count(*) FROM recipients WHERE {' AND '.join(query.where)}", list(query.args)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def to_json(row: Any) -> dict[str, Any]:
    """One recipient in the seed's field names, plus bounce, status and the human/machine split."""
    return {
        "contactId": row["contact_id"],
        "clientContactId": row["client_contact_id"],
        "firstName": row["first_name"],
        "surname": row["surname"],
        "email": row["email"],
        "sentAt": iso(row["sent_at"]),
        "deliveredAt": iso(row["delivered_at"]),
        "openedAt": iso(row["opened_at"]),
        "openCount": row["open_count"],
        "openCountHuman": row["open_human_count"],
        "openCountMachine": row["open_machine_count"],
        "clickedAt": iso(row["clicked_at"]),
        "clickCount": row["click_count"],
        "clickCountHuman": row["click_human_count"],
        "clickCountMachine": row["click_machine_count"],
        "unsubscribedAt": iso(row["unsubscribed_at"]),
        "spamAt": iso(row["complained_at"]),
        "bouncedAt": iso(row["bounced_at"]),
        "bounceClass": row["bounce_class"],
        "bounceCode": row["bounce_code"],
        "bounceReason": row["bounce_reason"],
        "droppedAt": iso(row["dropped_at"]),
        "conversionsAmount": number(row["conversions_amount"]),
        "conversionsCurrency": row["conversions_currency"],
        "conversionsNumber": row["conversions_count"],
        "abVersion": row["ab_version"],
        "status": row["status"],
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
    if not await conn.fetchval(db.QUERIES["delivery_exists"], account, campaign, delivery):
        raise NotFound(f"delivery {campaign}/{delivery} not found")


# to_json's field names, in order (the export's CSV header)
FIELD_NAMES = tuple(to_json(defaultdict(lambda: None)))


async def endpoint(request: Request) -> Response:
    """GET /v1/deliveries/{campaignId}/{deliveryId}/recipients"""
    svc = service_of(request)
    account = await authenticate(request)
    campaign, delivery = delivery_ids(request)
    query = build(account, campaign, delivery, request.query_params)
    async with svc.pool.acquire() as conn:
        await require_delivery(conn, account, campaign, delivery)
        sql, args = page_sql(query)
        rows = await conn.fetch(sql, *args)
        sql, args = count_sql(query)
        total = await conn.fetchval(sql, *args)
    return json(
        {
            "recipients": [to_json(r) for r in rows],
            "paging": {"start": query.offset, "count": len(rows), "totalCount": total},
        }
    )
