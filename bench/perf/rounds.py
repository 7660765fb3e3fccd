"""The round scheduler: every cell set up, called once, then warmed up and timed in interleaved
rounds shuffled with a seed, each call between two clock reads (docs/latency.md)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.core.errors import describe_error
from bench.perf.cells import CellResult, TimedCall
from bench.perf.policy import TimingPolicy, policy_for
from bench.perf.progress import Estimator


def time_call(cell: TimedCall, clock: Callable[[], int] = time.perf_counter_ns) -> int:
    """One timed call in ns: untimed `before`, then exactly `call` between two clock reads."""
    cell.before()
    start = clock()
    cell.call()
    elapsed = clock() - start
    cell.after()
    return elapsed


Progress = Callable[[float, float, str], None]  # (seconds done, seconds left (estimate), what)


def run_rounds(cells: Sequence[TimedCall], policy_of: Callable[[TimedCall], TimingPolicy], *,
               seed: int = 0, clock: Callable[[], int] = time.perf_counter_ns,
               progress: Progress | None = None, guess_policy: TimingPolicy | None = None,
               guess_call_s: float = 1.0, label: Callable[[TimedCall], str] = str
               ) -> list[CellResult]:
    """Measure all cells together: setup, first calls, interleaved warm-up and timed rounds.

    `policy_of(cell)` is asked after the cell's setup (its device is known only then). A cell that
    raises is marked failed (its error kept) and leaves the rotation; the others go on. Each
    round visits every unfinished cell once, in an order shuffled with `seed`. `progress` is told,
    before every setup and after every call, the time spent and an estimate of the time left
    (bench.perf.progress: `guess_policy` and `guess_call_s` until the cells have been seen).
    """
    results = [CellResult() for _ in cells]
    order_rng = random.Random(seed)
    estimator = Estimator(results, guess_policy or policy_for("cpu"), guess_call_s)
    started = clock()

    def report(text: str) -> None:
        if progress:
            progress((clock() - started) / 1e9, estimator.remaining_s(), text)

    def attempt(index: int, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as error:  # cell-level failure: OOM, unsupported precision, compile...
            results[index].error = describe_error(error)
            return None

    for i, cell in enumerate(cells):
        report(f"setting up {label(cell)} ({i + 1}/{len(cells)})")
        before = clock()
        attempt(i, cell.setup)
        estimator.setup_done(i, (clock() - before) / 1e9)
    active = [i for i in range(len(cells)) if results[i].error is None]
    policies = {i: policy_of(cells[i]) for i in active}
    estimator.policies.update(policies)
    for n, i in enumerate(active):
        report(f"first call {label(cells[i])} ({n + 1}/{len(active)})")
        results[i].first_call_ns = attempt(i, lambda i=i: time_call(cells[i], clock))
        estimator.first_call_done(i)
    active = [i for i in active if results[i].error is None]

    for phase in ("warm-up", "timed"):
        pending = [i for i in active if not _phase_done(phase, results[i], policies[i])]
        round_index = 0
        while pending:
            round_index += 1
            order = pending[:]
            order_rng.shuffle(order)
            for i in order:
                elapsed = attempt(i, lambda i=i: time_call(cells[i], clock))
                if elapsed is not None:
                    (results[i].warmup_ns if phase == "warm-up" else results[i].samples_ns
                     ).append(elapsed)
                report(f"{phase} round {round_index}: {len(pending)} "
                       f"cell{'s' if len(pending) != 1 else ''}")
            pending = [i for i in pending
                       if results[i].error is None and not _phase_done(phase, results[i],
                                                                       policies[i])]
        active = [i for i in active if results[i].error is None]
    for i in active:
        warmup = policies[i].warmup
        results[i].warmup_stable = (warmup.is_stable(results[i].warmup_ns)
                                    if warmup.max_samples else None)
    report("done")
    return results


def _phase_done(phase: str, result: CellResult, policy: TimingPolicy) -> bool:
    if phase == "warm-up":
        return policy.warmup.is_done(result.warmup_ns)
    return policy.is_satisfied(result.samples_ns)
