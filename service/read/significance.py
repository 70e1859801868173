"""The two-proportion z-test behind the A/B report: is one version's rate different from another's?

Null hypothesis: both versions share one true rate p (the difference seen is chance). Under it,
with the pooled estimate p = (x1 + x2) / (n1 + n2),

    z = (x1/n1 - x2/n2) / sqrt(p (1 - p) (1/n1 + 1/n2))

is close to standard normal, and the two-sided p-value is P(|Z| >= |z|) = erfc(|z| / sqrt(2)).
(The same test as Pearson's chi-square on the 2x2 table without continuity correction: z² is
the chi-square statistic.) The normal approximation needs enough of both outcomes, so the test
is only made when each version expects at least 5 successes and 5 failures under p; otherwise
there is no p-value, and the reason says why. Each p-value is for one comparison on its own: no
correction for comparing several versions or several rates is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_EXPECTED = 5
TOO_FEW = (
    f"too few recipients: each version needs at least {MIN_EXPECTED} expected successes and "
    f"{MIN_EXPECTED} expected failures under the pooled rate"
)


@dataclass(frozen=True, slots=True)
class Comparison:
    z: float | None
    p_value: float | None
    reason: str | None = None  # why there is no p-value


def two_proportion(x1: int, n1: int, x2: int, n2: int) -> Comparison:
    """Compare x1 successes in n1 trials with x2 in n2: pooled z and two-sided p-value."""
    if n1 <= 0 or n2 <= 0:
        return Comparison(None, None, "no trials in one of the versions")
    pooled = (x1 + x2) / (n1 + n2)
    expected = (n1 * pooled, n1 * (1 - pooled), n2 * pooled, n2 * (1 - pooled))
    if min(expected) < MIN_EXPECTED:
        return Comparison(None, None, TOO_FEW)
    error = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (x1 / n1 - x2 / n2) / error
    return Comparison(z, math.erfc(abs(z) / math.sqrt(2)))
