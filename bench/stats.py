"""Percentiles, medians and the target checks every phase reports."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def latency_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds, and how many samples they come from."""
    return {
        "n": len(values_s),
        "p50": round(percentile(values_s, 50) * 1000, 2),
        "p90": round(percentile(values_s, 90) * 1000, 2),
        "p99": round(percentile(values_s, 99) * 1000, 2),
        "max": round(max(values_s) * 1000, 2) if values_s else math.nan,
    }


@dataclass
class Check:
    """One target: `value` against `limit` (`>=` or `<=`), met or missed."""

    phase: str
    measure: str
    value: float
    op: str
    limit: float
    unit: str = ""
    note: str = ""

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def ratio(system: Sequence[float], baseline: Sequence[float]) -> float:
    """The headline figure: median of the system's runs over median of the baseline's."""
    base = median(baseline)
    return median(system) / base if base else math.nan
