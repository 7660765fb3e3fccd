"""One seeded percentile bootstrap, resampled in bounded-memory chunks.

Both the latency record's median interval (bench/perf/stats.py) and the noise-aware speed gate of
the regression table (bench/ci/speed_stats.py) ask the same question, how sure is a statistic of
raw samples, so they share this routine: the same seed gives the same interval, and the index
arrays never exceed MAX_RESAMPLED_VALUES numbers (~16 MB of int64) whatever the sample count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Bound on one chunk's (resamples, n) index array: 2 M int64 indices = 16 MB.
MAX_RESAMPLED_VALUES = 2_000_000

# statistic(resampled_1, ..., resampled_k) -> one value per resample: each argument is a
# (count, n_i) array of resampled values, reduced along its last axis.
Statistic = Callable[..., np.ndarray]


def bootstrap_statistics(samples: Sequence[np.ndarray], statistic: Statistic, *,
                         resamples: int, seed: int) -> np.ndarray:
    """`resamples` values of `statistic`, each on every sample set resampled with replacement.

    The sets are resampled independently, in argument order within each chunk, from one
    generator seeded with `seed`; a chunk holds as many resamples as fit MAX_RESAMPLED_VALUES
    indices of the largest set, so the draws (and the numbers) depend only on the seed and sizes.
    """
    arrays = [np.asarray(values) for values in samples]
    if not arrays or any(len(values) == 0 for values in arrays):
        raise ValueError("bootstrap needs samples in every set")
    rng = np.random.default_rng(seed)
    chunk = max(1, MAX_RESAMPLED_VALUES // max(len(values) for values in arrays))
    results = np.empty(resamples)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        resampled = [values[rng.integers(0, len(values), (count, len(values)))]
                     for values in arrays]
        results[start:start + count] = statistic(*resampled)
    return results


def bootstrap_interval(samples: Sequence[np.ndarray], statistic: Statistic, *,
                       confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap interval (two-sided, `confidence` between 0 and 1) of `statistic`."""
    values = bootstrap_statistics(samples, statistic, resamples=resamples, seed=seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)
