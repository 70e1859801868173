"""The A/B report's two-proportion z-test against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from service.read.ab import report
from service.read.significance import TOO_FEW, two_proportion


def test_sixty_of_a_hundred_against_forty_of_a_hundred() -> None:
    # Pooled p = 0.5; SE = sqrt(0.25 * 0.02) = sqrt(0.005); z = 0.2 / sqrt(0.005) = 2 sqrt 2.
    # The 2x2 table [[60, 40], [40, 60]] has Pearson chi-square 4 * 10² / 50 = 8 = z², and the
    # two-sided p-value is erfc(2) = 0.0046777349810472658.
    test = two_proportion(60, 100, 40, 100)
    assert test.z == pytest.approx(2 * math.sqrt(2))
    assert test.z**2 == pytest.approx(8.0)
    assert test.p_value == pytest.approx(0.0046777349810472658, rel=1e-12)
    assert test.reason is None


def test_twenty_five_of_fifty_against_fifteen_of_fifty() -> None:
    # The 2x2 table [[25, 25], [15, 35]] expects [[20, 30], [20, 30]]: Pearson chi-square
    # 2 * (5²/20 + 5²/30) = 25/6, so z = sqrt(25/6) = 2.0412 and p = erfc(sqrt(25/12)) = 0.0412,
    # just under the normal table's two-sided 5 % point (z = 1.96).
    test = two_proportion(25, 50, 15, 50)
    assert test.z is not None and test.z**2 == pytest.approx(25 / 6)
    assert test.p_value == pytest.approx(math.erfc(math.sqrt(25 / 12)))
    assert test.p_value == pytest.approx(0.0412, abs=1e-4)
    assert math.erfc(1.959963984540054 / math.sqrt(2)) == pytest.approx(0.05)


def test_equal_rates_are_no_different() -> None:
    test = two_proportion(45, 100, 45, 100)
    assert (test.z, test.p_value) == (0.0, 1.0)


def test_the_test_is_symmetric() -> None:
    a, b = two_proportion(30, 120, 18, 110), two_proportion(18, 110, 30, 120)
    assert a.z == pytest.approx(-(b.z or 0)) and a.p_value == pytest.approx(b.p_value)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [(6, 40, 2, 40), (0, 1000, 0, 1000), (1000, 1000, 999, 1000), (3, 4, 1, 4)],
)
def test_too_few_expected_successes_or_failures_give_no_p_value(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    test = two_proportion(x1, n1, x2, n2)
    assert (test.z, test.p_value, test.reason) == (None, None, TOO_FEW)


def test_no_trials_gives_no_p_value() -> None:
    assert two_proportion(0, 0, 5, 10).p_value is None


def figures(version: str | None, delivered: int, opens: int, clicks: int) -> dict[str, object]:
    """One row of the per-version figures (the summary's columns), all recipients delivered."""
    zero = {
        "total": delivered, "sent": delivered, "dropped": 0, "delivered": delivered, "failed": 0,
        "bounces_unique": 0, "hard_bounces_unique": 0, "soft_bounces_unique": 0,
        "opens": opens, "opens_human": opens, "opens_machine": 0, "opens_unique": opens,
        "opens_unique_human": opens, "opens_unique_machine": 0, "clicks": clicks,
        "clicks_human": 0, "clicks_machine": 0, "clicks_unique": clicks,
        "clicks_unique_human": 0, "clicks_unique_machine": 0, "clicks_unique_human_opened": 0,
        "clicks_unique_opened": clicks, "unsubscribes_unique": 0, "spam_reports_unique": 0,
        "churn": 0, "conversions_unique": 0, "conversions": 0,
    }  # fmt: skip
    return {"ab_version": version, **zero}


def test_each_version_is_tested_against_the_best_one() -> None:
    body = report(
        [figures("A", 100, 60, 20), figures("B", 100, 40, 20), figures(None, 3, 1, 0)], []
    )
    a, b = body["versions"]
    assert a["tests"]["openRateUnique"] == {
        "best": "A",
        "z": None,
        "pValue": None,
        "reason": "the best version",
    }
    opens = b["tests"]["openRateUnique"]
    assert opens["best"] == "A" and opens["z"] == pytest.approx(-2 * math.sqrt(2))
    assert opens["pValue"] == pytest.approx(0.0046777349810472658)
    # a tie: the first version is the best one, and the other is no different (p = 1)
    assert b["tests"]["clickRateUnique"]["pValue"] == pytest.approx(1.0)
    # no human clicks anywhere: too few to test
    assert b["testsHuman"]["clickRateUnique"]["reason"] == TOO_FEW
    assert a["rates"]["openRateUnique"] == 0.6 and b["ratesHuman"]["openRateUnique"] == 0.4
    assert body["unversioned"]["total"] == 3 and "tests" not in body["unversioned"]
    assert "not corrected for multiple comparisons" in body["method"]
