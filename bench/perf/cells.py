"""Cells: one measurable configuration (variant, backend, mode, size, batch), the backend adapter
that times it through the `Backend` contract, and its raw outcome.

A precision the device cannot run is refused per cell: a mislabelled row is worse than a failed one.
"""

from __future__ import annotations

import gc
import os
import platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bench.core.contracts import Backend
from bench.core.errors import FcnBenchError

# ----------------------------------------------------------------------------------------------
# Precision per device: refuse what would silently run as something else


class UnsupportedPrecision(FcnBenchError):
    """The device cannot run the requested precision: the cell is reported as failed."""


def precision_problem(device: str, precision: str, environment: Mapping[str, Any]) -> str | None:
    """Why `precision` cannot be benchmarked on `device`, or None. A mislabelled row is worse than
    a failed one: TF32 on a CPU would silently be fp32."""
    if device == "cpu" and precision == "tf32":
        return "precision 'tf32' needs a CUDA GPU (Ampere or newer); on cpu use fp32 or bf16"
    capability = environment.get("compute_capability")
    if device == "cuda" and precision in ("tf32", "bf16", "amp-bf16") and capability:
        major = int(str(capability).split(".")[0])
        if major < 8:
            return (f"precision {precision!r} needs compute capability >= 8.0 (Ampere), this GPU "
                    f"is {capability}; use fp32 or fp16")
    return None


# ----------------------------------------------------------------------------------------------
# Cells and the backend adapter for the two modes

MODES = ("model", "end-to-end")


@dataclass(frozen=True)
class CellKey:
    """What a cell measures (the device is the one requested; rows report the resolved one)."""

    variant: str
    backend: str
    mode: str
    height: int
    width: int
    batch: int = 1

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}"


