"""An independent in-memory fold, to compare PostgreSQL's rows against field by field.

It knows nothing of the SQL: it deduplicates by the documented identity fields (DESIGN.md: source,
native event name, message id, recipient, event time, URL and a trustworthy event id), attributes
events that name only a message through the events that carry both, marks click bursts as
machine clicks (MACHINE.md e3: 3 or more distinct links within 2 seconds from one address) and
opens and clicks too soon after a send or delivery as machine ones (2 s, or 60 s without a user
agent), and folds with plain Python into the things the read side shows: recipient rows,
delivery counters per event type, link counts per URL and recipient, and per delivery how many
recipients have each signal.

Events are Event API objects; a provider's event can be described in the same shape with
`source`, `native` (its own event name) and `discriminator` (what its adapter folds into the id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from service.events import parse_time

Key = tuple[Any, ...]
Rows = dict[Key, dict[str, Any]]
Fetch = Callable[[str], Awaitable[list[Any]]]

# The precedence of DESIGN.md ("The fold"), as ranks: the status is the greatest reached.
RANKS = {
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
FIRST_TIMES = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "deferred": "deferred_at",
    "dropped": "dropped_at",
    "bounced": "bounced_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
    "unsubscribed": "unsubscribed_at",
    "complained": "complained_at",
    "converted": "converted_at",
}
COUNTERS = (
    "event_count",
    "open_count",
    "open_human_count",
    "open_machine_count",
    "click_count",
    "click_human_count",
    "click_machine_count",
    "conversions_count",
)
RECIPIENT_FIELDS = (
    *COUNTERS,
    *FIRST_TIMES.values(),
    "hard_bounced_at",
    "last_opened_at",
    "human_opened_at",
    "last_clicked_at",
    "human_clicked_at",
    "conversions_amount",
    "bounce_class",
    "status_rank",
    "first_event_at",
    "last_event_at",
)
DELIVERY_FIELDS = ("event_count", "machine_count", "human_count", "hard_count", "amount")
# delivery_counts: per delivery, how many recipients have each first time set
SIGNAL_COUNTS = {
    "sent_count": "sent_at",
    "delivered_count": "delivered_at",
    "opened_count": "opened_at",
    "clicked_count": "clicked_at",
    "bounced_count": "bounced_at",
    "dropped_count": "dropped_at",
    "unsubscribed_count": "unsubscribed_at",
    "complained_count": "complained_at",
    "converted_count": "converted_at",
    "human_opened_count": "human_opened_at",
    "human_clicked_count": "human_clicked_at",
}
COUNT_FIELDS = ("recipient_count", *SIGNAL_COUNTS)
BURST = timedelta(seconds=2)
BURST_LINKS = 3
FAST, FAST_WITHOUT_AGENT = timedelta(seconds=2), timedelta(seconds=60)
LINK_FIELDS = ("click_count", "machine_count", "first_at")


@dataclass
class State:
    """What the fold must have produced: recipients, delivery counters, link counts and the
    per-delivery recipient counts."""

    recipients: Rows = field(default_factory=dict)
    deliveries: Rows = field(default_factory=dict)
    links: Rows = field(default_factory=dict)
    counts: Rows = field(default_factory=dict)

    def tables(self) -> dict[str, Rows]:
        return {
            "recipients": self.recipients,
            "delivery_stats": self.deliveries,
            "links": self.links,
            "delivery_counts": self.counts,
        }


def recipient_key(e: dict[str, Any]) -> str:
    r = e["recipient"]
    email = (r.get("email") or "").strip().lower()
    return email or r.get("contact_id") or r.get("client_contact_id") or ""


def identity(e: dict[str, Any]) -> Key:
    """Two events with the same identity are one event, however often they are posted."""
    source = e.get("source", "api")
    discriminator = (e.get("id") or e.get("name")) if source == "api" else e.get("discriminator")
    return (
        source,
        e.get("native", e["type"]),
        e.get("message_id"),
        recipient_key(e),
        parse_time(e["occurred_at"]),
        e.get("url"),
        discriminator,
    )


def distinct(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event per identity (the first posted), in posting order."""
    seen: dict[Key, dict[str, Any]] = {}
    for e in events:
        seen.setdefault(identity(e), e)
    return list(seen.values())


