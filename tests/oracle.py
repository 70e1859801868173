"""An independent in-memory fold of Event API events, to compare PostgreSQL's rows against.

It knows nothing of the SQL: it dedups by the events' identity fields and folds per recipient
with plain Python, so a fault test can check the database field by field.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from service.events import parse_time

IDENTITY = ("type", "occurred_at", "delivery_id", "message_id", "url", "id", "name")


def identity(e: dict[str, Any]) -> tuple[Any, ...]:
    return (
        *(e.get(k) for k in IDENTITY),
        e["recipient"].get("email", "").lower(),
        parse_time(e["occurred_at"]),
    )


def fold(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(delivery_id, email) -> the fields the recipients table must hold."""
    distinct = {identity(e): e for e in events}.values()
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"open_count": 0, "click_count": 0, "open_machine_count": 0, "event_count": 0}
    )
    for e in distinct:
        row = rows[(e["delivery_id"], e["recipient"]["email"].lower())]
        at = parse_time(e["occurred_at"])
        row["event_count"] += 1
        if e["type"] == "opened":
            row["open_count"] += 1
            row["open_machine_count"] += e.get("machine") is True
        if e["type"] == "clicked":
            row["click_count"] += 1
        key = f"{e['type']}_first"
        row[key] = min(row.get(key, at), at)
    return dict(rows)


def db_view(rows: list[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The same fields read from recipients rows."""
    out = {}
    for r in rows:
        view: dict[str, Any] = {
            "open_count": r["open_count"],
            "click_count": r["click_count"],
            "open_machine_count": r["open_machine_count"],
            "event_count": r["event_count"],
        }
        for kind, column in (
            ("sent", "sent_at"),
            ("delivered", "delivered_at"),
            ("opened", "opened_at"),
            ("clicked", "clicked_at"),
        ):
            value: datetime | None = r[column]
            if value is not None:
                view[f"{kind}_first"] = value
        out[(r["delivery_id"], r["recipient_key"])] = view
    return out
