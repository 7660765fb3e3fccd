"""The one chunked, seeded bootstrap (bench/core/bootstrap.py) and its two users.

The pinned intervals were computed by the two routines it replaced (bench/ci/compare.py's
bootstrap_delta_interval and bench/perf/stats.py's bootstrap_median_ci before issue 13): a
change of draw order, chunking or percentile method changes them, and with them the verdicts of
`compare` and the intervals written into latency records.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.ci.speed_stats import SAMPLE_STATISTICS, bootstrap_delta_interval
from bench.core import bootstrap
from bench.core.bootstrap import bootstrap_interval, bootstrap_statistics
from bench.perf.stats import bootstrap_median_ci


def normal(seed: int, n: int, loc: float = 100.0, scale: float = 5.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, scale, n)


# (sample seed, n, confidence, bootstrap seed, resamples) -> interval of the median. n = 30,000
# takes several chunks (66 resamples each).
MEDIAN_PINS = [
    ((1, 37, 0.95, 0, 2000), (98.62198547350314, 101.82286198093038)),
    ((2, 200, 0.9, 0, 2000), (99.14279681492218, 100.76748512314974)),
    ((3, 200, 0.99, 5, 2000), (98.88097195798318, 101.14576952606632)),
    ((4, 5, 0.95, 0, 2000), (91.79301352707677, 108.31861995695598)),
    ((5, 30_000, 0.95, 3, 300), (99.96004655739651, 100.0950968037666)),
]

# (sample seeds, sizes, metric, confidence, bootstrap seed, resamples) -> interval of the change.
DELTA_PINS = [
    (((6, 7), (40, 60), "p50_ms", 0.95, 0, 2000), (-0.34469107299184965, 0.496337375798297)),
    (((8, 9), (200, 150), "p90_ms", 0.9, 1, 2000), (0.04753263167065869, 0.7879661517651677)),
    (((10, 11), (5, 8), "mean_ms", 0.95, 2, 2000), (0.6099144098889645, 1.8788148816291113)),
    (((12, 13), (25_000, 30_000), "p50_ms", 0.95, 2, 300),
     (0.4670920888304168, 0.5085424543782823)),
]


@pytest.mark.parametrize(("case", "expected"), MEDIAN_PINS)
def test_median_interval_is_the_one_pinned_before_the_merge(case, expected):
    seed, n, confidence, bootstrap_seed, resamples = case
    interval = bootstrap_median_ci(normal(seed, n), confidence=confidence, seed=bootstrap_seed,
                                   resamples=resamples)
    assert interval == expected  # exact: same draws, same arithmetic


@pytest.mark.parametrize(("case", "expected"), DELTA_PINS)
def test_delta_interval_is_the_one_pinned_before_the_merge(case, expected):
    seeds, sizes, metric, confidence, bootstrap_seed, resamples = case
    baseline, current = normal(seeds[0], sizes[0], 10, 1), normal(seeds[1], sizes[1], 10.5, 1)
    interval = bootstrap_delta_interval(baseline, current, SAMPLE_STATISTICS[metric],
                                        confidence=confidence, seed=bootstrap_seed,
                                        resamples=resamples)
    assert interval == expected


def test_chunks_stay_within_the_memory_bound(monkeypatch):
    shapes = []

    def mean_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        shapes.append((a.shape, b.shape))
        return a.mean(axis=-1) - b.mean(axis=-1)

    monkeypatch.setattr(bootstrap, "MAX_RESAMPLED_VALUES", 1000)
    values = bootstrap_statistics([np.arange(300.0), np.arange(100.0)], mean_difference,
                                  resamples=10, seed=0)
    assert values.shape == (10,)
    # 1000 // 300 = 3 resamples per chunk (the largest set decides): 3 + 3 + 3 + 1.
    assert shapes == [((3, 300), (3, 100))] * 3 + [((1, 300), (1, 100))]


def test_same_seed_same_interval_other_seed_other_interval():
    samples = [normal(14, 50)]
    median = lambda x: np.median(x, axis=-1)  # noqa: E731
    first = bootstrap_interval(samples, median, confidence=0.95, resamples=500, seed=0)
    assert bootstrap_interval(samples, median, confidence=0.95, resamples=500, seed=0) == first
    assert bootstrap_interval(samples, median, confidence=0.95, resamples=500, seed=1) != first
    low, high = first
    assert low < np.median(samples[0]) < high


def test_an_empty_set_is_refused():
    with pytest.raises(ValueError, match="every set"):
        bootstrap_statistics([np.ones(3), np.array([])], lambda a, b: a[..., 0],
                             resamples=4, seed=0)