def attribute(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(delivery_id, event) for every event whose delivery is known or resolvable."""
    index = {
        (e["message_id"], recipient_key(e)): e["delivery_id"]
        for e in events
        if e.get("message_id") and e.get("delivery_id")
    }
    out = []
    for e in events:
        delivery = e.get("delivery_id") or index.get((e.get("message_id"), recipient_key(e)))
        if delivery:
            out.append((delivery, e))
    return out


def mark_bursts(attributed: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Clicks inside a window of 2 s holding 3 or more distinct links from one address become
    machine clicks, whatever order they came in."""
    clicks: dict[Key, list[tuple[datetime, int]]] = defaultdict(list)
    for i, (delivery, e) in enumerate(attributed):
        if e["type"] == "clicked" and e.get("url"):
            key = (delivery, recipient_key(e), e.get("ip"))
            clicks[key].append((parse_time(e["occurred_at"]), i))
    marked: set[int] = set()
    for group in clicks.values():
        for start, _ in group:
            window = [(at, i) for at, i in group if start <= at <= start + BURST]
            if len({attributed[i][1]["url"] for _, i in window}) >= BURST_LINKS:
                marked.update(i for _, i in window)
    return [
        (delivery, {**e, "machine": True} if i in marked else e)
        for i, (delivery, e) in enumerate(attributed)
    ]


def mark_too_fast(
    attributed: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """Opens and clicks not already a machine's, less than 2 s after one of their recipient's
    `sent` or `delivered` events (60 s when they carry no user agent), become a machine's."""
    anchors: dict[Key, list[datetime]] = defaultdict(list)
    for delivery, e in attributed:
        if e["type"] in ("sent", "delivered"):
            anchors[(delivery, recipient_key(e))].append(parse_time(e["occurred_at"]))
    out = []
    for delivery, e in attributed:
        if e["type"] in ("opened", "clicked") and e.get("machine") is not True:
            at = parse_time(e["occurred_at"])
            window = FAST if e.get("user_agent") else FAST_WITHOUT_AGENT
            if any(a <= at < a + window for a in anchors[(delivery, recipient_key(e))]):
                e = {**e, "machine": True}
        out.append((delivery, e))
    return out


def rank(e: dict[str, Any]) -> int:
    kind = e["type"]
    if kind == "bounced":
        return RANKS["hard_bounced" if bounce_class(e) == "hard" else "soft_bounced"]
    return RANKS.get(kind, 0)


def bounce_class(e: dict[str, Any]) -> str | None:
    bounce = e.get("bounce") or {}
    value: str | None = bounce.get("class")
    return value


def amount(e: dict[str, Any]) -> Decimal | None:
    conv = e.get("conversion")
    return Decimal(str(conv["amount"])) if conv else None


def least(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def greatest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def fold_recipient(row: dict[str, Any], e: dict[str, Any]) -> None:
    kind, at, machine = e["type"], parse_time(e["occurred_at"]), e.get("machine")
    row["event_count"] += 1
    row["status_rank"] = max(row["status_rank"], rank(e))
    row["first_event_at"] = least(row["first_event_at"], at)
    row["last_event_at"] = greatest(row["last_event_at"], at)
    if kind in FIRST_TIMES:
        row[FIRST_TIMES[kind]] = least(row[FIRST_TIMES[kind]], at)
    if kind == "bounced":
        # The bounce shown: hard over soft over unknown, then the latest.
        pick = ({"hard": 2, "soft": 1}.get(bounce_class(e) or "", 0), at)
        if row["_bounce_pick"] is None or pick > row["_bounce_pick"]:
            row["_bounce_pick"], row["bounce_class"] = pick, bounce_class(e)
        if bounce_class(e) == "hard":
            row["hard_bounced_at"] = least(row["hard_bounced_at"], at)
    for verb, noun in (("opened", "open"), ("clicked", "click")):
        if kind == verb:
            row[f"{noun}_count"] += 1
            row[f"{noun}_machine_count"] += machine is True
            row[f"{noun}_human_count"] += machine is False
            row[f"last_{verb}_at"] = greatest(row[f"last_{verb}_at"], at)
            if machine is False:
                row[f"human_{verb}_at"] = least(row[f"human_{verb}_at"], at)
    if kind == "converted":
        row["conversions_count"] += 1
        row["conversions_amount"] = (row["conversions_amount"] or Decimal(0)) + (
            amount(e) or Decimal(0)
        )


def new_recipient() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RECIPIENT_FIELDS)
    row.update(dict.fromkeys(COUNTERS, 0), status_rank=0, _bounce_pick=None)
    return row


def expect(events: Iterable[dict[str, Any]]) -> State:
    """The state folding every distinct accepted event exactly once must give."""
    state = State()
    recipients: Rows = defaultdict(new_recipient)
    deliveries: Rows = defaultdict(lambda: dict.fromkeys(DELIVERY_FIELDS, 0))
    links: Rows = {}
    for delivery, e in mark_too_fast(mark_bursts(attribute(distinct(events)))):
        who, machine = recipient_key(e), e.get("machine") is True
        fold_recipient(recipients[(delivery, who)], e)
        stats = deliveries[(delivery, e["type"])]
        stats["event_count"] += 1
        stats["machine_count"] += machine
        stats["human_count"] += e.get("machine") is False
        stats["hard_count"] += bounce_class(e) == "hard"
        stats["amount"] += amount(e) or 0
        if e["type"] == "clicked" and e.get("url"):
            at = parse_time(e["occurred_at"])
            link = links.setdefault((delivery, e["url"], who), {**dict.fromkeys(LINK_FIELDS, 0)})
            link["click_count"] += 1
            link["machine_count"] += machine
            link["first_at"] = at if link["first_at"] == 0 else min(link["first_at"], at)
    for row in recipients.values():
        del row["_bounce_pick"]
    state.recipients, state.deliveries, state.links = dict(recipients), dict(deliveries), links
    state.counts = count_recipients(state.recipients)
    return state


def count_recipients(recipients: Rows) -> Rows:
    """Per delivery: recipients, and how many of them have each signal's first time."""
    counts: Rows = defaultdict(lambda: dict.fromkeys(COUNT_FIELDS, 0))
    for (delivery, _), row in recipients.items():
        per = counts[(delivery,)]
        per["recipient_count"] += 1
        for name, column in SIGNAL_COUNTS.items():
            per[name] += row[column] is not None
    return dict(counts)


async def observe(fetch: Fetch) -> State:
    """The same three views read from PostgreSQL (`fetch(sql)` returns rows)."""
    state = State()
    for r in await fetch("SELECT * FROM recipients"):
        state.recipients[(r["delivery_id"], r["recipient_key"])] = {
            f: r[f] for f in RECIPIENT_FIELDS
        }
    sums = ", ".join(f"sum({f}) AS {f}" for f in DELIVERY_FIELDS)
    for r in await fetch(f"SELECT delivery_id, type, {sums} FROM delivery_stats GROUP BY 1, 2"):
        state.deliveries[(r["delivery_id"], r["type"])] = {f: r[f] for f in DELIVERY_FIELDS}
    for r in await fetch("SELECT * FROM link_stats"):
        key = (r["delivery_id"], r["url"], r["recipient_key"])
        state.links[key] = {f: r[f] for f in LINK_FIELDS}
    sums = ", ".join(f"sum({f}) AS {f}" for f in COUNT_FIELDS)
    for r in await fetch(f"SELECT delivery_id, {sums} FROM delivery_counts GROUP BY 1"):
        if any(r[f] for f in COUNT_FIELDS):
            state.counts[(r["delivery_id"],)] = {f: r[f] for f in COUNT_FIELDS}
    return state


def differences(expected: State, got: State) -> dict[str, dict[Key, dict[str, Any]]]:
    """Per table, per key, the fields that differ as {field: (expected, got)}; empty if equal."""
    out: dict[str, dict[Key, dict[str, Any]]] = {}
    for (table, want), have in zip(expected.tables().items(), got.tables().values(), strict=True):
        diffs: dict[Key, dict[str, Any]] = {}
        for key in want.keys() | have.keys():
            a, b = want.get(key), have.get(key)
            if a is None or b is None:
                diffs[key] = {"row": (a is not None, b is not None)}
                continue
            fields = {f: (a[f], b[f]) for f in a if a[f] != b[f]}
            if fields:
                diffs[key] = fields
        if diffs:
            out[table] = diffs
    return out


def summary(diffs: dict[str, dict[Key, dict[str, Any]]], sample: int = 3) -> str:
    """A readable account of `differences`: counts per table and a few examples."""
    parts = []
    for table, rows in diffs.items():
        examples = "; ".join(f"{k}: {v}" for k, v in list(rows.items())[:sample])
        parts.append(f"{table}: {len(rows)} differ (expected, got), e.g. {examples}")
    return "\n".join(parts) or "no differences"
