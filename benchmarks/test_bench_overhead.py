"""Honesty of the harness: its median equals a bare framework loop's within 2%, per backend.

The same call (`forward_device` on a staged input, then the framework's own device sync) is timed
by a plain `for` loop with perf_counter_ns and by `bench.perf.latency.run_rounds` (the scheduler,
before/after hooks, peak-memory reads, shuffled rounds). The two alternate in blocks so machine
drift hits both alike. Small input, narrow net: short calls make any harness overhead visible.

    .venv/bin/python -m pytest benchmarks/test_bench_overhead.py --benchmark-only -s
    .venv/bin/python benchmarks/test_bench_overhead.py      # prints the comparison table
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if __name__ == "__main__":  # run as a script from anywhere: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backends
from bench.core.contracts import Backend, RunOptions
from bench.model.init import random_params
from bench.model.spec import build_spec
from bench.perf.latency import (
    NS_PER_MS,
    BackendCell,
    BackendPool,
    CellKey,
    TimingPolicy,
    WarmupPolicy,
    run_rounds,
    synthetic_batch,
)

VARIANT, WIDTH_DIVISOR, HEIGHT, WIDTH = "fcn32s", 8, 64, 64
BLOCKS, CALLS_PER_BLOCK, WARMUP_CALLS = 10, 20, 5
TOLERANCE = 0.02


def framework_sync(backend: Backend) -> Callable[[], None]:
    """The framework's own device barrier, called directly (not through the backend)."""
    if backend.device != "cuda":
        return lambda: None  # CPU kernels have finished when the call returns
    if backend.name == "torch":
        import torch

        return torch.cuda.synchronize
    import tensorflow as tf

    return tf.test.experimental.sync_devices


def build(name: str, device: str = "auto") -> Backend:
    spec = build_spec(VARIANT, width_divisor=WIDTH_DIVISOR)
    backend = backends.create_backend(name, spec, RunOptions(device=device, threads=1))
    backend.load_params(random_params(spec, seed=0))
    return backend


def compare(backend: Backend) -> dict[str, Any]:
    """Alternate bare-loop and harness blocks; return both medians (ms) and their ratio."""
    images = synthetic_batch(HEIGHT, WIDTH, 1, seed=0)
    batch = backend.to_device(images)
    sync = framework_sync(backend)
    for _ in range(WARMUP_CALLS):
        backend.forward_device(batch)
    sync()

    cell = BackendCell(CellKey(VARIANT, backend.name, "model", HEIGHT, WIDTH),
                       BackendPool(lambda variant, name: backend), images, "fp32")
    # No warm-up (the backend is warm), exactly CALLS_PER_BLOCK timed calls, no minimum time.
    policy = TimingPolicy(WarmupPolicy(0, 0, 2, 0.05), min_iters=CALLS_PER_BLOCK, min_time_s=0)
    bare_ns: list[int] = []
    harness_ns: list[int] = []

    def bare_block() -> None:
        for _ in range(CALLS_PER_BLOCK):
            start = time.perf_counter_ns()
            scores = backend.forward_device(batch)
            sync()
            bare_ns.append(time.perf_counter_ns() - start)
            del scores

    def harness_block() -> None:
        (result,) = run_rounds([cell], lambda c: policy)
        assert result.error is None, result.error
        harness_ns.extend(result.samples_ns)

    for block in range(BLOCKS):  # ABBA order: neither side always runs first
        for run_block in ((bare_block, harness_block) if block % 2 == 0
                          else (harness_block, bare_block)):
            run_block()
    bare = statistics.median(bare_ns) / NS_PER_MS
    harness = statistics.median(harness_ns) / NS_PER_MS
    return {"backend": backend.name, "device": backend.device, "variant": VARIANT,
            "width_divisor": WIDTH_DIVISOR, "size": f"{HEIGHT}x{WIDTH}",
            "calls_each": len(bare_ns), "bare_median_ms": bare, "harness_median_ms": harness,
            "ratio": harness / bare}


@pytest.mark.parametrize("name", backends.available_backends())
def test_harness_median_matches_a_bare_loop(benchmark, name):
    backend = build(name)
    outcome = compare(backend)
    benchmark.group = "harness overhead"
    benchmark.extra_info.update(outcome)
    # Store the bare call in pytest-benchmark too: a third, independent timer for the record.
    batch = backend.to_device(synthetic_batch(HEIGHT, WIDTH, 1, seed=0))
    sync = framework_sync(backend)
    benchmark.pedantic(lambda: (backend.forward_device(batch), sync()), rounds=CALLS_PER_BLOCK,
                       warmup_rounds=1, iterations=1)
    benchmark.extra_info["pytest_benchmark_median_ms"] = benchmark.stats.stats.median * 1e3
    print(f"\n{name}: bare {outcome['bare_median_ms']:.3f} ms, harness "
          f"{outcome['harness_median_ms']:.3f} ms, ratio {outcome['ratio']:.4f}")
    assert abs(outcome["ratio"] - 1) <= TOLERANCE, outcome


def main() -> None:
    from tabulate import tabulate

    rows = [compare(build(name)) for name in backends.available_backends()]
    print(tabulate([[r["backend"], r["device"], f"{r['variant']}/{r['width_divisor']} "
                     f"{r['size']}", r["calls_each"], f"{r['bare_median_ms']:.3f}",
                     f"{r['harness_median_ms']:.3f}", f"{r['ratio']:.4f}"] for r in rows],
                   headers=["backend", "device", "net / size", "calls each", "bare p50 ms",
                            "harness p50 ms", "harness / bare"]))


if __name__ == "__main__":
    main()
