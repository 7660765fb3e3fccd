"""Latency engine: warm-up until stable, interleaved rounds, synchronised timing, raw samples.

Framework-free (stdlib + numpy; scipy for one binomial quantile). Backends are duck-typed objects
with the `backends.base.Backend` methods; this module never imports backends/, torch or tensorflow.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bench.core.errors import FcnBenchError, UsageError
from bench.perf.host import available_memory_bytes, host_info, plan_groups
from bench.perf.stats import coefficient_of_variation, confidence_statement, summarize

# The README and `latency --help` quote this text; keep it in step with the code below.
METHODOLOGY = """\
Cells are variant x backend x size x mode, all measured in one process, with deterministic random
weights and one synthetic preprocessed input per size.

First call: each cell's first call is timed on its own and reported as first_call_ms (tracing,
torch.compile / XLA compilation, cuDNN autotuning, lazy allocation); it never enters the statistics.
The two modes of one variant and backend share one model, so one-time costs they share (weights
moved into place, kernels chosen) fall on whichever first call comes first (model mode's).

Warm-up: calls continue until the coefficient of variation (std / mean) of the last `window` calls
is below `cv_threshold`, after at least --warmup calls and at most `max` calls (a cell that hits
`max` is recorded with warmup_stable = false). --warmup 0 skips warm-up.

Timed: at least --iters calls AND at least --min-time seconds of summed call time per cell; both
must hold, as MLPerf LoadGen's min_query_count and min_duration.

Interleaving: warm-up and timed calls run in rounds; every round calls each unfinished cell once,
in a seeded shuffled order, so clock, thermal and neighbour-load drift hits every backend and
variant alike (one variant at a time only when all models do not fit in half the free memory).

Timed region: time.perf_counter_ns around exactly one call. model mode: forward_device on an input
already on the device, then backend.synchronize(scores); scores stay on the device. end-to-end
mode: predict_labels on a preprocessed float32 host batch: host->device copy, forward, argmax on
the device, uint8 labels back to the host. Untimed around each call: a device synchronize (the
device starts idle) and the peak-memory reset/read.

Statistics: raw samples are kept; p50/p90/p99 interpolate linearly; std is the sample standard
deviation; images/s and GFLOP/s divide the batch (FLOPs from the spec) by the mean call time.
The median gets a bootstrap 95% interval and p90 a distribution-free 99% upper bound (an order
statistic, as MLPerf early stopping), null when there are too few samples."""

NS_PER_MS = 1_000_000


# ----------------------------------------------------------------------------------------------
# When to stop warming up and when to stop timing


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
# Cells: one measurable configuration, and the backend adapters for the two modes

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

    def __init__(self, factory: Callable[[str, str], Any]):
        self._factory = factory
        self._instances: dict[tuple[str, str], Any] = {}

    def get(self, variant: str, backend: str) -> Any:
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

    def instances(self) -> Iterator[tuple[tuple[str, str], Any]]:
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
        self.backend: Any = None
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
            from bench.perf.budget import check_fits

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


# ----------------------------------------------------------------------------------------------
# The round scheduler


@dataclass
class CellResult:
    """Raw outcome of one cell: every time in nanoseconds, or the error that stopped it."""

    first_call_ns: int | None = None
    warmup_ns: list[int] = field(default_factory=list)
    samples_ns: list[int] = field(default_factory=list)
    warmup_stable: bool | None = None
    error: str | None = None


def describe_error(error: BaseException) -> str:
    """One line: the exception type (unless it is ours) and the first line of its message."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, FcnBenchError) and text:
        return text[:300]
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


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
    from bench.perf.progress import Estimator

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


# ----------------------------------------------------------------------------------------------
# Rows: one per cell, the unit of the table, the JSON record and the CSV


def make_row(key: CellKey, result: CellResult, *, device: str | None, precision: str,
             gflops: float, compile: str | None = None, channels_last: bool = False,
             peak_memory_bytes: int | None = None, peak_memory_kind: str | None = None,
             paper: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything known about one cell; statistics only for cells that finished ("ok")."""
    ok = result.error is None
    samples_ms = [ns / NS_PER_MS for ns in result.samples_ns]
    stats = summarize(samples_ms if ok else [])
    mean_s = stats["mean_ms"] / 1000 if stats["mean_ms"] else None
    return {
        "variant": key.variant, "backend": key.backend, "device": device, "precision": precision,
        "mode": key.mode, "size": key.size, "height": key.height, "width": key.width,
        "batch": key.batch, "compile": compile, "channels_last": channels_last,
        "status": "ok" if ok else "failed", "error": result.error,
        **{k: v for k, v in stats.items() if k != "n"},
        "n_samples": len(samples_ms),
        "images_per_s": key.batch / mean_s if mean_s else None,
        "first_call_ms": (result.first_call_ns / NS_PER_MS
                          if result.first_call_ns is not None else None),
        "warmup_count": len(result.warmup_ns), "warmup_stable": result.warmup_stable,
        "gflops": gflops, "gflops_per_s": gflops / mean_s if mean_s else None,
        "peak_memory_bytes": peak_memory_bytes, "peak_memory_kind": peak_memory_kind,
        "paper_latency_ms": paper.get("latency_ms") if paper else None,
        "paper_reference": dict(paper) if paper else None,
        "confidence": confidence_statement(samples_ms) if ok and samples_ms else None,
        "samples_ms": samples_ms, "warmup_ms": [ns / NS_PER_MS for ns in result.warmup_ns],
    }


# ----------------------------------------------------------------------------------------------
# The whole matrix: groups -> cells -> rounds -> rows


InputShape = tuple[tuple[str, int], ...]  # (input name, channels) per network input, in order
VOC_INPUT: InputShape = (("data", 3),)


def synthetic_batch(height: int, width: int, batch: int, seed: int,
                    inputs: InputShape = VOC_INPUT) -> Any:
    """One generated input per named network input, float32 (N, C, H, W).

    A 3-channel input is random RGB pixels preprocessed exactly like a VOC image (BGR, mean
    subtracted), so every backend and mode sees the same realistic values; any other channel
    count (NYUD's 1-channel log-depth) is mean-subtracted-like noise (standard normal). A
    one-input model gets a plain array, a multi-input one a dict {name: array}, the form the
    backends' `to_device` and `predict_labels` take (docs/latency.md "Every model of the zoo").
    """
    from bench.data.voc import preprocess

    arrays = {}
    for index, (name, channels) in enumerate(inputs):
        # The first input keeps the one-input seeding, so VOC inputs are as they always were.
        rng = np.random.default_rng([seed, height, width, batch, *([index] if index else [])])
        if channels == 3:
            arrays[name] = np.stack([
                preprocess(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
                for _ in range(batch)])
        else:
            arrays[name] = rng.standard_normal((batch, channels, height, width), np.float32)
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def paper_for(key: CellKey, reference: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The paper's figure belongs beside a row only for the paper's input (batch 1, its size)."""
    if reference is None or key.batch != 1:
        return None
    match = re.search(r"(\d+)\s*[x×]\s*(\d+)", str(reference.get("input") or ""))
    if match and (int(match[1]), int(match[2])) != (key.height, key.width):
        return None
    return reference


@dataclass
class LatencyRun:
    """A finished matrix: one row per cell, environments per backend, how cells were scheduled."""

    rows: list[dict[str, Any]]
    environments: dict[str, dict[str, Any]]
    interleaving: str
    policies: dict[str, TimingPolicy]
    host_before: dict[str, Any] = field(default_factory=dict)  # host_info() at the start
    host_after: dict[str, Any] = field(default_factory=dict)  # ... and at the end (load!)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] != "ok"]


def measure(keys: Sequence[CellKey], factory: Callable[[str, str], Any], *, precision: str,
            gflops_of: Callable[[CellKey], float], instance_bytes: Mapping[str, int],
            paper_of: Callable[[str], Mapping[str, Any] | None] = lambda variant: None,
            requested_device: str = "auto", compile: str | None = None,
            channels_last: bool = False, warmup: int | None = None, iters: int | None = None,
            min_time_s: float | None = None, seed: int = 0, progress: Progress | None = None,
            memory_of: Callable[[CellKey], int] | None = None,
            roofline: bool = True,
            inputs_of: Callable[[str], InputShape] = lambda variant: VOC_INPUT) -> LatencyRun:
    """Run every cell of `keys` (interleaved, see METHODOLOGY) and return one row per cell.

    `factory(variant, backend)` builds a backend with weights loaded; `instance_bytes[variant]`
    estimates one instance's host memory, to decide whether all instances fit at once;
    `memory_of(key)` estimates a cell's device memory (bench.perf.budget), checked against
    what the device has before the cell allocates; `inputs_of(variant)` names its inputs and
    their channels (one generated input each). With `roofline`, each backend's device
    ceilings are measured once (bench.perf.roofline) and every row says where it stands.
    """
    from bench.perf.roofline import roofline_fields

    host_before = host_info()
    budget = available_memory_bytes()
    groups, interleaving = plan_groups(keys, instance_bytes, budget // 2 if budget else None)
    policies: dict[str, TimingPolicy] = {}
    guess = DEFAULT_POLICIES["cuda" if requested_device == "cuda" else "cpu"]

    def policy_of(cell: BackendCell) -> TimingPolicy:
        device = cell.device if cell.device in DEFAULT_POLICIES else "cpu"
        policies[device] = policy_for(device, warmup=warmup, iters=iters, min_time_s=min_time_s)
        return policies[device]

    rows_by_key: dict[CellKey, dict[str, Any]] = {}
    environments: dict[str, dict[str, Any]] = {}
    done_s, done_cells = 0.0, 0
    for number, group in enumerate(groups):
        later = sum(len(g) for g in groups[number + 1:])

        def group_progress(spent: float, left: float, text: str, later: int = later,
                           before_s: float = done_s, before_cells: int = done_cells) -> None:
            per_cell = (before_s + spent) / max(before_cells + 1, 1)
            if progress:
                progress(before_s + spent, left + later * per_cell, text)

        pool = BackendPool(factory)
        batches = {(inputs_of(k.variant), k.height, k.width, k.batch):
                   synthetic_batch(k.height, k.width, k.batch, seed, inputs_of(k.variant))
                   for k in group}
        cells = [BackendCell(k, pool, batches[inputs_of(k.variant), k.height, k.width, k.batch],
                             precision,
                             memory_of(k) if memory_of else None) for k in group]
        started = time.perf_counter()
        results = run_rounds(
            cells, policy_of, seed=seed, progress=group_progress, guess_policy=guess,
            label=lambda c: f"{c.key.variant}/{c.key.backend}/{c.key.mode}/{c.key.size}")
        for cell, result in zip(cells, results, strict=True):
            rows_by_key[cell.key] = make_row(
                cell.key, result, device=cell.device or requested_device, precision=precision,
                gflops=gflops_of(cell.key), compile=compile, channels_last=channels_last,
                peak_memory_bytes=(cell.timed_peak_memory_bytes(len(result.samples_ns))
                                   if result.error is None else None),
                peak_memory_kind=cell.peak_memory_kind,
                paper=paper_for(cell.key, paper_of(cell.key.variant)))
            cell.release()
        for (_, name), backend in pool.instances():
            if name not in environments:
                environments[name] = _describe_backend(
                    backend, roofline,
                    lambda text, t0=started: group_progress(time.perf_counter() - t0, 0.0, text))
        pool.clear()
        done_s += time.perf_counter() - started
        done_cells += len(group)
    rows = [rows_by_key[k] for k in keys]
    for row in rows:
        ceilings = environments.get(row["backend"], {}).get("ceilings")
        row.update(roofline_fields(row["gflops"], row["p50_ms"], ceilings))
    return LatencyRun(rows, environments, interleaving, policies, host_before, host_info())


def _describe_backend(backend: Any, roofline: bool,
                      progress: Callable[[str], None]) -> dict[str, Any]:
    """backend.environment(), plus its measured ceilings (env["ceilings"]) with `roofline`."""
    try:
        environment = dict(backend.environment())
    except Exception as error:  # a description must not sink the results...
        # ...but the record must say it is missing, and why.
        return {"error": describe_error(error)}
    if roofline:
        progress(f"measuring the {backend.name} device's peak")
        try:
            environment["ceilings"] = backend.measure_peak()
        except Exception as error:  # no ceiling: rows get no roofline, the run goes on
            environment["ceilings"] = {"error": describe_error(error)}
    return environment
