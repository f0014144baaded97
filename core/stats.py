"""The noise around every figure a report prints: 95% intervals for a rate, for a mean, and for a difference.

A test split of a few hundred items, cut by language into slices of 4 to 50, cannot tell 38% from 50%: each
figure is printed with its interval so that a reader does not take noise for a gain (see the design notes'
pitfall 8). Rates of right/wrong answers get the Wilson score interval (scipy's), which stays inside [0, 1] and
behaves at 0 and 100%; means of graded scores (chrF, a partial-match score) and differences between two models
on the same items get a seeded percentile bootstrap. The difference is *paired*: both models answered the same
items, so resampling items keeps the pairing and the interval is far narrower than two independent ones suggest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
SEED = 0


def is_binary(values: Sequence[float]) -> bool:
    """Whether every value is 0 or 1: a rate of hits, for which the Wilson interval is the right one."""
    return all(v in (0, 1) for v in values)


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n`` (scipy's ``binomtest(...).proportion_ci``)."""
    from scipy.stats import binomtest

    if n <= 0:
        return 0.0, 1.0
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _resampled_means(values: np.ndarray, seed: int, resamples: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    return values[picks].mean(axis=1)


def bootstrap_mean(values: Sequence[float], seed: int = SEED, resamples: int = BOOTSTRAP_RESAMPLES,
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (items resampled with replacement, seeded)."""
    if not values:
        return 0.0, 1.0
    means = _resampled_means(np.asarray(values, dtype=float), seed, resamples)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: Sequence[float]) -> dict[str, Any]:
    """``{value, ci, n}`` of the mean of per-item scores: Wilson for hits and misses, else the bootstrap."""
    n = len(values)
    if n == 0:
        return {"value": None, "ci": None, "n": 0}
    value = float(sum(values)) / n
    ci = wilson(round(sum(values)), n) if is_binary(values) else bootstrap_mean(values)
    return {"value": value, "ci": [ci[0], ci[1]], "n": n}


def paired_difference(model: Sequence[float], other: Sequence[float], seed: int = SEED,
                      resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``{delta, ci, n}``: mean of ``model - other`` over the same items, with a seeded paired-bootstrap interval."""
    if len(model) != len(other):
        raise ValueError(f"paired scores need the same items: {len(model)} vs {len(other)}")
    if not model:
        return {"delta": None, "ci": None, "n": 0}
    diffs = np.asarray(model, dtype=float) - np.asarray(other, dtype=float)
    means = _resampled_means(diffs, seed, resamples)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"delta": float(diffs.mean()), "ci": [float(low), float(high)], "n": len(model)}


def items_for_margin(rate: float, margin: float = 0.10, confidence: float = CONFIDENCE) -> int:
    """The fewest items whose Wilson interval around ``rate`` is at most ± ``margin`` wide: how large a test slice
    must be before a difference of ``margin`` can show. Bisection over n (the width falls as n grows)."""
    rate = min(max(rate, 0.0), 1.0)

    def half_width(n: int) -> float:
        low, high = wilson(round(rate * n), n, confidence)
        return (high - low) / 2

    low, high = 1, 8
    while half_width(high) > margin:
        low, high = high, high * 2
    while low < high:
        mid = (low + high) // 2
        if half_width(mid) <= margin:
            high = mid
        else:
            low = mid + 1
    return high


def half_width(interval: Sequence[float] | None) -> float:
    """Half the width of an interval (``inf`` for none): how far a figure may be off."""
    return math.inf if not interval else (interval[1] - interval[0]) / 2
