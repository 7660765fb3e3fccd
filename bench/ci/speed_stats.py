"""Noise-aware speed statistics: which metrics derive from raw `samples_ms`, and the seeded
bootstrap interval of a change in one of them (the shared routine of bench.core.bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.ci.record_rows import Row, is_number
from bench.core.bootstrap import bootstrap_interval
from bench.core.errors import UsageError

# Fewer raw samples than this on either side cannot support an interval: such a speed change is
# reported inconclusive rather than judged.
MIN_SAMPLES = 5
BOOTSTRAP_RESAMPLES = 2000


def _percentile(q: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.percentile(x, q, axis=-1)


# Metrics that are a statistic of `samples_ms`, so a bootstrap can say how sure a change is.
SAMPLE_STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "p50_ms": lambda x: np.median(x, axis=-1),
    "median_ms": lambda x: np.median(x, axis=-1),
    "mean_ms": lambda x: np.mean(x, axis=-1),
    "p90_ms": _percentile(90),
    "p95_ms": _percentile(95),
    "p99_ms": _percentile(99),
}


def sample_statistic(name: str, row: Row) -> Callable[[np.ndarray], np.ndarray] | None:
    """How metric `name` of `row` derives from its samples_ms (None if it does not).

    images_per_s is batch / mean call time, as bench/perf/latency.py computes it.
    """
    if name == "images_per_s":
        batch = float(dict(row.identity).get("batch", "1"))
        return lambda x: batch * 1000.0 / np.mean(x, axis=-1)
    return SAMPLE_STATISTICS.get(name)


def check_confidence(confidence: float) -> None:
    """A confidence level is a finite number strictly between 0 and 1 (NaN crashed quantile)."""
    if not (is_number(confidence) and 0.0 < confidence < 1.0):
        raise UsageError(f"confidence {confidence!r} must be a number strictly between 0 and 1")


def bootstrap_delta_interval(baseline: np.ndarray, current: np.ndarray,
                             statistic: Callable[[np.ndarray], np.ndarray], *,
                             confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of statistic(current) - statistic(baseline).

    Each side is resampled with replacement independently (seeded, so the verdict is
    reproducible, baseline drawn before current in each chunk); bench.core.bootstrap bounds the
    memory whatever the sample count.
    """
    check_confidence(confidence)
    if len(baseline) == 0 or len(current) == 0:
        raise ValueError("bootstrap needs samples on both sides")
    return bootstrap_interval([baseline, current],
                              lambda base, cur: statistic(cur) - statistic(base),
                              confidence=confidence, resamples=resamples, seed=seed)
