"""No 5xx for bad input, on any route: hostile bodies, correctly signed, to the Event API and each
provider's webhook, and hostile paths and queries to the read API, against the real service,
broker and database. Each case is drawn from a seeded generator, every class of hostile value
at random places of each provider's own sample body.
"""

from __future__ import annotations

import json
import random
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import pytest

from service.webhooks import PROVIDER_MODULES
from tests.harness import Harness
from tests.integration.test_webhooks import RecordingSink, post_args
from tests.integration.test_webhooks import webhooks as webhooks  # the fixture
from tests.webhooks.contract_test_helpers import signer_of

pytestmark = pytest.mark.integration
MARK = "__hostile__"
# JSON text of each class of hostile value: lone surrogates, 64-bit overflow, huge and tiny
# numbers, 100 kB strings, control characters, wrong types, invalid dates, deep nesting.
VALUES = [
    '"x\\ud83d"',
    '"\\udc00"',
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999999999999",
    "1e308",
    "5e-324",
    "-0.0",
    '"' + "a" * 100_000 + '"',
    '"\\u0000\\u0001\\u001f\\u007f"',
    '"é\\u2028😀"',
    "{}",
    "[]",
    '{"a": {"b": [1, 2]}}',
    "true",
    "null",
    "0",
    '""',
    '"2022-15-16 03:11:00"',
    '"0000-00-00T00:00:00Z"',
    '"9999-12-31T23:59:59-23:59"',
    "1e20",
    "-1",
    "[" * 200 + "]" * 200,  # past any depth the ledger keeps; within what signers re-encode
    '"' + "[" * 40 + '"',
]
# Whole bodies: not JSON, not UTF-8, nesting past any reader's limit, empty.
BODIES = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b"\xff\xfe\x00\x01",
    b'{"a": "\xc3"}',
    b"[" * 300 + b"]" * 300,
    b"[" * 100_000,
    b'{"a": 1e999}',
    b"1" * 5000,
    b'"\\ud83d"',
    b"mandrill_events=%FF%00&x=%ZZ",
]


def paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a value can be put."""
    found = [at] if at else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*at, index))
    return found


def put(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def mangle_json(text: str, rnd: random.Random) -> str:
    """The document with one value, at a random place, replaced by a hostile one."""
    doc = json.loads(text)
    places = paths(doc)
    if not places:
        return rnd.choice(VALUES)
    put(doc, rnd.choice(places), MARK)
    return json.dumps(doc).replace(json.dumps(MARK), rnd.choice(VALUES), 1)


def mangle(provider: str, body: bytes, rnd: random.Random) -> bytes:
    """A hostile variant of a provider's sample body that its signer can still sign."""
    try:
        doc = json.loads(body)
    except ValueError:
        return mangle_form(body, rnd)
    if provider == "ses":  # the SES notification is a JSON document inside SNS's envelope
        doc["Message"] = mangle_json(doc["Message"], rnd)
        return json.dumps(doc).encode()
    return mangle_json(body.decode(), rnd).encode()


def mangle_form(body: bytes, rnd: random.Random) -> bytes:
    fields = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
    index = rnd.randrange(len(fields))
    name, value = fields[index]
    try:
        json.loads(value)
        fields[index] = (name, mangle_json(value, rnd))
        return urllib.parse.urlencode(fields).encode()
    except ValueError:
        encoded = urllib.parse.urlencode(fields[:index] + fields[index + 1 :])
        raw = rnd.choice(["%FF%FE", "%00", "a" * 100_000, "%ED%A0%BD", "2022-15-16+03:11:00"])
        return f"{encoded}&{urllib.parse.quote(name)}={raw}".encode()


def server_error(status: int) -> bool:
    # 503 is how the service says "retry later" for its own conditions (saturated, stopping);
    # for bad input it would make a sender retry the same bytes forever, so it counts here.
    return status >= 500


@pytest.mark.parametrize("module", PROVIDER_MODULES)
async def test_no_signed_hostile_webhook_body_gets_a_5xx(
    harness: Harness, webhooks: RecordingSink, module: str
) -> None:
    signer = signer_of(module)
    path = f"/webhooks/{signer.name}/acme"
    rnd = random.Random(module)
    seen: dict[int, int] = {}
    async with harness.client() as client:
        for body in BODIES:
            r = await client.post(path, content=body, headers={"content-type": signer.content_type})
            assert not server_error(r.status_code), (body[:80], r.status_code, r.text[:300])
        for _ in range(60):
            body = mangle(signer.name, signer.sample_body(), rnd)
            try:
                request = signer.sign(body, harness.base_url + path, datetime.now(UTC))
                args = post_args(request)
            except ValueError:  # a scheme that signs inside the body cannot sign this one
                args = {"content": body, "headers": {"content-type": signer.content_type}}
            r = await client.post(path, **args)
            assert not server_error(r.status_code), (body[:300], r.status_code, r.text[:300])
            assert r.headers["content-type"] == "application/json", r.text[:300]
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
    # The mangled bodies verify: most are accepted (kept for the DLQ and replay) or refused as
    # unreadable at the door, not refused as forged.
    assert sum(n for status, n in seen.items() if status in (200, 202, 400, 413)) >= 40, seen


