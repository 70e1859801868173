"""The whole pipeline through HTTP: Event API -> Kafka -> normalize -> fold -> recipient list."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import Harness, wait_for

pytestmark = pytest.mark.integration

URL = "/v1/deliveries/c1/d1/recipients"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")  # fmt: skip


def event(kind: str, at: str, email: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "occurred_at": at,
        "campaign_id": "c1",
        "delivery_id": "d1",
        "recipient": {"email": email, **extra.pop("recipient", {})},
        **extra,
    }


PEOPLE = [
    ("john.doe@example.com", "John", "Doe", "56738"),
    ("jane.smith@example.com", "Jane", "Smith", "185506"),
    ("bob.brown@example.com", "Bob", "Brown", "3"),
    ("ann.onym@example.com", "Ann", "Onym", "4"),
]


def story() -> list[dict[str, Any]]:
    """A delivery to four people: opens, clicks, a bounce, an unsubscribe, a spam report, a sale."""
    out = []
    for email, first, last, client_id in PEOPLE:
        rcpt = {"first_name": first, "surname": last, "client_contact_id": client_id}
        out.append(event("sent", "2025-06-01T12:00:00Z", email, recipient=rcpt))
    john, jane, bob, ann = (p[0] for p in PEOPLE)
    out += [
        event("delivered", "2025-06-01T12:58:00Z", john),
        event("delivered", "2025-06-01T12:59:00Z", jane),
        event("delivered", "2025-06-01T12:59:30Z", ann),
        event("opened", "2025-06-01T13:00:00Z", john, machine=False),
        event("opened", "2025-06-01T13:05:00Z", john, machine=True),
        event("clicked", "2025-06-01T13:01:30Z", john, url="https://shop.test/a"),
        event("clicked", "2025-06-01T13:02:30Z", john, url="https://shop.test/b"),
        event("clicked", "2025-06-01T13:03:30Z", john, url="https://shop.test/a"),
        event("opened", "2025-06-01T14:22:00Z", jane),
        event("unsubscribed", "2025-06-01T14:25:00Z", jane),
        event(
            "bounced",
            "2025-06-01T12:01:00Z",
            bob,
            bounce={"class": "hard", "code": "5.1.1", "reason": "no such user"},
        ),
        event("complained", "2025-06-02T09:00:00Z", ann),
        event(
            "converted",
            "2025-06-01T15:00:00Z",
            john,
            conversion={"amount": 1287, "currency": "EUR"},
        ),
    ]
    return out


async def post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/events", json=events)
    assert response.status_code == 202, response.text


async def folded(h: Harness, client: httpx.AsyncClient, total: int) -> None:
    """Wait until `total` distinct events are in the ledger and the delivery answers."""
    await wait_for(
        lambda: h.fetch("SELECT count(*) AS n FROM events"), lambda rows: rows[0]["n"] >= total
    )
    await wait_for(lambda: client.get(URL), lambda r: r.status_code == 200)


async def consumed(h: Harness, records: int) -> None:
    """Wait until the fold has stored offsets past `records` records of mailfold.events."""
    await wait_for(
        lambda: h.fetch("SELECT coalesce(sum(next_offset), 0) AS n FROM consumer_offsets"),
        lambda rows: rows[0]["n"] >= records,
    )


@pytest.fixture
async def running(harness: Harness) -> Harness:
    await harness.start_app()
    await harness.start_pipeline()
    return harness


async def test_posted_events_come_back_as_the_seeds_recipient_list(running: Harness) -> None:
    acme = await running.account()
    async with running.client(acme) as client:
        await post(client, story())
        await folded(running, client, len(story()))
        body = (await client.get(URL, params={"sort": "email"})).json()
    assert body["paging"] == {"start": 0, "count": 4, "totalCount": 4}
    by_email = {r["email"]: r for r in body["recipients"]}
    john = by_email["john.doe@example.com"]
    assert john["firstName"] == "John" and john["clientContactId"] == "56738"
    assert john["deliveredAt"] == "2025-06-01T12:58:00+00:00"
    assert john["openedAt"] == "2025-06-01T13:00:00+00:00"
    assert (john["openCount"], john["openCountHuman"], john["openCountMachine"]) == (2, 1, 1)
    assert john["clickedAt"] == "2025-06-01T13:01:30+00:00" and john["clickCount"] == 3
    assert (john["conversionsAmount"], john["conversionsCurrency"]) == (1287, "EUR")
    assert john["conversionsNumber"] == 1 and john["status"] == "clicked"
    jane = by_email["jane.smith@example.com"]
    assert (
        jane["unsubscribedAt"] == "2025-06-01T14:25:00+00:00" and jane["status"] == "unsubscribed"
    )
    bob = by_email["bob.brown@example.com"]
    assert (bob["bounceClass"], bob["bounceCode"], bob["status"]) == (
        "hard",
        "5.1.1",
        "hard_bounced",
    )
    assert bob["deliveredAt"] is None
    assert by_email["ann.onym@example.com"]["complainedAt"] == "2025-06-02T09:00:00+00:00"


@pytest.mark.parametrize(
    ("params", "emails"),
    [
        ({"signal": "delivered"}, ["ann.onym", "jane.smith", "john.doe"]),
        ({"signal": "opened"}, ["jane.smith", "john.doe"]),
        ({"signal": "clicked"}, ["john.doe"]),
        ({"signal": "bounced"}, ["bob.brown"]),
        ({"signal": "unsubscribed"}, ["jane.smith"]),
        ({"signal": "complained"}, ["ann.onym"]),
        ({"signal": "spam"}, ["ann.onym"]),
        ({"signal": "converted"}, ["john.doe"]),
        ({"signal": "opened_human"}, ["john.doe"]),
        ({"signal": "clicked_human"}, []),
        ({"q": "SMITH"}, ["jane.smith"]),
        ({"q": "john"}, ["john.doe"]),
        ({"q": "1855"}, ["jane.smith"]),
        ({"sort": "-openedAt,surname"}, ["jane.smith", "john.doe", "bob.brown", "ann.onym"]),
        ({"sort": "surname"}, ["bob.brown", "john.doe", "ann.onym", "jane.smith"]),
        ({"sort": "-clickCount,email"}, ["john.doe", "ann.onym", "bob.brown", "jane.smith"]),
        ({"sort": "email", "limit": "2", "offset": "1"}, ["bob.brown", "jane.smith"]),
        ({"signal": "opened", "dateFrom": "2025-06-01T14:00:00Z"}, ["jane.smith"]),
        ({"signal": "opened", "dateTo": "2025-06-01T13:30:00Z"}, ["john.doe"]),
        (
            {"dateFrom": "2025-06-01", "dateTo": "2025-06-01", "sort": "email"},
            ["ann.onym", "bob.brown", "jane.smith", "john.doe"],
        ),
        ({"dateFrom": "2025-06-02"}, []),
    ],
)
async def test_every_parameter_filters_sorts_and_pages(
    running: Harness, params: dict[str, str], emails: list[str]
) -> None:
    acme = await running.account()
    async with running.client(acme) as client:
        await post(client, story())
        await folded(running, client, len(story()))
        r = await client.get(URL, params=params)
    assert r.status_code == 200, r.text
    got = [x["email"].split("@")[0] for x in r.json()["recipients"]]
    assert got == emails
    if "limit" in params:
        assert r.json()["paging"] == {"start": 1, "count": 2, "totalCount": 4}


async def test_duplicates_never_double_count(running: Harness) -> None:
    acme = await running.account()
    events = story()
    async with running.client(acme) as client:
        await post(client, events)
        await post(client, events[::-1])  # a retry of everything, in another order
        await post(client, [events[4], events[4]])
        # Every record of the three posts has passed through the fold.
        await consumed(running, 2 * len(events) + 2)
        body = (await client.get(URL, params={"signal": "clicked"})).json()
    assert body["recipients"][0]["clickCount"] == 3
    assert body["recipients"][0]["openCount"] == 2


async def test_out_of_order_events_give_the_right_first_and_last_times(running: Harness) -> None:
    acme = await running.account()
    email = "late@example.com"
    opens = ["2025-06-03T10:00:00Z", "2025-06-01T09:00:00Z", "2025-06-02T08:00:00Z"]
    async with running.client(acme) as client:
        for at in opens:
            await post(client, [event("opened", at, email)])
        await post(client, [event("delivered", "2025-06-01T08:00:00Z", email)])
        await folded(running, client, 4)
        body = (await client.get(URL)).json()
    (row,) = body["recipients"]
    assert row["openedAt"] == "2025-06-01T09:00:00+00:00" and row["openCount"] == 3
    last = await running.fetch("SELECT last_opened_at FROM recipients")
    assert last[0]["last_opened_at"].isoformat() == "2025-06-03T10:00:00+00:00"


async def test_an_event_without_delivery_is_attributed_through_its_message_id(
    running: Harness,
) -> None:
    acme = await running.account()
    email = "async@example.com"
    bounce = {
        "type": "bounced",
        "occurred_at": "2025-06-01T13:00:00Z",
        "message_id": "msg-77",
        "recipient": {"email": email},
        "bounce": {"class": "soft", "reason": "mailbox full"},
    }
    async with running.client(acme) as client:
        await post(client, [bounce])  # arrives before the mapping is known: it waits
        await wait_for(
            lambda: running.fetch("SELECT count(*) AS n FROM events"),
            lambda rows: rows[0]["n"] == 1,
        )
        sent = event("sent", "2025-06-01T12:00:00Z", email, message_id="msg-77")
        await post(client, [sent])
        body = await wait_for(
            lambda: client.get(URL, params={"signal": "bounced"}),
            lambda r: r.status_code == 200 and r.json()["paging"]["totalCount"] == 1,
        )
    (row,) = body.json()["recipients"]
    assert (row["bounceClass"], row["bounceReason"], row["status"]) == (
        "soft",
        "mailbox full",
        "soft_bounced",
    )


async def test_bad_events_are_refused_by_index_and_field_and_nothing_is_produced(
    running: Harness,
) -> None:
    acme = await running.account()
    async with running.client(acme) as client:
        good = event("opened", "2025-06-01T13:00:00Z", "a@example.com")
        r = await client.post("/v1/events", json=[good, {**good, "type": "read"}])
        assert r.status_code == 400
        assert {"index": 1, "field": "type"}.items() <= r.json()["details"][0].items()
        r = await client.post("/v1/events", content=b"x" * (running.settings.max_body_bytes + 1))
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        await post(client, [event("opened", "2025-06-01T13:00:00Z", "marker@example.com")])
        await folded(running, client, 1)
    rows = await running.fetch("SELECT recipient_key FROM events")
    assert [r["recipient_key"] for r in rows] == ["marker@example.com"]


async def test_authentication_failures(running: Harness) -> None:
    acme = await running.account()
    async with running.client() as anonymous:
        r = await anonymous.post("/v1/events", json=[])
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        r = await anonymous.get(URL, auth=(acme.login, acme.secret + "x"))
        assert r.status_code == 401 and "message" in r.json()
        r = await anonymous.get(URL, auth=("nobody", acme.secret))
        assert r.status_code == 401
        r = await anonymous.get(URL, headers={"Authorization": "Basic !!!"})
        assert r.status_code == 401


async def test_an_ip_allow_list_refuses_other_addresses(running: Harness) -> None:
    fenced = await running.account("fenced", allowed_ips=["10.9.0.0/16"])
    local = await running.account("local", allowed_ips=["127.0.0.1"])
    good = [event("opened", "2025-06-01T13:00:00Z", "a@example.com")]
    async with running.client(fenced) as client:
        r = await client.post("/v1/events", json=good)
        assert r.status_code == 403 and "allow list" in r.json()["message"]
    async with running.client(local) as client:
        assert (await client.post("/v1/events", json=good)).status_code == 202


async def test_an_account_never_sees_another_accounts_delivery(running: Harness) -> None:
    acme, rival = await running.account("acme"), await running.account("rival")
    async with running.client(acme) as client:
        await post(client, story())
        await folded(running, client, len(story()))
        assert (await client.get("/v1/deliveries/other/d1/recipients")).status_code == 404
        assert (await client.get("/v1/deliveries/c1/nope/recipients")).status_code == 404
    async with running.client(rival) as client:
        r = await client.get(URL)
        assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_health_and_readiness(running: Harness) -> None:
    async with running.client() as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"] == {"postgres": "ok", "kafka": "ok"}


async def test_human_and_machine_figures_come_out_of_the_pipeline(running: Harness) -> None:
    acme = await running.account()
    gmail = (
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    )
    events = [
        event("delivered", "2025-06-01T12:00:00Z", "ann@example.com"),
        event("opened", "2025-06-01T12:00:30Z", "ann@example.com", user_agent="Mozilla/5.0"),
        event("opened", "2025-06-01T15:00:00Z", "ann@example.com", user_agent=gmail),
        event("opened", "2025-06-01T16:00:00Z", "ann@example.com"),  # no agent: undecided
        # a browser's agent a second after delivery: too fast for a person (whole-set rule)
        event("opened", "2025-06-01T12:00:01Z", "ann@example.com", user_agent=CHROME),
        # a scanner's burst: three links within two seconds from one address
        *[
            event("clicked", f"2025-06-01T12:01:0{i}Z", "ann@example.com",
                  url=f"https://shop.test/{i}", ip="40.1.2.3", user_agent="Mozilla/5.0 (X11)")
            for i in range(3)
        ],
        event("clicked", "2025-06-01T15:01:00Z", "ann@example.com", url="https://shop.test/0",
              ip="198.51.100.4", user_agent=CHROME),
    ]  # fmt: skip
    async with running.client(acme) as client:
        await post(client, events)
        await folded(running, client, len(events))
        rows = await wait_for(
            lambda: running.fetch("SELECT * FROM recipients"),
            lambda rows: (
                rows and rows[0]["click_machine_count"] == 3 and rows[0]["open_machine_count"] == 2
            ),
        )
        summary = (await client.get("/v1/deliveries/c1/d1/summary")).json()
    ann = rows[0]
    assert (ann["open_count"], ann["open_human_count"], ann["open_machine_count"]) == (4, 1, 2)
    assert (ann["click_count"], ann["click_human_count"], ann["click_machine_count"]) == (4, 1, 3)
    assert summary["opensHuman"] == 1 and summary["opensMachine"] == 2 and summary["opens"] == 4
    assert summary["clicksMachine"] == 3 and summary["clicksHuman"] == 1
    reasons = await running.fetch(
        "SELECT machine_reason, count(*) AS n FROM events WHERE type IN ('opened', 'clicked') "
        "GROUP BY 1 ORDER BY 1"
    )
    assert {r["machine_reason"]: r["n"] for r in reasons} == {
        "apple_mpp": 1, "click_burst": 3, "too_fast": 1, None: 3}  # fmt: skip
