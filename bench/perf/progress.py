"""An estimate of the time a latency run still needs, for the progress bar.

The run's length is not known in advance: warm-up stops when times settle and the timed phase
needs both a count and a duration (bench.perf.latency.TimingPolicy). So the estimate is remade after
every step from what has been seen: each cell's latest call time (or, before its first call,
the median of the other cells', or the caller's guess), the setup time of the cells set up so far,
and the calls its policy still requires (the minimums: a cell that does not settle takes longer).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from bench.perf.cells import CellResult
from bench.perf.policy import TimingPolicy


class Estimator:
    """Remaining seconds of a run_rounds() call, re-estimated from the results so far."""

    def __init__(self, results: Sequence[CellResult], guess_policy: TimingPolicy,
                 guess_call_s: float):
        self.results = results
        self.guess_policy = guess_policy
        self.guess_call_s = guess_call_s
        self.policies: dict[int, TimingPolicy] = {}
        self._setup_s: dict[int, float] = {}
        self._first_done: set[int] = set()

    def setup_done(self, index: int, seconds: float) -> None:
        self._setup_s[index] = seconds

    def first_call_done(self, index: int) -> None:
        self._first_done.add(index)

    def _call_s(self, index: int) -> float:
        own = self._latest_s(self.results[index])
        if own is not None:
            return own
        others = [t for t in (self._latest_s(r) for r in self.results) if t is not None]
        return statistics.median(others) if others else self.guess_call_s

    @staticmethod
    def _latest_s(result: CellResult) -> float | None:
        for series in (result.samples_ns, result.warmup_ns):
            if series:
                return series[-1] / 1e9
        return result.first_call_ns / 1e9 if result.first_call_ns else None

    def remaining_s(self) -> float:
        setups = list(self._setup_s.values())
        setup_guess = statistics.mean(setups) if setups else self.guess_call_s
        total = 0.0
        for index, result in enumerate(self.results):
            if result.error is not None:
                continue
            call_s = max(self._call_s(index), 1e-9)
            if index not in self._setup_s:
                total += setup_guess
            if index not in self._first_done:
                total += call_s
            total += remaining_calls(result, self.policies.get(index, self.guess_policy),
                                     call_s) * call_s
        return total


def remaining_calls(result: CellResult, policy: TimingPolicy, call_s: float) -> int:
    """Warm-up and timed calls the policy still requires at `call_s` seconds per call."""
    warmup = policy.warmup
    warm = 0
    if warmup.max_samples and not warmup.is_done(result.warmup_ns):
        warm = max(warmup.min_samples - len(result.warmup_ns), 1)
    by_count = policy.min_iters - len(result.samples_ns)
    missing_ns = policy.min_time_s * 1e9 - sum(result.samples_ns)
    calls = missing_ns / (call_s * 1e9) if missing_ns > 0 and call_s > 0 else (
        0.0 if missing_ns <= 0 else math.inf)
    # A NaN or infinite budget (or call time) has no finite count: ceil() would raise, and an
    # estimate is not the place to fail, so it is bounded (the policy itself refuses them).
    by_time = min(math.ceil(calls), MAX_CALLS) if math.isfinite(calls) else MAX_CALLS
    return warm + max(by_count, by_time, 0)


# An upper bound on the calls an estimate counts (about 32 years of 1 s calls).
MAX_CALLS = 10**9
