"""Statistics of raw latency samples: percentiles, spread, and the uncertainty of the headline
numbers (bootstrap interval of the median, by the shared routine of bench.core.bootstrap;
distribution-free bound on p90). Numpy; scipy for one binomial quantile. Split
out of bench/perf/latency.py, which uses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.core.bootstrap import bootstrap_interval


def summarize(samples_ms: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p90/p99 (linear interpolation), mean, sample std (ddof 1; 0 for one sample), min, max."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        return {key: None for key in ("n", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms",
                                      "min_ms", "max_ms")}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"n": int(x.size), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "mean_ms": float(x.mean()), "std_ms": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "min_ms": float(x.min()), "max_ms": float(x.max())}


def coefficient_of_variation(samples: Sequence[float]) -> float:
    """Sample std / mean (inf for fewer than two samples or a zero mean)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 2 or x.mean() <= 0:
        return math.inf
    return float(x.std(ddof=1) / x.mean())


def bootstrap_median_ci(samples: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
                        seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the median (seeded: a record reproduces); None if n < 2."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 2:
        return None
    return bootstrap_interval([x], lambda resampled: np.median(resampled, axis=-1),
                              confidence=confidence, resamples=resamples, seed=seed)


def percentile_upper_bound(samples: Sequence[float], percentile: float = 0.90,
                           confidence: float = 0.99) -> tuple[float, int] | None:
    """Distribution-free upper bound of a latency percentile, as MLPerf's early-stopping estimate.

    The k-th smallest of n samples is >= the true q-quantile with probability
    P(Binomial(n, q) <= k - 1); take the smallest k reaching `confidence`. Returns (bound, k),
    or None when even the maximum is not enough (n < log(1 - confidence) / log(q), 44 for p90/99%).
    """
    # scipy is a core dependency, imported here only to keep the CLI's start fast.
    from scipy.stats import binom

    x = np.sort(np.asarray(samples, dtype=np.float64))
    if x.size == 0:
        return None
    rank = int(binom.ppf(confidence, x.size, percentile)) + 1  # 1-based order statistic
    # ppf works in floating point; step up if it landed one short of the confidence.
    while rank <= x.size and binom.cdf(rank - 1, x.size, percentile) < confidence:
        rank += 1
    if rank > x.size:
        return None
    return float(x[rank - 1]), rank


def confidence_statement(samples_ms: Sequence[float]) -> dict[str, Any]:
    """The uncertainty of a cell's headline numbers, stated with its method."""
    ci = bootstrap_median_ci(samples_ms)
    bound = percentile_upper_bound(samples_ms)
    needed = math.ceil(math.log(1 - 0.99) / math.log(0.90))
    return {
        "median_ci95_ms": list(ci) if ci else None,
        "median_ci_method": "percentile bootstrap, 2000 resamples, seed 0",
        "p90_upper_bound_ms": bound[0] if bound else None,
        "p90_upper_bound_confidence": 0.99,
        "p90_upper_bound_method": (
            f"order statistic k={bound[1]} of n={len(samples_ms)} (distribution-free, as MLPerf "
            "early stopping)" if bound else
            f"not available: needs at least {needed} samples, have {len(samples_ms)}"),
    }