async def test_no_hostile_event_api_body_gets_a_5xx(harness: Harness) -> None:
    await harness.start_app()
    acme = await harness.account()
    sample = json.dumps(
        [
            {
                "type": "converted",
                "occurred_at": "2025-06-01T12:00:00Z",
                "campaign_id": "c1",
                "delivery_id": "d1",
                "recipient": {"email": "ann@example.com", "first_name": "Ann"},
                "conversion": {"amount": "12.50", "currency": "EUR"},
                "url": "https://example.com/",
                "name": "purchase",
                "payload": {"sku": "a1", "items": [1, 2]},
            }
        ]
    )
    rnd = random.Random(12)
    async with harness.client(acme) as client:
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            r = await client.post("/v1/events", content=sample, headers={"content-type": kind})
            assert r.status_code == 415 and kind in r.json()["message"], r.text
        r = await client.post(
            "/v1/events",
            content=sample,
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert r.status_code == 202, r.text
        for body in BODIES:
            r = await client.post(
                "/v1/events", content=body, headers={"content-type": "application/json"}
            )
            assert 400 <= r.status_code < 500, (body[:80], r.status_code, r.text[:300])
        for _ in range(150):
            body = mangle_json(sample, rnd).encode()
            r = await client.post(
                "/v1/events", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code in (202, 400, 413), (body[:300], r.status_code, r.text[:300])
            if r.status_code == 400:
                assert r.json()["error"] == "bad_request" and r.json()["message"]


READ_PATHS = [
    "/v1/deliveries/{c}/{d}/recipients",
    "/v1/deliveries/{c}/{d}/recipients/{r}/timeline",
    "/v1/deliveries/{c}/{d}/summary",
    "/v1/deliveries/{c}/{d}/histogram",
    "/v1/deliveries/{c}/{d}/links",
    "/v1/deliveries/{c}/{d}/sent",
    "/v1/deliveries/{c}/{d}/undelivered",
    "/v1/deliveries/{c}/{d}/export",
    "/v1/activities",
    "/v1/activities/recent",
    "/v1/suppressions",
    "/v1/deliveries",
    "/v1/campaigns",
    "/v1/campaigns/{c}",
    "/v1/reports",
]
SEGMENTS = ["c1", "%FF", "%00", "a" * 3000, "%ED%A0%BD", "..", "%2F", "1e999", "-1"]
PARAMS = ["limit", "offset", "sort", "signal", "q", "dateFrom", "dateTo", "cursor", "interval",
          "timeZone", "status", "action", "format", "abVersion", "email", "since",
          "campaignId", "fields", "date", "post", "hour", "week", "quarter",
          "country_name"]  # fmt: skip
QUERY_VALUES = ["%FF", "%00", "-1", "99999999999999999999", "1e999", "2022-15-16", "NaN",
                "a" * 5000, "-openedAt,-openedAt", "%ED%A0%BD", "", "[]", "{}", "0x10",
                "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00",
                "Mars/Olympus", "ge:9999-12-31", "le:9999-12-31", "in:%00,a", "ge:2025-W53",
                "date,sum_opened,sum_opened", "in:", "2025-Q9", "Asia/Kathmandu"]  # fmt: skip


async def test_no_hostile_read_request_gets_a_5xx(harness: Harness) -> None:
    await harness.start_app()
    acme = await harness.account()
    rnd = random.Random(3)
    async with harness.client(acme) as client:
        for _ in range(300):
            path = rnd.choice(READ_PATHS).format(
                c=rnd.choice(SEGMENTS), d=rnd.choice(SEGMENTS), r=rnd.choice(SEGMENTS)
            )
            query = "&".join(
                f"{rnd.choice(PARAMS)}={rnd.choice(QUERY_VALUES)}" for _ in range(rnd.randrange(4))
            )
            r = await client.get(f"{path}?{query}")
            assert not server_error(r.status_code), (path, query[:200], r.status_code, r.text[:300])
