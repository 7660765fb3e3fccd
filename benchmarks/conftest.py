"""Fixtures for the pytest-benchmark suite: backends with random weights, synchronised callables.

Not part of the default test run (testpaths = tests). Run, save and compare across commits:
    .venv/bin/python -m pytest benchmarks/ --benchmark-only --benchmark-save=NAME
    .venv/bin/python -m pytest benchmarks/ --benchmark-only --benchmark-compare \
        --benchmark-compare-fail=median:10%
On a GPU: add --fcn-device cuda --fcn-size 500x500 (more rounds are used there automatically).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pytest

import backends
from bench.core.contracts import PRECISIONS, Backend, RunOptions
from bench.model.init import random_params
from bench.model.spec import build_spec
from bench.perf.latency import host_info, synthetic_batch


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fcn-bench", "fcn-bench forward benchmarks")
    group.addoption("--fcn-size", default="32x32", help="input HxW (default 32x32: small, "
                    "yet the full VGG16 with its pad-100 geometry)")
    group.addoption("--fcn-device", default="auto", choices=("auto", "cpu", "cuda"))
    group.addoption("--fcn-precision", default="fp32", choices=PRECISIONS)
    group.addoption("--fcn-threads", type=int, default=None, help="intra-op CPU threads")
    group.addoption("--fcn-width-divisor", type=int, default=1,
                    help="narrow test network (channels // N); 1 = the real FCN")


def pytest_benchmark_update_machine_info(config: pytest.Config,
                                         machine_info: dict[str, Any]) -> None:
    """Stored runs say which frameworks and host produced them (compared across commits)."""
    versions = {}
    for package in ("torch", "tensorflow", "tensorflow-cpu", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    machine_info["fcn_bench"] = {"packages": versions, "host": host_info()}


@dataclass(frozen=True)
class BenchSettings:
    height: int
    width: int
    device: str
    precision: str
    threads: int | None
    width_divisor: int

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}"

    def rounds(self, device: str) -> tuple[int, int]:
        """(timed rounds, warm-up rounds): a GPU call is cheap, a CPU VGG16 call is not."""
        return (50, 10) if device == "cuda" else (5, 1)


@pytest.fixture(scope="session")
def bench_settings(request: pytest.FixtureRequest) -> BenchSettings:
    from bench.cli.options import parse_size

    height, width = parse_size(request.config.getoption("--fcn-size"))
    return BenchSettings(height, width, request.config.getoption("--fcn-device"),
                         request.config.getoption("--fcn-precision"),
                         request.config.getoption("--fcn-threads"),
                         request.config.getoption("--fcn-width-divisor"))


@pytest.fixture(scope="session")
def _params_cache() -> dict[tuple[str, int], dict]:
    return {}


@pytest.fixture
def make_backend(bench_settings: BenchSettings, _params_cache: dict
                 ) -> Iterator[Callable[[str, str], Backend]]:
    """(backend name, variant) -> a backend with deterministic random weights (seed 0).

    Keeps only the last variant's weights (tests run variant by variant), and drops the backends
    after the test, so at most two full-size models are alive.
    """
    made: list[Backend] = []

    def make(name: str, variant: str) -> Backend:
        spec = build_spec(variant, width_divisor=bench_settings.width_divisor)
        options = RunOptions(device=bench_settings.device, precision=bench_settings.precision,
                             threads=bench_settings.threads)
        backend = backends.create_backend(name, spec, options)
        key = (variant, bench_settings.width_divisor)
        if key not in _params_cache:
            _params_cache.clear()
            _params_cache[key] = random_params(spec, seed=0)
        backend.load_params(_params_cache[key])
        made.append(backend)
        return backend

    yield make
    made.clear()


@pytest.fixture
def synchronised_forward(bench_settings: BenchSettings) -> Callable[[Backend], Callable[[], None]]:
    """backend -> a callable timing 'model' mode as the latency command does: the input staged
    once on the device, then forward_device and synchronize(scores) in every call."""
    return lambda backend: _synchronised_forward(backend, bench_settings)


@pytest.fixture
def describe(bench_settings: BenchSettings) -> Callable[[Backend, str], dict[str, Any]]:
    """(backend, variant) -> extra_info for a stored benchmark."""
    return lambda backend, variant: _describe(backend, variant, bench_settings)


def _synchronised_forward(backend: Backend, settings: BenchSettings) -> Callable[[], None]:
    batch = backend.to_device(synthetic_batch(settings.height, settings.width, 1, seed=0))
    backend.synchronize(batch)

    def forward() -> None:
        backend.synchronize(backend.forward_device(batch))

    return forward


def _describe(backend: Backend, variant: str, settings: BenchSettings) -> dict[str, Any]:
    # What was run, on what, with which framework: compared runs must match on these.
    env = backend.environment()
    return {"backend": backend.name, "variant": variant, "size": settings.size, "batch": 1,
            "precision": settings.precision, "device": backend.device,
            "width_divisor": settings.width_divisor,
            "gflops": backend.spec.flops(settings.height, settings.width) / 1e9,
            **{k: env.get(k) for k in ("framework_version", "device_name", "intra_op_threads",
                                        "compile", "cudnn_benchmark", "upsampling")}}
