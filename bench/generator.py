"""A seeded send: SendGrid-shaped webhook events with a real send's mix, in arrival order.

Per recipient: `processed`, then `delivered` (or a bounce or a drop; a few deferrals first),
opens for 20-40 % (a third of them Apple MPP machine opens, some repeated), clicks for a few %,
rare unsubscribes and complaints. Deliveries start staggered, so the stream mixes new sends with
engagement on older ones. About 1 % of events arrive twice and arrival is not time order (a
delay per event, long for a few), as with real webhooks. Field shapes follow SendGrid's event
reference (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event).
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

Event = dict[str, Any]

FIRST_NAMES = (
    "Anna", "Ben", "Chloe", "David", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Klara",
    "Lukas", "Marta", "Noah", "Olivia", "Paul", "Rosa", "Simon", "Tara", "Umar", "Vera", "Wen",
    "Yara", "Zoe", "Mateo", "Sofia", "Liam", "Emma", "Aarav", "Mia", "Kenji", "Nadia",
)  # fmt: skip
SURNAMES = (
    "Smith", "Müller", "García", "Rossi", "Novak", "Kowalski", "Dubois", "Jensen", "Silva",
    "Yilmaz", "Nagy", "Popescu", "Horvat", "Andersson", "Virtanen", "Murphy", "Kim", "Nguyen",
    "Schmidt", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann", "Schulz", "Koch",
    "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Brown", "Taylor", "Wilson", "Davies",
)  # fmt: skip
DOMAINS = (
    "gmail.com", "yahoo.com", "outlook.com", "icloud.com", "gmx.de", "web.de", "hotmail.com",
    "t-online.de", "orange.fr", "example.org",
)  # fmt: skip
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
)
# Apple Mail Privacy Protection fetches with a bare agent; SendGrid flags it sg_machine_open.
MPP_AGENT = "Mozilla/5.0"
LINKS = (
    "https://shop.example.com/spring?utm_source=newsletter&utm_medium=email",
    "https://shop.example.com/products/linen-shirt?utm_source=newsletter",
    "https://shop.example.com/account/preferences",
    "https://blog.example.com/2025/06/what-to-wear-this-summer",
)
BOUNCE_REASON = (
    "550 5.1.1 The email account that you tried to reach does not exist. Please try "
    "double-checking the recipient's email address for typos or unnecessary spaces."
)
BLOCK_REASON = "421 4.7.0 [TSS04] Messages temporarily deferred due to user complaints"


@dataclass(frozen=True, slots=True)
class Mix:
    """The proportions of a send; rates are per recipient unless named otherwise."""

    deliveries: int = 14
    recipients: int = 20_000  # per delivery
    stagger_s: int = 1800  # between delivery starts
    open_rate: tuple[float, float] = (0.20, 0.40)  # drawn per delivery
    click_rate: tuple[float, float] = (0.02, 0.05)
    bounce_rate: tuple[float, float] = (0.01, 0.02)
    hard_share: float = 0.7  # of bounces
    drop_rate: float = 0.004
    defer_rate: float = 0.02
    unsubscribe_rate: float = 0.002
    complaint_rate: float = 0.0003
    machine_open_share: float = 0.35
    repeat_open_p: float = 0.35  # chance of one more open, again and again
    duplicate_rate: float = 0.01  # of events
    late_rate: float = 0.02  # of events, arriving minutes late


def email_of(first: str, surname: str, n: int) -> str:
    ascii_surname = surname.encode("ascii", "ignore").decode()
    return f"{first}.{ascii_surname}{n}@{DOMAINS[n % len(DOMAINS)]}".lower()


class Send:
    """One generator run; `events()` is deterministic for a seed and a Mix."""

    def __init__(self, seed: int, mix: Mix, start: int = 1_748_764_800) -> None:
        self.rng = random.Random(seed)
        self.mix = mix
        self.start = start  # 2025-06-01T08:00:00Z

    def token(self, n: int = 16) -> str:
        return base64.b64encode(self.rng.randbytes(n)).decode()

    def events(self) -> list[Event]:
        """Every delivery's events, merged in arrival order, duplicates included."""
        timed: list[tuple[float, Event]] = []
        for d in range(self.mix.deliveries):
            timed.extend(self.delivery(d, self.start + d * self.mix.stagger_s))
        self.disorder(timed)
        timed.sort(key=lambda pair: pair[0])
        return [event for _, event in timed]

    def disorder(self, timed: list[tuple[float, Event]]) -> None:
        """Arrival = event time + a delay (seconds; minutes for a few), plus retried copies."""
        rng, mix = self.rng, self.mix
        for i, (at, event) in enumerate(timed):
            late = rng.random() < mix.late_rate
            timed[i] = (at + (rng.uniform(60, 900) if late else rng.expovariate(0.5)), event)
        copies = [
            (at + rng.uniform(5, 300), event)
            for at, event in timed
            if rng.random() < mix.duplicate_rate
        ]
        timed.extend(copies)

    def delivery(self, d: int, start: int) -> Iterator[tuple[float, Event]]:
        rng, mix = self.rng, self.mix
        rates = (
            rng.uniform(*mix.open_rate),
            rng.uniform(*mix.click_rate),
            rng.uniform(*mix.bounce_rate),
        )
        meta = {"campaign_id": f"c-{d // 3:03d}", "delivery_id": f"d-{d:05d}"}
        for r in range(mix.recipients):
            yield from self.recipient(d * mix.recipients + r, start, meta, rates)

    def recipient(
        self, n: int, start: int, meta: dict[str, str], rates: tuple[float, float, float]
    ) -> Iterator[tuple[float, Event]]:
        rng, mix = self.rng, self.mix
        open_rate, click_rate, bounce_rate = rates
        first, surname = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
        message = f"{rng.getrandbits(48):012x}.{rng.getrandbits(16):04x}"
        base: Event = {
            "email": email_of(first, surname, n),
            "smtp-id": f"<{message}@ismtpd-042>",
            "category": ["newsletter", meta["campaign_id"]],
            "sg_message_id": f"{message}.filter0001.16648.5515E0B88.0",
            **meta,
            "contact_id": str(100_000 + n),
            "client_contact_id": f"CRM-{n:07d}",
        }
        at = start + rng.uniform(0, 600)

        def emit(name: str, t: float, **extra: Any) -> tuple[float, Event]:
            event = {**base, "event": name, "timestamp": int(t), "sg_event_id": self.token()}
            event.update(extra)
            return t, event

        yield emit("processed", at)
        if rng.random() < mix.drop_rate:
            yield emit("dropped", at + 1, reason="Bounced Address", status="5.0.0")
            return
        at += rng.uniform(1, 30)
        if rng.random() < mix.defer_rate:
            yield emit("deferred", at, response="451 4.7.1 Try again later", attempt="1")
            at += rng.uniform(300, 3600)
        if rng.random() < bounce_rate:
            hard = rng.random() < mix.hard_share
            yield emit(
                "bounce",
                at,
                type="bounce" if hard else "blocked",
                status="5.1.1" if hard else "4.7.0",
                reason=BOUNCE_REASON if hard else BLOCK_REASON,
                bounce_classification="Invalid Address" if hard else "Reputation",
            )
            return
        yield emit(
            "delivered",
            at,
            response="250 2.0.0 OK",
            ip="149.72.154.232",
            tls=1,
        )
        if rng.random() < open_rate:
            yield from self.engagement(emit, at, click_rate / open_rate)

    def engagement(self, emit: Any, at: float, click_given_open: float) -> Iterator[Any]:
        rng, mix = self.rng, self.mix
        machine = rng.random() < mix.machine_open_share
        opened = at + (rng.uniform(1, 120) if machine else rng.expovariate(1 / 10_800))
        agent = MPP_AGENT if machine else rng.choice(USER_AGENTS)
        ip = ".".join(str(rng.randint(1, 223)) for _ in range(4))
        while True:
            yield emit("open", opened, useragent=agent, ip=ip, sg_machine_open=machine)
            if rng.random() >= mix.repeat_open_p:
                break
            opened += rng.expovariate(1 / 7200)
        if rng.random() < click_given_open:
            clicked = opened + rng.uniform(2, 600)
            link = rng.randrange(len(LINKS))
            yield emit(
                "click",
                clicked,
                useragent=rng.choice(USER_AGENTS),
                ip=ip,
                url=LINKS[link],
                url_offset={"index": link, "type": "html"},
            )
            if rng.random() < 0.03:
                yield emit("unsubscribe", clicked + rng.uniform(5, 60))
        if rng.random() < mix.unsubscribe_rate:
            yield emit("unsubscribe", opened + rng.uniform(5, 600))
        if rng.random() < mix.complaint_rate:
            # Spam reports often come without custom args: attributed through sg_message_id.
            _, event = emit("spamreport", opened + rng.uniform(60, 86_400))
            for key in ("campaign_id", "delivery_id", "contact_id", "client_contact_id"):
                event.pop(key, None)
            yield event["timestamp"], event