def nvidia_gpu_visible() -> bool:
    """Whether an NVIDIA driver is loaded and not hidden, without importing a framework."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return os.path.exists("/proc/driver/nvidia/version")


def default_modes(device: str) -> tuple[str, ...]:
    """Both modes on a GPU (copies and argmax matter there); on a CPU only 'model', where the
    copies are a negligible part of a forward of seconds and each extra cell costs seconds."""
    if device == "cuda" or (device == "auto" and nvidia_gpu_visible()):
        return MODES
    return ("model",)


def plan_cells(variants: Sequence[str], backends: Sequence[str], sizes: Sequence[tuple[int, int]],
               modes: Sequence[str], batch: int) -> list[CellKey]:
    """Every combination, in table order (variant, backend, size, mode)."""
    return [CellKey(v, b, m, h, w, batch) for v in variants for b in backends for h, w in sizes
            for m in modes]


class TimedCall(Protocol):
    """What the round scheduler needs from a cell. Only `call` is inside the timed region."""

    def setup(self) -> None: ...
    def before(self) -> None: ...
    def call(self) -> None: ...
    def after(self) -> None: ...


class BackendPool:
    """One backend instance per (variant, backend), built on first use and shared by its cells.

    `factory(variant, backend_name)` returns a ready backend (weights loaded). A construction
    failure is remembered, so every cell of that instance fails with the same message, once.
    """

    def __init__(self, factory: Callable[[str, str], Backend]):
        self._factory = factory
        self._instances: dict[tuple[str, str], Backend | Exception] = {}

    def get(self, variant: str, backend: str) -> Backend:
        key = (variant, backend)
        if key not in self._instances:
            try:
                self._instances[key] = self._factory(variant, backend)
            except Exception as error:  # any construction failure becomes this instance's verdict
                self._instances[key] = error
        instance = self._instances[key]
        if isinstance(instance, Exception):
            raise instance
        return instance

    def instances(self) -> Iterator[tuple[tuple[str, str], Backend]]:
        yield from ((k, v) for k, v in self._instances.items() if not isinstance(v, Exception))

    def clear(self) -> None:
        self._instances.clear()
        gc.collect()


def process_peak_rss_bytes() -> int:
    """High-water resident set size of this whole process (Linux reports KiB, macOS bytes)."""
    import resource  # POSIX only; imported here so bench.perf.latency still imports elsewhere

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if platform.system() == "Darwin" else int(peak) * 1024


class BackendCell:
    """A cell timed through the Backend interface, in 'model' or 'end-to-end' mode."""

    def __init__(self, key: CellKey, pool: BackendPool, images: np.ndarray, precision: str,
                 memory_bytes: int | None = None):
        self.key = key
        self.precision = precision
        self.memory_bytes = memory_bytes  # the spec's estimate of this cell's device memory
        self._pool = pool
        self._images = images  # (N, C, H, W) float32 host array, or a dict of them per input
        self.backend: Backend | None = None  # set by setup, released by release
        self.device: str | None = None
        self.peak_memory_per_call: list[int] = []  # one per call: first, warm-up..., timed...
        self.peak_memory_kind: str | None = None
        self._batch: Any = None
        self._output: Any = None

    def setup(self) -> None:
        """Build (or reuse) the backend, check the precision, stage the input (all untimed)."""
        self.backend = self._pool.get(self.key.variant, self.key.backend)
        self.device = self.backend.device
        problem = precision_problem(self.device, self.precision, self.backend.environment())
        if problem:
            raise UnsupportedPrecision(problem)
        if self.memory_bytes is not None:
            from bench.model.budget import check_fits

            check_fits(f"{self.key.variant} at {self.key.size} x batch {self.key.batch}",
                       self.memory_bytes, self.backend.memory_capacity_bytes(), self.device)
        if self.key.mode == "model":
            self._batch = self.backend.to_device(self._images)
            self.backend.synchronize(self._batch)

    def before(self) -> None:
        self.backend.synchronize()  # nothing from the previous cell is still running
        self.backend.reset_peak_memory()

    def call(self) -> None:
        if self.key.mode == "model":
            # (N, classes, H, W) on the device; a dict of them for a multi-head model
            self._output = self.backend.forward_device(self._batch)
            self.backend.synchronize(self._output)
        else:  # host (N, H, W) uint8 (per head): returning it to the host is the synchronisation
            self._output = self.backend.predict_labels(self._images)

    def after(self) -> None:
        self._output = None  # freed here, untimed (as a bare loop frees after its clock read)
        peak = self.backend.peak_memory_bytes()
        if peak is not None:
            self.peak_memory_kind = f"{self.device} allocator peak during this cell's calls"
        else:
            peak = process_peak_rss_bytes()
            self.peak_memory_kind = "process peak RSS (whole process, all cells so far)"
        self.peak_memory_per_call.append(peak)

    def timed_peak_memory_bytes(self, timed_calls: int) -> int | None:
        """Peak over the timed calls only (the first call's autotuning workspace is not steady)."""
        peaks = self.peak_memory_per_call[-timed_calls:] if timed_calls else []
        return max(peaks) if peaks else None

    def release(self) -> None:
        self._batch = None
        self.backend = None


@dataclass
class CellResult:
    """Raw outcome of one cell: every time in nanoseconds, or the error that stopped it."""

    first_call_ns: int | None = None
    warmup_ns: list[int] = field(default_factory=list)
    samples_ns: list[int] = field(default_factory=list)
    warmup_stable: bool | None = None
    error: str | None = None


def plan_groups(keys: Sequence[CellKey], instance_bytes: Mapping[str, int],
                budget_bytes: int | None) -> tuple[list[list[CellKey]], str]:
    """Interleave every cell at once if all their backend instances fit in `budget_bytes`; else
    one variant at a time (its backends still interleaved). Returns the groups and a label."""
    instances = {(k.variant, k.backend) for k in keys}
    needed = sum(instance_bytes[variant] for variant, _ in instances)
    if budget_bytes is None or needed <= budget_bytes or len({k.variant for k in keys}) == 1:
        return [list(keys)], "all cells"
    groups: dict[str, list[CellKey]] = {}
    for key in keys:
        groups.setdefault(key.variant, []).append(key)
    return list(groups.values()), (f"one variant at a time: the {len(instances)} models "
                                   f"(~{needed / 2**30:.1f} GiB) exceed half the available memory")
