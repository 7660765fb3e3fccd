"""The device's measured ceilings and where each latency row stands against them.

A latency alone does not say whether a model is fast: 14.7 ms on an H100 is half of what its fp32
units can do, 2.6 ms in bf16 a quarter. So each run measures, once per backend and precision, the
two ceilings of a roofline (docs/latency.md): the throughput of a large matrix product in the
precision in use (SGEMM on a CPU), and the bandwidth of a device-to-device copy. Every row then
gets its achieved TFLOP/s, the percentage of that measured peak, and the compute floor: the time
the forward's FLOPs (from the spec) would take at the peak. Backends supply the two operations;
the timing and arithmetic live here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

# Sized so the product is compute-bound but quick: 17 GFLOP on a CPU (~0.1 s on two cores),
# 1.1 TFLOP on a GPU (~1.5 ms in bf16 on an H100); copies well beyond any cache.
MATMUL_N = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = {"cpu": 64 * 2**20, "cuda": 512 * 2**20}
REPEATS = 5


def best_seconds(operation: Callable[[], Any], synchronize: Callable[[Any], None],
                 repeats: int = REPEATS, clock: Callable[[], int] = time.perf_counter_ns) -> float:
    """The fastest of `repeats` synchronised calls after one untimed call (a ceiling, not a
    typical time: the best run is the one least disturbed by anything else)."""
    synchronize(operation())
    best = None
    for _ in range(repeats):
        start = clock()
        synchronize(operation())
        elapsed = clock() - start
        best = elapsed if best is None else min(best, elapsed)
    return max(best or 1, 1) / 1e9


def measure_ceilings(device: str, dtype: str, matmul: Callable[[], Any], copy: Callable[[], Any],
                     synchronize: Callable[[Any], None], *, matmul_n: int, copy_bytes: int,
                     repeats: int = REPEATS,
                     clock: Callable[[], int] = time.perf_counter_ns) -> dict[str, Any]:
    """Time an n x n x n product (2 n^3 FLOPs) and a copy of `copy_bytes` (read + written)."""
    matmul_s = best_seconds(matmul, synchronize, repeats, clock)
    copy_s = best_seconds(copy, synchronize, repeats, clock)
    return {
        "device": device, "dtype": dtype,
        "matmul_tflops": 2 * matmul_n**3 / matmul_s / 1e12,
        "matmul_method": f"{matmul_n}x{matmul_n} @ {matmul_n}x{matmul_n} in {dtype}, best of "
                         f"{repeats} synchronised calls",
        "copy_gb_per_s": 2 * copy_bytes / copy_s / 1e9,
        "copy_method": f"device-to-device copy of {copy_bytes / 2**20:.0f} MiB (read + write "
                       f"counted), best of {repeats}",
    }


def roofline_fields(gflops: float | None, p50_ms: float | None,
                    ceilings: Mapping[str, Any] | None) -> dict[str, float | None]:
    """achieved TFLOP/s at the median, the measured peak, % of it, and the compute floor in ms."""
    peak = (ceilings or {}).get("matmul_tflops")
    achieved = gflops / p50_ms if gflops and p50_ms else None  # GFLOP/ms = TFLOP/s
    return {
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "percent_of_peak": 100 * achieved / peak if achieved and peak else None,
        "compute_floor_ms": gflops / peak if gflops and peak else None,
    }
