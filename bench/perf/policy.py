"""When to stop warming up and when to stop timing: the per-device timing policies
(docs/latency.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.core.errors import UsageError
from bench.perf.stats import coefficient_of_variation


@dataclass(frozen=True)
class WarmupPolicy:
    """Warm up until the last `window` times vary by less than `cv_threshold` (std/mean)."""

    min_samples: int
    max_samples: int
    window: int
    cv_threshold: float

    def is_stable(self, samples: Sequence[float]) -> bool:
        return (len(samples) >= self.window
                and coefficient_of_variation(samples[-self.window:]) < self.cv_threshold)

    def is_done(self, samples: Sequence[float]) -> bool:
        if len(samples) >= self.max_samples:
            return True
        return len(samples) >= self.min_samples and self.is_stable(samples)


@dataclass(frozen=True)
class TimingPolicy:
    """Warm-up rule plus the timed phase's minimums: both `min_iters` and `min_time_s` must hold."""

    warmup: WarmupPolicy
    min_iters: int
    min_time_s: float

    def __post_init__(self) -> None:
        # A NaN or infinite time budget would never be satisfied: the run would hang.
        if not (math.isfinite(self.min_time_s) and self.min_time_s >= 0):
            raise UsageError(f"minimum timed duration {self.min_time_s!r} s must be a finite "
                             f"number >= 0")
        if self.min_iters < 0:
            raise UsageError(f"minimum timed calls {self.min_iters} must be >= 0")

    def is_satisfied(self, samples_ns: Sequence[int]) -> bool:
        return len(samples_ns) >= self.min_iters and sum(samples_ns) >= self.min_time_s * 1e9

    def describe(self) -> str:
        w = self.warmup
        warm = (f"warm-up {w.min_samples}..{w.max_samples} calls until CV(last {w.window}) < "
                f"{w.cv_threshold:.0%}" if w.max_samples else "no warm-up")
        return f"{warm}; timed >= {self.min_iters} calls and >= {self.min_time_s:g} s"


# Sized so that `python cli.py latency` (4 variants x 2 backends at 500x500, ~2 s per VGG16
# forward on a 2-core CPU) finishes in a few minutes, while a GPU (~10 ms per forward) gets
# MLPerf-like statistics: 100+ calls and 10 s per cell.
DEFAULT_POLICIES = {
    "cpu": TimingPolicy(WarmupPolicy(min_samples=2, max_samples=4, window=2, cv_threshold=0.05),
                        min_iters=5, min_time_s=1.0),
    "cuda": TimingPolicy(WarmupPolicy(min_samples=10, max_samples=200, window=10,
                                      cv_threshold=0.05), min_iters=100, min_time_s=10.0),
}


def policy_for(device: str, *, warmup: int | None = None, iters: int | None = None,
               min_time_s: float | None = None) -> TimingPolicy:
    """The device's default policy with the user's overrides; `warmup=0` means no warm-up at all."""
    base = DEFAULT_POLICIES[device]
    w = base.warmup
    if warmup is not None:
        most = max(warmup, w.max_samples) if warmup else 0
        w = WarmupPolicy(warmup, most, window=w.window, cv_threshold=w.cv_threshold)
    return TimingPolicy(w, base.min_iters if iters is None else iters,
                        base.min_time_s if min_time_s is None else min_time_s)