def send_events(seed: int, mix: Mix | None = None) -> list[Event]:
    """The seeded send's SendGrid events in arrival order."""
    return Send(seed, mix or Mix()).events()


def batches(events: list[Event], size: int) -> Iterator[list[Event]]:
    """Consecutive webhook batches, as SendGrid flushes them."""
    for i in range(0, len(events), size):
        yield events[i : i + size]


def body(events: list[Event]) -> bytes:
    return orjson.dumps(events)


def api_event(event: Event) -> Event:
    """The same event as a platform would post it to the Event API (README, "Event API")."""
    kinds = {
        "processed": "sent",
        "delivered": "delivered",
        "deferred": "deferred",
        "bounce": "bounced",
        "dropped": "dropped",
        "open": "opened",
        "click": "clicked",
        "unsubscribe": "unsubscribed",
        "spamreport": "complained",
    }
    out: Event = {
        "type": kinds[event["event"]],
        "occurred_at": datetime.fromtimestamp(event["timestamp"], UTC).isoformat(),
        "message_id": event["sg_message_id"].split(".", 1)[0],
        "recipient": {"email": event["email"]},
    }
    for key in ("campaign_id", "delivery_id"):
        if key in event:
            out[key] = event[key]
    if "client_contact_id" in event:
        out["recipient"]["client_contact_id"] = event["client_contact_id"]
    if event["event"] in ("open", "click"):
        out["ip"] = event["ip"]
        out["user_agent"] = event["useragent"]
    if event["event"] == "click":
        out["url"] = event["url"]
    if event["event"] == "bounce":
        out["bounce"] = {"class": "hard" if event["type"] == "bounce" else "soft"}
    return out


def reads_email(i: int) -> str:
    """The address of recipient `i` of the reads phase's generated delivery (see READS_SQL)."""
    return f"r{i}@{DOMAINS[i % len(DOMAINS)]}"


def engagement(seed: int, recipients: int, count: int, campaign: str, delivery: str) -> list[Event]:
    """Opens and clicks on the reads phase's delivery, to fold while it is being read."""
    rng = random.Random(seed)
    out: list[Event] = []
    for k in range(count):
        i = rng.randint(1, recipients)
        click = rng.random() < 0.1
        event: Event = {
            "email": reads_email(i),
            "timestamp": 1_748_944_800 + k // 50,
            "event": "click" if click else "open",
            "sg_event_id": base64.b64encode(rng.randbytes(16)).decode(),
            "sg_message_id": f"big{i:07d}.filter0001.16648.5515E0B88.0",
            "campaign_id": campaign,
            "delivery_id": delivery,
            "useragent": rng.choice(USER_AGENTS),
            "ip": f"198.51.100.{i % 250 + 1}",
        }
        if click:
            event["url"] = rng.choice(LINKS)
        out.append(event)
    return out
