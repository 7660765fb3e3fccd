"""Forward pass of every variant in every installed backend, device-synchronised, for CI tracking.

    .venv/bin/python -m pytest benchmarks/test_bench_forward.py --benchmark-only
Each benchmark times `forward_device` + `synchronize` on a staged input (the latency command's
'model' mode); `extra_info` names backend, variant, size, precision, device and the GFLOPs, so
`--benchmark-save` / `--benchmark-compare` track the same configuration across commits.
"""

from __future__ import annotations

import pytest

import backends
from bench.model.spec import VARIANTS

INSTALLED = backends.available_backends()
CASES = [(variant, name) for variant in VARIANTS for name in INSTALLED]  # variant-major


@pytest.mark.skipif(not INSTALLED, reason="no backend installed")
@pytest.mark.parametrize(("variant", "backend_name"), CASES,
                         ids=[f"{variant}-{name}" for variant, name in CASES])
def test_forward(benchmark, make_backend, bench_settings, synchronised_forward, describe, variant,
                 backend_name):
    backend = make_backend(backend_name, variant)
    forward = synchronised_forward(backend)
    rounds, warmup_rounds = bench_settings.rounds(backend.device)
    benchmark.group = f"forward {bench_settings.size} {backend.device} {bench_settings.precision}"
    benchmark.extra_info.update(describe(backend, variant))
    # Warm-up rounds absorb the first call (tracing, autotuning); one call per round.
    benchmark.pedantic(forward, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
    benchmark.extra_info["gflops_per_s"] = (benchmark.extra_info["gflops"]
                                            / benchmark.stats.stats.median)
