"""Every event the normalizer produces validates against the published schema
(schemas/event.v1.json): the Event API's and each provider fixture's."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
from jsonschema import Draft202012Validator

from service.adapters import derive
from service.errors import ParseError
from service.events import decode, encode
from service.webhooks import PROVIDER_MODULES, PROVIDERS
from service.webhooks.base import RawRecord
from tests.webhooks.contract_test_helpers import signer_of

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = orjson.loads((ROOT / "schemas" / "event.v1.json").read_bytes())
VALIDATOR = Draft202012Validator(SCHEMA)
FIXTURES = ROOT / "tests" / "webhooks" / "fixtures"


def test_the_schema_itself_is_valid() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def api_body() -> bytes:
    base = {"occurred_at": "2025-06-01T10:00:00Z", "delivery_id": "d1", "campaign_id": "c1",
            "recipient": {"email": "a@example.com", "first_name": "A"}}  # fmt: skip
    return orjson.dumps([
        {**base, "type": "sent", "message_id": "m1"},
        {**base, "type": "bounced", "bounce": {"class": "hard", "code": "5.1.1", "reason": "x"}},
        {**base, "type": "clicked", "url": "https://x.test", "machine": True, "ip": "192.0.2.1"},
        {**base, "type": "converted", "conversion": {"amount": 12.5, "currency": "EUR"}},
        {**base, "type": "custom", "name": "cart", "payload": {"items": [1, 2]}},
    ])  # fmt: skip


def provider_bodies() -> list[tuple[str, Path]]:
    return [
        (module.replace("_", "-"), path)
        for module in PROVIDER_MODULES
        for path in sorted((FIXTURES / module).iterdir())
        if path.suffix in (".json", ".form")
        and not path.name.endswith((".expected.json", ".headers.json"))
    ]


def test_event_api_events_validate_and_round_trip() -> None:
    events = derive(RawRecord(account="acme", source="api", body=api_body()))
    assert len(events) == 5
    for event in events:
        data = orjson.loads(encode(event))
        VALIDATOR.validate(data)
        assert decode(encode(event)) == event


def raw_record(source: str, path: Path) -> RawRecord:
    """The fixture as the provider posts it (Mandrill's fixtures hold only the events array)."""
    signer = signer_of(source.replace("-", "_"))
    body = path.read_bytes()
    form = signer.content_type.startswith("application/x-www-form-urlencoded")
    if form and body.lstrip().startswith(b"["):
        body = urlencode({"mandrill_events": body.decode()}).encode()
    headers = {h: "msg_2fSeFXHp6qGZmkdN1pa9UbLGDSi" for h in PROVIDERS[source].keep_headers}
    recorded = path.with_name(path.name.rsplit(".", 1)[0] + ".headers.json")
    if recorded.exists():  # what ingest kept from the request (svix-id, time-zone, ...)
        headers.update(orjson.loads(recorded.read_bytes()))
    content_type = signer.content_type
    if path.suffix == ".form":
        content_type = "application/x-www-form-urlencoded"
    elif form and body.lstrip().startswith(b"{"):
        content_type = "application/json"
    return RawRecord(
        account="acme", source=source, body=body, content_type=content_type, headers=headers
    )


@pytest.mark.parametrize(("source", "path"), provider_bodies(), ids=lambda v: str(v)[-40:])
def test_provider_fixture_events_validate(source: str, path: Path) -> None:
    try:
        events = derive(raw_record(source, path))
    except ParseError:
        pytest.skip("a fixture the adapter refuses on purpose (its own test checks the reason)")
    for event in events:
        VALIDATOR.validate(orjson.loads(encode(event)))
        assert decode(encode(event)) == event
