"""The A/B report through the real pipeline: a delivery's and a campaign's versions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.read.significance import TOO_FEW, two_proportion
from tests.harness import Account, Harness
from tests.read.story import folded, post

pytestmark = pytest.mark.integration

AT = "2025-06-01T12:00:00Z"


def sent(delivery: str, n: int, version: str | None, opened: int, clicked: int) -> list[Any]:
    """`n` recipients of `version`, all delivered; the first `opened` open, the first `clicked`
    of those click."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        rcpt = {"email": f"{version or 'x'}{i}@{delivery}.test"}
        base = {"campaign_id": "spring", "delivery_id": delivery, "recipient": rcpt}
        out.append({**base, "type": "sent", "occurred_at": AT, "ab_version": version})
        out.append({**base, "type": "delivered", "occurred_at": "2025-06-01T12:01:00Z"})
        if i < opened:
            out.append({**base, "type": "opened", "occurred_at": "2025-06-01T13:00:00Z"})
        if i < clicked:
            out.append(
                {**base, "type": "clicked", "occurred_at": "2025-06-01T13:01:00Z", "url": "u"}
            )
    return out


@pytest.fixture
async def tested(running: Harness, acme: Account) -> Any:
    d1 = [*sent("d1", 40, "A", 20, 6), *sent("d1", 40, "B", 10, 2), *sent("d1", 2, None, 0, 0)]
    d2 = sent("d2", 10, "A", 5, 0)
    async with running.client(acme) as client:
        await post(client, [*d1, *d2])
        await folded(running, len(d1) + len(d2))
        yield client


async def test_a_deliverys_versions_have_the_summarys_funnel_and_their_tests(
    tested: httpx.AsyncClient,
) -> None:
    body = (await tested.get("/v1/deliveries/spring/d1/ab")).json()
    a, b = body["versions"]
    assert (a["abVersion"], a["delivered"], a["opensUnique"], a["clicksUnique"]) == ("A", 40, 20, 6)
    assert (b["abVersion"], b["delivered"], b["opensUnique"], b["clicksUnique"]) == ("B", 40, 10, 2)
    assert a["rates"]["openRateUnique"] == 0.5 and b["rates"]["openRateUnique"] == 0.25
    opens = b["tests"]["openRateUnique"]
    # pooled 30/80: z = -0.25 / sqrt(0.375 * 0.625 * 2/40) = -2.309, p = 0.0209
    assert opens["best"] == "A" and opens["z"] == pytest.approx(-2.3094, abs=1e-4)
    assert opens["pValue"] == pytest.approx(two_proportion(10, 40, 20, 40).p_value)
    assert opens["pValue"] == pytest.approx(0.0209, abs=1e-4)
    assert a["tests"]["openRateUnique"]["reason"] == "the best version"
    # 8 clicks of 80: 4 expected per version, too few for the normal approximation
    assert b["tests"]["clickRateUnique"] == {
        "best": "A",
        "z": None,
        "pValue": None,
        "reason": TOO_FEW,
    }
    assert body["unversioned"]["total"] == 2
    summary = (await tested.get("/v1/deliveries/spring/d1/summary")).json()
    for key in ("total", "sent", "delivered", "opensUnique", "clicks"):
        assert a[key] + b[key] + body["unversioned"][key] == summary[key], key


async def test_a_campaigns_versions_add_up_its_deliveries(tested: httpx.AsyncClient) -> None:
    body = (await tested.get("/v1/campaigns/spring/ab")).json()
    assert body["deliveryIds"] == ["d1", "d2"]
    a, b = body["versions"]
    assert (a["abVersion"], a["delivered"], a["opensUnique"]) == ("A", 50, 25)
    assert (b["abVersion"], b["delivered"]) == ("B", 40)
    assert b["tests"]["openRateUnique"]["pValue"] == pytest.approx(
        two_proportion(10, 40, 25, 50).p_value
    )


async def test_unknown_deliveries_campaigns_and_parameters_are_refused(
    tested: httpx.AsyncClient,
) -> None:
    assert (await tested.get("/v1/deliveries/spring/nope/ab")).status_code == 404
    assert (await tested.get("/v1/deliveries/autumn/d1/ab")).status_code == 404
    assert (await tested.get("/v1/campaigns/autumn/ab")).status_code == 404
    answer = await tested.get("/v1/campaigns/spring/ab", params={"x": "1"})
    assert answer.status_code == 400
