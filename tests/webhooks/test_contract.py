"""The shared contract every registered provider keeps: a genuine request verifies and yields
events; a wrong key, a tampered body, a stale timestamp or missing credentials are refused.

Each provider's `tests/webhooks/contract_<module>.py` supplies a Signer (see README.md there).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.errors import Rejected
from service.webhooks import PROVIDER_MODULES, PROVIDERS
from service.webhooks.base import RawRecord, WebhookRequest
from tests.webhooks.contract_test_helpers import signer_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://mailfold.example/webhooks/{name}/acme"


SIGNERS = [pytest.param(signer_of(m), id=m) for m in PROVIDER_MODULES]


def tamper(signer: Any, request: WebhookRequest) -> WebhookRequest:
    """A change that keeps the body readable: a custom one where the scheme needs it."""
    if hasattr(signer, "tamper"):
        return signer.tamper(request)  # type: ignore[no-any-return]
    body = request.body
    return replace(request, body=body[:-1] + b" " + body[-1:])


async def verify(signer: Any, request: WebhookRequest, credentials: Any, now: datetime) -> None:
    await PROVIDERS[signer.name].verify(request, credentials, signer.context(now))


def test_every_registered_provider_has_a_signer() -> None:
    assert [signer_of(m).name for m in PROVIDER_MODULES] == list(PROVIDERS)


@pytest.mark.parametrize("signer", SIGNERS)
async def test_a_genuine_request_is_accepted_and_yields_events(signer: Any) -> None:
    body = signer.sample_body()
    request = signer.sign(body, URL.format(name=signer.name), NOW)
    await verify(signer, request, signer.credentials("acme"), NOW)
    record = RawRecord(
        account="acme",
        source=signer.name,
        body=body,
        content_type=signer.content_type,
        headers={h: request.headers[h] for h in PROVIDERS[signer.name].keep_headers},
    )
    events = PROVIDERS[signer.name].parse(record)
    assert events and all(e.source == signer.name and e.account == "acme" for e in events)


@pytest.mark.parametrize("signer", SIGNERS)
async def test_a_wrong_key_is_refused(signer: Any) -> None:
    request = signer.sign(signer.sample_body(), URL.format(name=signer.name), NOW)
    with pytest.raises(Rejected, match=signer.name):
        await verify(signer, request, signer.wrong_credentials("acme"), NOW)


@pytest.mark.parametrize("signer", SIGNERS)
async def test_a_tampered_body_is_refused(signer: Any) -> None:
    if not getattr(signer, "signs_body", True):
        pytest.skip(f"{signer.name} authenticates the sender only; its body carries no signature")
    request = signer.sign(signer.sample_body(), URL.format(name=signer.name), NOW)
    with pytest.raises(Rejected):
        await verify(signer, tamper(signer, request), signer.credentials("acme"), NOW)


@pytest.mark.parametrize("signer", SIGNERS)
async def test_a_stale_timestamp_is_refused(signer: Any) -> None:
    if not signer.has_timestamp:
        pytest.skip(f"{signer.name}'s scheme has no timestamp")
    request = signer.sign(signer.sample_body(), URL.format(name=signer.name), NOW)
    # A provider whose retries carry the first attempt's signature accepts it for as long as it
    # retries (Mailgun: 8 hours); stale is past that.
    later = NOW + getattr(signer, "stale_after", timedelta(hours=1))
    with pytest.raises(Rejected):
        await verify(signer, request, signer.credentials("acme"), later)


@pytest.mark.parametrize("signer", SIGNERS)
async def test_missing_credentials_are_refused(signer: Any) -> None:
    request = signer.sign(signer.sample_body(), URL.format(name=signer.name), NOW)
    with pytest.raises(Rejected):
        await verify(signer, signer.strip(request), signer.credentials("acme"), NOW)


@pytest.mark.parametrize("signer", SIGNERS)
async def test_a_rotated_second_secret_is_accepted(signer: Any) -> None:
    good, old = signer.credentials("acme"), signer.wrong_credentials("acme")
    if not good.secrets:
        pytest.skip(f"{signer.name} has no secrets to rotate (pinned by options)")
    both = replace(good, secrets=(*old.secrets, *good.secrets))
    request = signer.sign(signer.sample_body(), URL.format(name=signer.name), NOW)
    await verify(signer, request, both, NOW)
