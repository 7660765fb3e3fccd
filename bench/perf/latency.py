"""Latency engine: warm-up until stable, interleaved rounds, synchronised timing, raw samples.

The parts: timing policies (bench.perf.policy), cells, the backend adapter and the grouping of
cells (bench.perf.cells), the round scheduler (bench.perf.rounds), host facts (bench.core.host).
Here: the methodology, one row per cell, and `measure`, which runs the whole matrix. Backends
are typed against the `Backend` contract (bench.core.contracts).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.core.contracts import Backend
from bench.core.errors import describe_error
from bench.core.host import available_memory_bytes, host_info
from bench.perf.cells import BackendCell, BackendPool, CellKey, CellResult, plan_groups
from bench.perf.policy import DEFAULT_POLICIES, TimingPolicy, policy_for
from bench.perf.rounds import Progress, run_rounds
from bench.perf.stats import confidence_statement, summarize

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


def measure(keys: Sequence[CellKey], factory: Callable[[str, str], Backend], *, precision: str,
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
    `memory_of(key)` estimates a cell's device memory (bench.model.budget), checked against
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


def _describe_backend(backend: Backend, roofline: bool,
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
