"""The latency harness: statistics, warm-up and stopping rules, interleaving, failed cells, the
CUDA path (with a fake cuda backend), every bad input of `latency`, output schemas, real smoke runs.

Timing logic runs against a fake clock and scripted call durations, so it is exact and instant.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import backends
import bench.perf.latency as latency
from bench.cli.app import cli
from bench.core.contracts import Backend, RunOptions
from bench.core.errors import BackendUnavailable
from bench.model.spec import VARIANTS, build_spec
from bench.perf import cells
from bench.perf.cells import (
    BackendCell,
    BackendPool,
    CellKey,
    CellResult,
    plan_cells,
    plan_groups,
    precision_problem,
)
from bench.perf.latency import make_row, paper_for
from bench.perf.policy import TimingPolicy, WarmupPolicy, policy_for
from bench.perf.rounds import run_rounds, time_call
from bench.perf.stats import (
    bootstrap_median_ci,
    coefficient_of_variation,
    confidence_statement,
    percentile_upper_bound,
    summarize,
)

MS = latency.NS_PER_MS


# ----------------------------------------------------------------------------------------------
# Scripted cells on a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class ScriptedCell:
    """A cell whose n-th call takes durations_ms[n] on the fake clock (the last one repeats)."""

    def __init__(self, name: str, durations_ms: Sequence[float], clock: FakeClock, log: list,
                 fail_at_call: int | None = None, fail_setup: bool = False):
        self.name, self.durations, self.clock, self.log = name, list(durations_ms), clock, log
        self.fail_at_call, self.fail_setup, self.calls = fail_at_call, fail_setup, 0

    def setup(self) -> None:
        if self.fail_setup:
            raise MemoryError("out of memory while loading weights")

    def before(self) -> None:
        pass

    def call(self) -> None:
        if self.calls == self.fail_at_call:
            raise RuntimeError("boom\nsecond line of a long framework message")
        self.log.append(self.name)
        self.clock.now += int(self.durations[min(self.calls, len(self.durations) - 1)] * MS)
        self.calls += 1

    def after(self) -> None:
        pass


def policy(min_warm=0, max_warm=0, window=3, cv=0.05, iters=1, min_time=0.0) -> TimingPolicy:
    return TimingPolicy(WarmupPolicy(min_warm, max_warm, window, cv), iters, min_time)


def run(cells: Sequence[ScriptedCell], policies: Sequence[TimingPolicy] | TimingPolicy,
        clock: FakeClock, seed: int = 0) -> list[CellResult]:
    by_cell = {id(c): (policies if isinstance(policies, TimingPolicy) else policies[i])
               for i, c in enumerate(cells)}
    return run_rounds(cells, lambda cell: by_cell[id(cell)], seed=seed, clock=clock)


def ms(values: Iterable[int]) -> list[float]:
    return [v / MS for v in values]


# ----------------------------------------------------------------------------------------------
# Statistics


def test_summary_statistics_follow_their_stated_definitions():
    stats = summarize([float(v) for v in range(1, 11)])
    assert stats["n"] == 10
    assert stats["p50_ms"] == pytest.approx(5.5)
    assert stats["p90_ms"] == pytest.approx(9.1)  # linear interpolation: 1 + 0.9 * 9
    assert stats["p99_ms"] == pytest.approx(9.91)
    assert stats["mean_ms"] == pytest.approx(5.5)
    variance = sum((v - 5.5) ** 2 for v in range(1, 11)) / 9  # sample variance (ddof 1)
    assert stats["std_ms"] == pytest.approx(math.sqrt(variance))
    assert (stats["min_ms"], stats["max_ms"]) == (1.0, 10.0)


def test_summary_of_one_or_no_sample():
    assert summarize([4.0])["std_ms"] == 0.0
    assert summarize([4.0])["p99_ms"] == 4.0
    assert set(summarize([]).values()) == {None}


def test_coefficient_of_variation():
    assert coefficient_of_variation([10.0, 10.0, 10.0]) == 0.0
    assert coefficient_of_variation([9.0, 11.0]) == pytest.approx(math.sqrt(2) / 10)
    assert coefficient_of_variation([5.0]) == math.inf


def _binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("n", [44, 60, 100, 500])
def test_p90_upper_bound_is_the_smallest_order_statistic_with_99_percent_coverage(n):
    samples = np.random.default_rng(n).permutation(np.arange(1, n + 1, dtype=float))
    bound, rank = percentile_upper_bound(samples, 0.90, 0.99)
    assert bound == float(rank)  # the rank-th smallest of 1..n
    assert _binomial_cdf(rank - 1, n, 0.9) >= 0.99 > _binomial_cdf(rank - 2, n, 0.9)


def test_p90_upper_bound_needs_44_samples():
    # 0.9**43 > 0.01: even the maximum of 43 samples is not a 99% bound on p90.
    assert percentile_upper_bound(np.ones(43)) is None
    assert percentile_upper_bound(np.arange(44.0)) == (43.0, 44)
    statement = confidence_statement([1.0] * 10)
    assert statement["p90_upper_bound_ms"] is None
    assert "needs at least 44 samples" in statement["p90_upper_bound_method"]


def test_bootstrap_interval_brackets_the_median_and_reproduces():
    samples = np.random.default_rng(1).normal(100, 5, 200)
    low, high = bootstrap_median_ci(samples)
    assert low < np.median(samples) < high
    assert high - low < 5  # ~1.25 * sigma / sqrt(n) * 2 * 1.96, far below one sigma
    assert bootstrap_median_ci(samples) == (low, high)
    assert bootstrap_median_ci([3.0]) is None


# ----------------------------------------------------------------------------------------------
# Warm-up, stopping rules, interleaving


def test_first_call_is_reported_apart_and_warmup_stops_when_stable():
    clock, log = FakeClock(), []
    # first call 500 ms (compilation), then settling: the last 3 are within 1%.
    cell = ScriptedCell("a", [500, 30, 10.0, 10.1, 10.05, 10.0], clock, log)
    (result,) = run([cell], policy(min_warm=2, max_warm=10, window=3, iters=2), clock)
    assert result.first_call_ns == 500 * MS
    assert ms(result.warmup_ns) == [30, 10.0, 10.1, 10.05]
    assert result.warmup_stable is True
    assert ms(result.samples_ns) == [10.0, 10.0]
    assert 500 not in ms(result.samples_ns)


def test_warmup_is_bounded_and_flags_a_cell_that_never_settles():
    clock, log = FakeClock(), []
    cell = ScriptedCell("a", [1] + [10, 20] * 20, clock, log)
    (result,) = run([cell], policy(min_warm=2, max_warm=6, window=3, iters=1), clock)
    assert len(result.warmup_ns) == 6
    assert result.warmup_stable is False


def test_warmup_minimum_count_holds_even_when_stable_at_once():
    clock, log = FakeClock(), []
    (result,) = run([ScriptedCell("a", [10], clock, log)], policy(min_warm=7, max_warm=20), clock)
    assert len(result.warmup_ns) == 7 and result.warmup_stable is True


def test_warmup_zero_means_none():
    p = policy_for("cpu", warmup=0)
    assert p.warmup.max_samples == 0 and p.warmup.is_done([])
    clock, log = FakeClock(), []
    (result,) = run([ScriptedCell("a", [10], clock, log)], p, clock)
    assert result.warmup_ns == [] and result.warmup_stable is None


@pytest.mark.parametrize(("duration_ms", "iters", "min_time", "expected"), [
    (100, 3, 1.0, 10),  # the minimum time binds: 10 x 100 ms
    (1000, 3, 1.0, 3),  # the minimum count binds
    (250, 4, 1.0, 4),  # both met at once
    (300, 1, 1.0, 4),  # 3 x 300 ms = 0.9 s is not enough
])
def test_timed_phase_needs_both_the_minimum_count_and_the_minimum_time(duration_ms, iters,
                                                                       min_time, expected):
    clock, log = FakeClock(), []
    cell = ScriptedCell("a", [duration_ms], clock, log)
    (result,) = run([cell], policy(iters=iters, min_time=min_time), clock)
    assert len(result.samples_ns) == expected


def test_rounds_visit_every_cell_once_in_a_seeded_shuffled_order():
    def timed_rounds(seed: int) -> list[list[str]]:
        clock, log = FakeClock(), []
        cells = [ScriptedCell(name, [10], clock, log) for name in "abcd"]
        run(cells, policy(iters=12), clock, seed=seed)
        timed = log[4:]  # after the four first calls
        return [timed[i:i + 4] for i in range(0, len(timed), 4)]

    rounds = timed_rounds(seed=0)
    assert len(rounds) == 12
    assert all(sorted(r) == list("abcd") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # not one fixed order: predecessors vary
    assert timed_rounds(seed=0) == rounds
    assert timed_rounds(seed=1) != rounds


def test_a_finished_cell_leaves_the_rotation_while_others_go_on():
    clock, log = FakeClock(), []
    cells = [ScriptedCell("fast", [10], clock, log), ScriptedCell("slow", [10], clock, log)]
    results = run(cells, [policy(iters=2), policy(iters=4)], clock)
    assert [len(r.samples_ns) for r in results] == [2, 4]
    timed = log[2:]
    assert sorted(timed[:4]) == ["fast", "fast", "slow", "slow"]
    assert timed[4:] == ["slow", "slow"]


def test_warmup_rounds_are_interleaved_too_and_timing_starts_together():
    clock, log = FakeClock(), []
    cells = [ScriptedCell("a", [10], clock, log), ScriptedCell("b", [10, 50, 10], clock, log)]
    run(cells, policy(min_warm=1, max_warm=10, window=2, iters=1), clock)
    # a: first call, then warm-up [10, 10] stable; b: first call 10, warm-up [50, 10, 10].
    first, warm, timed = log[:2], log[2:7], log[7:]
    assert sorted(first) == ["a", "b"]
    assert sorted(warm[:4]) == ["a", "a", "b", "b"] and warm[4] == "b"
    assert sorted(timed) == ["a", "b"]


def test_a_failing_cell_keeps_its_error_and_the_rest_of_the_matrix_runs():
    clock, log = FakeClock(), []
    cells = [ScriptedCell("ok", [10], clock, log),
             ScriptedCell("breaks", [10], clock, log, fail_at_call=3),
             ScriptedCell("no-setup", [10], clock, log, fail_setup=True)]
    results = run(cells, policy(iters=5), clock)
    assert len(results[0].samples_ns) == 5 and results[0].error is None
    assert results[1].error == "RuntimeError: boom"  # one line, type named
    assert results[2].error == "MemoryError: out of memory while loading weights"
    assert "no-setup" not in log


def test_time_call_times_exactly_the_call():
    events: list[str] = []

    class Probe:
        def before(self): events.append("before")
        def call(self): events.append("call")
        def after(self): events.append("after")

    def clock() -> int:
        events.append("clock")
        return len(events)

    time_call(Probe(), clock)
    assert events == ["before", "clock", "call", "clock", "after"]


def test_policy_defaults_are_sized_per_device_and_overrides_apply():
    cpu, gpu = policy_for("cpu"), policy_for("cuda")
    assert cpu.min_iters < gpu.min_iters and cpu.min_time_s < gpu.min_time_s
    custom = policy_for("cpu", warmup=7, iters=3, min_time_s=0)
    assert (custom.warmup.min_samples, custom.min_iters, custom.min_time_s) == (7, 3, 0)
    assert custom.warmup.max_samples >= 7


def test_plan_cells_and_memory_aware_groups():
    keys = plan_cells(["fcn32s", "fcn8s"], ["torch", "tensorflow"], [(8, 8)], ["model"], 1)
    assert [(k.variant, k.backend) for k in keys] == [
        ("fcn32s", "torch"), ("fcn32s", "tensorflow"), ("fcn8s", "torch"),
        ("fcn8s", "tensorflow")]
    sizes = {"fcn32s": 100, "fcn8s": 100}
    groups, label = plan_groups(keys, sizes, budget_bytes=400)
    assert groups == [keys] and label == "all cells"
    groups, label = plan_groups(keys, sizes, budget_bytes=399)
    assert [[k.variant for k in g] for g in groups] == [["fcn32s"] * 2, ["fcn8s"] * 2]
    assert "one variant at a time" in label


def test_paper_figure_only_beside_the_matching_input():
    ref = {"latency_ms": 210.0, "input": "500x500", "hardware": "K40c"}
    assert paper_for(CellKey("fcn32s", "torch", "model", 500, 500), ref) is ref
    assert paper_for(CellKey("fcn32s", "torch", "model", 375, 500), ref) is None
    assert paper_for(CellKey("fcn32s", "torch", "model", 500, 500, batch=4), ref) is None
    assert paper_for(CellKey("fcn32s", "torch", "model", 500, 500), None) is None


# ----------------------------------------------------------------------------------------------
# A fake backend (numpy, instant) for the Backend-facing parts and the CLI


class FakeBackend(Backend):
    """Implements bench.core.contracts.Backend with numpy and logs what the harness asked of it."""

    name = "fake"

    def __init__(self, spec, options=None, *, device="cpu", capability=None, fail=None,
                 compile_fails=False):
        super().__init__(spec, options)
        self._device = device
        self._capability = capability
        self._fail = fail  # exception raised by every forward (e.g. an OOM)
        self._compile_fails = compile_fails and self.options.compile
        self.log: list = []

    def load_params(self, params):
        self.log.append("load")

    def state_params(self):
        return {}

    def _scores(self, images):
        if self._compile_fails:
            raise BackendUnavailable(f"torch.compile cannot compile the {self.spec.variant} "
                                     "model on cpu: no compiler; run without --compile")
        if self._fail:
            raise self._fail
        n, _, h, w = images.shape
        return np.zeros((n, self.spec.num_classes, h, w), np.float32)

    def predict(self, images):
        return self._scores(images)

    def predict_labels(self, images):
        assert isinstance(images, np.ndarray)  # end-to-end starts from host numpy
        self.log.append("predict_labels")
        return self._scores(images).argmax(1).astype(np.uint8)

    def forward_blobs(self, images, names):
        return {}

    def to_device(self, images):
        self.log.append("to_device")
        return ("on-device", images)

    def forward_device(self, batch):
        assert batch[0] == "on-device"  # model mode never re-copies the host input
        self.log.append("forward_device")
        return ("on-device", self._scores(batch[1]))

    def synchronize(self, value=None):
        self.log.append("sync(value)" if value is not None else "sync")

    @property
    def device(self):
        return self._device

    def environment(self):
        env = {"framework": "fake", "device": self._device, "precision": self.options.precision}
        if self._capability:
            env["compute_capability"] = self._capability
        return env

    def reset_peak_memory(self):
        self.log.append("reset_peak")

    def peak_memory_bytes(self):
        return 3 * 2**20 if self._device == "cuda" else None


TINY = build_spec("fcn32s", width_divisor=64)


def fake_cell(mode: str, backend: FakeBackend, precision: str = "fp32") -> BackendCell:
    pool = BackendPool(lambda variant, name: backend)
    images = np.zeros((1, 3, 4, 4), np.float32)
    return BackendCell(CellKey("fcn32s", "fake", mode, 4, 4), pool, images, precision)


def test_cuda_model_mode_syncs_inside_the_timed_region_and_keeps_scores_on_the_device():
    backend = FakeBackend(TINY, RunOptions(device="cuda"), device="cuda", capability="9.0")
    cell = fake_cell("model", backend)
    cell.setup()
    assert backend.log == ["to_device", "sync(value)"]  # input staged once, untimed
    backend.log.clear()
    time_call(cell, lambda: backend.log.append("clock") or 0)
    assert backend.log == ["sync", "reset_peak", "clock", "forward_device", "sync(value)",
                           "clock"]
    assert cell.peak_memory_per_call == [3 * 2**20]
    assert cell.peak_memory_kind.startswith("cuda allocator peak")


def test_end_to_end_mode_starts_from_host_numpy_and_needs_no_extra_sync():
    backend = FakeBackend(TINY, device="cuda")
    cell = fake_cell("end-to-end", backend)
    cell.setup()
    assert backend.log == []  # nothing staged: the copy is part of what is timed
    time_call(cell, lambda: backend.log.append("clock") or 0)
    assert backend.log == ["sync", "reset_peak", "clock", "predict_labels", "clock"]


def test_cpu_peak_memory_is_the_labelled_process_rss():
    cell = fake_cell("model", FakeBackend(TINY))
    cell.setup()
    time_call(cell)
    assert cell.peak_memory_per_call[0] > 10 * 2**20
    assert cell.peak_memory_kind.startswith("process peak RSS")


@pytest.mark.parametrize(("device", "capability", "precision", "refused"), [
    ("cpu", None, "tf32", True), ("cpu", None, "fp32", False), ("cpu", None, "bf16", False),
    ("cuda", "7.5", "tf32", True), ("cuda", "7.5", "bf16", True), ("cuda", "7.5", "fp16", False),
    ("cuda", "8.0", "tf32", False), ("cuda", "9.0", "bf16", False), ("cuda", None, "tf32", False),
])
def test_precision_is_validated_per_device(device, capability, precision, refused):
    env = {"compute_capability": capability} if capability else {}
    assert (precision_problem(device, precision, env) is not None) == refused


def test_an_unsupported_precision_on_a_fake_gpu_becomes_a_failed_row():
    backend = FakeBackend(TINY, RunOptions(device="cuda", precision="tf32"), device="cuda",
                          capability="7.0")
    cell = fake_cell("model", backend, precision="tf32")
    (result,) = run_rounds([cell], lambda c: policy(iters=1))
    row = make_row(cell.key, result, device=cell.device, precision="tf32", gflops=1.0)
    assert row["status"] == "failed" and row["device"] == "cuda"
    assert "compute capability >= 8.0" in row["error"] and "7.0" in row["error"]
    assert row["p50_ms"] is None and row["confidence"] is None


def test_backend_pool_builds_once_and_remembers_a_construction_failure():
    built: list[tuple[str, str]] = []

    def factory(variant: str, name: str):
        built.append((variant, name))
        if name == "broken":
            raise BackendUnavailable("device 'cuda' requested but no GPU")
        return object()

    pool = BackendPool(factory)
    assert pool.get("fcn8s", "ok") is pool.get("fcn8s", "ok")
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            pool.get("fcn8s", "broken")
    assert built == [("fcn8s", "ok"), ("fcn8s", "broken")]
    assert [key for key, _ in pool.instances()] == [("fcn8s", "ok")]


# ----------------------------------------------------------------------------------------------
# The command, with fake backends (fast) ...

ROW_FIELDS = {"variant", "backend", "device", "precision", "mode", "size", "batch", "p50_ms",
              "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "images_per_s",
              "first_call_ms", "gflops", "gflops_per_s", "peak_memory_bytes", "status", "error",
              "samples_ms", "confidence"}
FAST = ["--iters", "2", "--warmup", "0", "--min-time", "0", "--width-divisor", "64"]


@pytest.fixture
def fakes(monkeypatch):
    """Replace the registry with two fake backends; returns a dict to tune their behaviour."""
    behaviour: dict[str, dict[str, Any]] = {"torch": {}, "tensorflow": {}}
    installed = ["torch", "tensorflow"]

    def create_backend(name, spec, options=None):
        return FakeBackend(spec, options, **behaviour[name])

    def unavailable_reason(name):
        key = backends.canonical_name(name)
        return None if key in installed else f"backend {key!r} is unavailable: not installed"

    monkeypatch.setattr(backends, "create_backend", create_backend)
    for module in (backends, backends.registry):  # the registry resolves names with these
        monkeypatch.setattr(module, "available_backends", lambda: list(installed))
        monkeypatch.setattr(module, "unavailable_reason", unavailable_reason)
    monkeypatch.setattr(cells, "nvidia_gpu_visible", lambda: False)
    behaviour["installed"] = installed
    return behaviour


def invoke(*args: str):
    return CliRunner().invoke(cli, ["latency", *args])


def test_help_states_the_method_and_the_per_device_defaults():
    result = invoke("--help")
    assert result.exit_code == 0
    for phrase in ("perf_counter_ns", "synchronize", "coefficient of variation", "min_duration",
                   "first_call_ms", "python cli.py latency", "cpu: warm-up", "cuda: warm-up"):
        assert phrase in result.output, phrase


def test_default_matrix_is_every_variant_times_every_backend(fakes, tmp_path):
    out = tmp_path / "lat.json"
    result = invoke(*FAST, "--output", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [(r["variant"], r["backend"]) for r in rows] == [
        (v, b) for v in VARIANTS for b in ("torch", "tensorflow")]
    assert {(r["size"], r["batch"], r["precision"], r["mode"], r["device"]) for r in rows} == {
        ("500x500", 1, "fp32", "model", "cpu")}
    assert all(set(r) >= ROW_FIELDS for r in rows)
    assert all(r["status"] == "ok" and len(r["samples_ms"]) == 2 for r in rows)
    # The paper's figure beside each 500x500 row, its source in a footnote.
    for variant, paper in (("fcn32s", "210 [1]"), ("fcn8s", "175 [")):
        lines = [line for line in result.stdout.splitlines() if line.startswith(variant + " ")]
        assert len(lines) == 2 and all(paper in line for line in lines)
    assert "[1] 210 ms: NVIDIA Tesla K40c" in result.stdout
    assert "p50 tensorflow / torch" in result.stdout
    assert record["kind"] == "latency" and record["schema_version"] == 1
    assert record["provenance"]["git"].keys() == {"commit", "dirty"}
    assert set(record["environment"]["backends"]) == {"torch", "tensorflow"}
    assert record["environment"]["host"]["logical_cpus"]
    assert record["options"]["interleaving"] == "all cells"
    assert "cpu" in record["options"]["policies"]
    assert "perf_counter_ns" in record["methodology"]
    # A stored record re-renders to the very table that was printed.
    from bench.perf.report import format_table, run_from_record

    assert format_table(run_from_record(record).rows, wide=False) in result.stdout


def test_csv_and_markdown_outputs(fakes, tmp_path):
    csv_path, md_path = tmp_path / "lat.csv", tmp_path / "lat.md"
    args = [*FAST, "--variant", "fcn8s", "--variant", "fcn8s", "--backend", "torch", "--backend",
            "pytorch", "--mode", "both", "--size", "8x8", "--size", "6x10", "--size", "8X8"]
    result = invoke(*args, "--output", str(csv_path), "--output", str(md_path), "--format",
                    "github")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [(r["mode"], r["size"]) for r in rows] == [
        ("model", "8x8"), ("end-to-end", "8x8"), ("model", "6x10"), ("end-to-end", "6x10")]
    assert all(len(r["samples_ms"].split(";")) == 2 for r in rows)
    assert {"p50_ms", "p90_upper_bound_ms", "median_ci95_low_ms"} <= set(rows[0])
    text = md_path.read_text()
    assert text.startswith("# fcn-bench latency") and "| variant" in text
    assert "## Method" in text and "## Environment" in text
    assert any(line.startswith("|") for line in result.stdout.splitlines())


def test_plot_is_written(fakes, tmp_path):
    plot = tmp_path / "lat.png"
    result = invoke(*FAST, "--variant", "fcn32s", "--size", "8x8", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "500"], "'500' is not a size"),
    (["--size", "0x5"], "'0x5' is not a size"),
    (["--size", "axb"], "'axb' is not a size"),
    (["--batch", "0"], "0 is not in the range x>=1"),
    (["--backend", "jax"], "unknown backend 'jax'"),
    (["--precision", "fp8"], "'fp8' is not one of"),
    (["--iters", "0"], "x>=1"),
    (["--output", "lat.txt"], "unknown extension '.txt'"),
    (["--plot", "lat.jpg"], "use one of .png"),
])
def test_option_errors_exit_2_with_one_line_before_running(fakes, tmp_path, monkeypatch, args,
                                                           message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(backends, "create_backend", pytest.fail)  # nothing may run
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_backend_that_is_not_installed_is_one_line_exit_1(fakes, monkeypatch):
    fakes["installed"].remove("tensorflow")
    monkeypatch.setattr(backends, "create_backend", pytest.fail)
    result = invoke(*FAST, "--backend", "tf")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: backend 'tensorflow' is unavailable: not installed"]


def test_no_backend_installed_at_all(fakes):
    fakes["installed"].clear()
    result = invoke(*FAST)
    assert result.exit_code == 1 and "no backend is installed" in result.stderr


def test_unsupported_precision_is_a_failed_row_per_cell_and_exit_1(fakes, tmp_path):
    out = tmp_path / "lat.json"
    result = invoke(*FAST, "--variant", "fcn32s", "--size", "8x8", "--precision", "tf32",
                    "--output", str(out))
    assert result.exit_code == 1
    rows = json.loads(out.read_text())["rows"]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("needs a CUDA GPU" in r["error"] for r in rows)
    assert result.stdout.count("FAILED") == 2 and "needs a CUDA GPU" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: 2 of 2 cells failed")


def test_compile_unavailable_fails_its_rows_and_the_rest_still_runs(fakes, tmp_path):
    fakes["torch"]["compile_fails"] = True
    out = tmp_path / "lat.json"
    result = invoke(*FAST, "--variant", "fcn32s", "--variant", "fcn16s", "--size", "8x8",
                    "--compile", "--output", str(out))
    assert result.exit_code == 1
    rows = {(r["variant"], r["backend"]): r for r in json.loads(out.read_text())["rows"]}
    for variant in ("fcn32s", "fcn16s"):
        assert rows[variant, "torch"]["status"] == "failed"
        assert "run without --compile" in rows[variant, "torch"]["error"]
        assert rows[variant, "tensorflow"]["status"] == "ok"
        assert rows[variant, "tensorflow"]["compile"] == "default"  # a bare --compile
    assert "compilation time is in first call ms" in result.stdout


def test_out_of_memory_in_one_cell_leaves_the_others(fakes):
    fakes["tensorflow"]["fail"] = MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n"
                                              "(details on the next lines)")
    result = invoke(*FAST, "--variant", "fcn8s", "--size", "8x8")
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("fcn8s")]
    assert "ok" in lines[0] and "FAILED [e1]" in lines[1]
    assert "[e1] MemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in result.stdout
    assert "details on the next lines" not in result.output


def test_fake_cuda_device_gets_gpu_defaults_both_modes_and_allocator_memory(fakes, tmp_path):
    for name in ("torch", "tensorflow"):
        fakes[name].update(device="cuda", capability="9.0")
    out = tmp_path / "lat.json"
    result = invoke("--device", "cuda", "--variant", "fcn32s", "--size", "8x8", "--min-time",
                    "0", "--iters", "3", "--width-divisor", "64", "--precision", "bf16",
                    "--output", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert [(r["backend"], r["mode"]) for r in record["rows"]] == [
        ("torch", "model"), ("torch", "end-to-end"), ("tensorflow", "model"),
        ("tensorflow", "end-to-end")]
    for row in record["rows"]:
        assert row["device"] == "cuda" and row["precision"] == "bf16"
        assert row["peak_memory_bytes"] == 3 * 2**20
        assert row["warmup_count"] >= policy_for("cuda").warmup.min_samples
    assert list(record["options"]["policies"]) == ["cuda"]


# ----------------------------------------------------------------------------------------------
# ... and once per real backend


def _real_backend_or_skip(name: str) -> None:
    pytest.importorskip(name)
    reason = backends.unavailable_reason(name)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("name", ["torch", "tensorflow"])
def test_real_backend_smoke_run(name, tmp_path):
    _real_backend_or_skip(name)
    out = tmp_path / "lat.json"
    # One thread: on a shared 2-core machine two OpenMP threads spin against other processes.
    # --device cpu: the test must not depend on whether the machine has a GPU.
    result = invoke("--backend", name, "--device", "cpu", "--variant", "fcn32s", "--size", "8x8",
                    "--iters", "2", "--warmup", "1", "--min-time", "0", "--mode", "both",
                    "--width-divisor", "32", "--threads", "1", "--output", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    for row in record["rows"]:
        assert row["status"] == "ok" and row["device"] == "cpu"
        assert len(row["samples_ms"]) == 2 and all(s > 0 for s in row["samples_ms"])
        assert row["first_call_ms"] > 0 and row["gflops"] > 0
    env = record["environment"]["backends"][name]
    assert env["framework_version"] and env["precision"] == "fp32"
    # The roofline: the device's peak measured once, every row placed against it.
    assert env["ceilings"]["matmul_tflops"] > 0
    for row in record["rows"]:
        assert row["peak_tflops"] == env["ceilings"]["matmul_tflops"]
        assert row["compute_floor_ms"] == pytest.approx(row["gflops"] / row["peak_tflops"])
        assert row["percent_of_peak"] == pytest.approx(
            100 * row["gflops"] / row["p50_ms"] / row["peak_tflops"])
    if name == "tensorflow" and env.get("threads_note"):
        # TF fixes its thread pools when it first runs (earlier tests in this process): the
        # request cannot apply, and the record must say so rather than claim 1 thread.
        assert "already initialised" in env["threads_note"] and env["intra_op_threads"] != 1
    else:
        assert env["intra_op_threads"] == 1


@pytest.mark.slow
def test_full_width_vgg16_both_backends_interleaved(tmp_path):
    for name in ("torch", "tensorflow"):
        _real_backend_or_skip(name)
    out = tmp_path / "lat.json"
    result = invoke("--variant", "fcn8s", "--size", "8x8", "--iters", "2", "--warmup", "0",
                    "--min-time", "0", "--threads", "1", "--output", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["backend"] for r in rows] == ["torch", "tensorflow"]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["gflops"] == pytest.approx(build_spec("fcn8s").flops(8, 8) / 1e9)


def test_real_torch_asked_for_a_missing_gpu_gives_failed_rows_not_a_crash(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = invoke("--backend", "torch", "--device", "cuda", "--variant", "fcn32s", "--size",
                    "8x8", "--width-divisor", "32", "--iters", "1")
    assert result.exit_code == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("fcn32s")]
    assert len(rows) == 2  # --device cuda: both modes by default
    assert all("FAILED [e1]" in row for row in rows)
    assert "[e1] device 'cuda' requested" in result.stdout
    assert "Traceback" not in result.output


def test_host_line_warns_when_other_processes_load_the_machine():
    from bench.perf.latency import LatencyRun
    from bench.perf.report import host_line

    def run_with(start: float, end: float) -> LatencyRun:
        def host(load: float) -> dict:
            return {"cpu_model": "Xeon", "usable_cpus": 2, "load_average_1_5_15": [load] * 3}

        return LatencyRun([], {}, "all cells", {}, host(start), host(end))

    assert "competed" not in host_line(run_with(0.3, 2.0))  # the run's own two threads
    assert "load average 0.3 at start, 2.0 at end" in host_line(run_with(0.3, 2.0))
    assert "competed" in host_line(run_with(1.5, 2.0))  # busy before it started
    assert "competed" in host_line(run_with(0.3, 3.5))


# ----------------------------------------------------------------------------------------------
# Progress, console width, outputs all-or-none, memory budget, interruption, worker processes


def test_progress_starts_before_the_first_setup_and_its_estimate_converges():
    clock, log = FakeClock(), []
    events: list[tuple[float, float, str]] = []
    cells = [ScriptedCell(name, [100], clock, log) for name in "ab"]
    p = policy(min_warm=2, max_warm=2, window=2, iters=3)
    run_rounds(cells, lambda cell: p, clock=clock,
               progress=lambda done, left, text: events.append((done, left, text)),
               guess_policy=p, guess_call_s=0.1, label=lambda cell: cell.name)
    assert events[0][2] == "setting up a (1/2)" and events[0][0] == 0  # before any work
    assert events[-1] == (pytest.approx(1.2), 0.0, "done")  # 2 x (1 + 2 + 3) x 100 ms
    # Once every cell has been called once, the estimate plus the time spent is exact.
    seen = [done + left for done, left, text in events if "round" in text]
    assert seen and all(total == pytest.approx(1.2) for total in seen)


def test_estimator_counts_the_minimums_of_both_phases():
    from bench.perf.progress import remaining_calls

    p = policy(min_warm=3, max_warm=10, window=2, iters=5, min_time=2.0)
    fresh = CellResult()
    assert remaining_calls(fresh, p, 0.1) == 3 + 20  # min time binds: 2 s / 0.1 s
    assert remaining_calls(fresh, p, 1.0) == 3 + 5  # the count binds
    done = CellResult(warmup_ns=[MS] * 3, samples_ns=[10**9] * 5)
    assert remaining_calls(done, p, 1.0) == 0


def _many_rows_args():
    return [*FAST, "--size", "8x8", "--size", "6x10", "--mode", "both", "--batch", "2"]


def test_default_console_table_fits_120_columns_and_wide_keeps_everything(fakes):
    fakes["tensorflow"]["fail"] = RuntimeError("x" * 400 + " a very long framework error")
    result = invoke(*_many_rows_args())
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)
    assert "FAILED [e1]" in result.stdout and "[e1] RuntimeError: xxx" in result.stdout
    assert "all rows: device cpu, precision fp32" in lines[0]  # said once, not per row
    wide = invoke(*_many_rows_args(), "--wide")
    header = next(line for line in wide.stdout.splitlines() if line.startswith("variant"))
    for column in ("p99 ms", "std ms", "GFLOP/s", "device", "precision", "error"):
        assert column in header
    assert max(len(line) for line in wide.stdout.splitlines()) > 120


def test_outputs_are_all_written_or_none_on_a_full_disk(fakes, tmp_path, monkeypatch):
    import errno

    import bench.perf.report as report

    first, second = tmp_path / "lat.json", tmp_path / "sub" / "lat.md"
    first.write_text("previous run")
    real_write = report._write_file

    def full_disk(path, data):
        if ".lat.md." in path:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(report, "_write_file", full_disk)
    result = invoke(*FAST, "--variant", "fcn32s", "--size", "8x8", "--output", str(first),
                    "--output", str(second))
    assert result.exit_code == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {second}: cannot write the latency results")
    assert "no output was written" in message and "Traceback" not in result.output
    assert first.read_text() == "previous run"  # untouched: all or none
    assert not second.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["lat.json"]


@pytest.mark.parametrize("args", [["--batch", "3000000", "--size", "64x64"],
                                  ["--batch", "64", "--size", "16384x16384"]])
def test_a_cell_that_cannot_fit_is_refused_before_allocating(fakes, monkeypatch, args):
    # (Sides above 16384 px are usage errors of --size itself: tests/cli/test_cli_basics.py.)
    monkeypatch.setattr(backends, "create_backend", pytest.fail)  # nothing may be built
    monkeypatch.setattr(latency, "synthetic_batch", pytest.fail)
    result = invoke("--variant", "fcn32s", "--backend", "torch", *args)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: fcn32s at ") and "needs at least" in line
    assert "GiB of host memory" in line and "is available" in line
    assert "Traceback" not in result.output


def test_memory_estimate_follows_the_spec():
    from bench.model.budget import estimate_cell, peak_live_elements

    spec = build_spec("fcn32s")
    # conv1_1 -> conv1_2 at 500x500: two 64 x 698 x 698 blobs alive at once, at least.
    assert peak_live_elements(spec, 500, 500) >= 2 * 64 * 698 * 698
    one = estimate_cell(spec, 500, 500, 1, "fp32")
    four = estimate_cell(spec, 500, 500, 4, "fp32")
    assert four.activations_bytes == 4 * one.activations_bytes
    assert one.weights_bytes == 4 * spec.num_parameters()
    half = estimate_cell(spec, 500, 500, 1, "bf16")
    assert half.weights_bytes == one.weights_bytes // 2
    assert estimate_cell(spec, 500, 500, 1, "amp-bf16").weights_bytes == 6 * spec.num_parameters()


def test_a_cell_beyond_the_gpu_memory_is_a_failed_row_with_the_estimate(fakes, monkeypatch):
    monkeypatch.setattr(FakeBackend, "memory_capacity_bytes", lambda self: 2**20, raising=False)
    for name in ("torch", "tensorflow"):
        fakes[name].update(device="cuda", capability="9.0")
    result = invoke(*FAST, "--device", "cuda", "--variant", "fcn32s", "--size", "8x8",
                    "--mode", "model")
    assert result.exit_code == 1
    assert result.stdout.count("FAILED [e1]") == 2
    assert "needs at least" in result.stdout and "of cuda memory" in result.stdout


def test_ctrl_c_says_what_was_kept(fakes, tmp_path, monkeypatch):
    import bench.cli.latency as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "measure", interrupted)
    out = tmp_path / "lat.json"
    result = invoke(*FAST, "--variant", "fcn32s", "--size", "8x8", "--output", str(out))
    assert result.exit_code == 130
    assert "interrupted: no results were written" in result.stderr
    assert "checkpoint" not in result.output and not out.exists()


def _exit_hard(payload):
    import os

    os._exit(payload)


def _raise(payload):
    raise ValueError(payload)


def _square(payload):
    return payload * payload


def test_worker_process_results_errors_and_hard_exits():
    from bench.perf.worker import run_in_worker

    assert run_in_worker(_square, 7) == (49, None)
    result, error = run_in_worker(_raise, "compile failed", what="fcn8s/torch worker")
    assert result is None
    assert error == "fcn8s/torch worker process failed: ValueError: compile failed"
    result, error = run_in_worker(_exit_hard, 3, what="fcn8s/torch worker")
    assert result is None
    assert error.startswith("fcn8s/torch worker process died before reporting (exit code 3)")


def test_exit_status_in_words():
    from bench.perf.worker import exit_description

    assert exit_description(-11) == "killed by signal SIGSEGV"
    assert exit_description(1) == "exit code 1"


def test_isolated_cells_a_crashing_worker_is_a_failed_row_and_the_rest_runs(fakes, tmp_path,
                                                                         monkeypatch):
    import bench.cli.latency as command

    workers: list[tuple[str, str]] = []

    def fake_worker(target, payload, what="worker"):
        key = payload["keys"][0]
        workers.append((key.variant, key.backend))
        if (key.variant, key.backend) == ("fcn16s", "torch"):  # an illegal memory access
            return None, f"{what} process died before reporting (killed by signal SIGSEGV)"
        return target(payload), None  # in-process: the fakes are patched here

    monkeypatch.setattr(command, "run_in_worker", fake_worker)
    out = tmp_path / "lat.json"
    result = invoke(*FAST, "--variant", "fcn32s", "--variant", "fcn16s", "--size", "8x8",
                    "--compile", "max-autotune", "--isolate", "--output", str(out))
    assert result.exit_code == 1
    assert len(workers) == 4  # one per variant x backend
    record = json.loads(out.read_text())
    rows = {(r["variant"], r["backend"]): r for r in record["rows"]}
    assert rows["fcn16s", "torch"]["status"] == "failed"
    assert "killed by signal SIGSEGV" in rows["fcn16s", "torch"]["error"]
    assert rows["fcn16s", "torch"]["compile"] == "max-autotune"
    others = [row for key, row in rows.items() if key != ("fcn16s", "torch")]
    assert all(row["status"] == "ok" and row["samples_ms"] for row in others)
    assert record["options"]["interleaving"].startswith("one worker process per variant")


def test_compiled_cells_are_isolated_by_default_only_on_a_gpu(fakes, monkeypatch):
    import bench.cli.latency as command

    calls: list[str] = []
    monkeypatch.setattr(command, "run_in_worker",
                        lambda target, payload, what="": (calls.append(what),
                                                          (target(payload), None))[1])
    assert invoke(*FAST, "--variant", "fcn32s", "--size", "8x8", "--compile").exit_code == 0
    assert calls == []  # CPU: one process, interleaved
    for name in ("torch", "tensorflow"):
        fakes[name].update(device="cuda", capability="9.0")
    assert invoke(*FAST, "--device", "cuda", "--variant", "fcn32s", "--size", "8x8",
                  "--compile", "--mode", "model").exit_code == 0
    assert len(calls) == 2


def test_roofline_fields_and_ceilings_on_a_fake_clock():
    from bench.perf.roofline import measure_ceilings, roofline_fields

    fields = roofline_fields(363.0, 14.7, {"matmul_tflops": 51.1})
    assert fields["compute_floor_ms"] == pytest.approx(363 / 51.1)
    assert fields["achieved_tflops"] == pytest.approx(363 / 14.7)
    assert fields["percent_of_peak"] == pytest.approx(100 * (363 / 14.7) / 51.1)
    assert set(roofline_fields(363.0, None, None).values()) == {None}
    clock = FakeClock()

    def step(ms):
        def operation():
            clock.now += int(ms * MS)
        return operation

    ceilings = measure_ceilings("cpu", "float32", step(2.0), step(4.0), lambda value: None,
                                matmul_n=1000, copy_bytes=10**9, clock=clock)
    assert ceilings["matmul_tflops"] == pytest.approx(2e9 / 2e-3 / 1e12)
    assert ceilings["copy_gb_per_s"] == pytest.approx(2 * 10**9 / 4e-3 / 1e9)


def test_real_isolated_worker_returns_its_rows(tmp_path):
    """The real spawn path: a fresh interpreter builds the backend and sends plain rows back."""
    _real_backend_or_skip("torch")
    out = tmp_path / "lat.json"
    result = invoke("--backend", "torch", "--device", "cpu", "--variant", "fcn32s", "--size",
                    "8x8", "--width-divisor", "32", "--iters", "2", "--warmup", "0",
                    "--min-time", "0", "--threads", "1", "--isolate", "--output", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    (row,) = record["rows"]
    assert row["status"] == "ok" and len(row["samples_ms"]) == 2
    assert record["options"]["isolate"] is True
    assert record["environment"]["backends"]["torch"]["ceilings"]["matmul_tflops"] > 0


# ----------------------------------------------------------------------------------------------
# Every model of the zoo (docs/latency.md "Every model of the zoo")


def test_a_named_model_is_timed_at_its_data_sets_typical_size(fakes, tmp_path):
    out = tmp_path / "lat.json"
    result = invoke(*FAST, "--backend", "torch", "--variant", "siftflow-fcn16s", "--variant",
                    "nyud-fcn32s-color", "--variant", "pascalcontext-fcn8s", "--variant",
                    "ade20k-fcn8s", "--variant", "voc-fcn8s", "--output", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert [(r["variant"], r["size"]) for r in record["rows"]] == [
        ("siftflow-fcn16s", "256x256"), ("nyud-fcn32s-color", "425x560"),
        ("pascalcontext-fcn8s", "375x500"), ("ade20k-fcn8s", "384x384"),
        ("voc-fcn8s", "500x500")]
    assert record["options"]["sizes"] == ["256x256", "425x560", "375x500", "384x384", "500x500"]
    # The table names the model and its input size; voc-fcn8s gets FCN-8s's published time.
    assert "siftflow-fcn16s" in result.stdout and "425x560" in result.stdout
    assert record["rows"][-1]["paper_latency_ms"] == 175
    # --size still wins over the typical size; the default matrix stays VOC at 500x500.
    result = invoke(*FAST, "--backend", "torch", "--variant", "ade20k-fcn8s", "--size", "8x8",
                    "--output", str(out))
    assert result.exit_code == 0, result.output
    assert [r["size"] for r in json.loads(out.read_text())["rows"]] == ["8x8"]


def test_every_zoo_name_is_a_latency_variant():
    from bench.cli.latency import command
    from bench.model.spec import MODEL_NAMES

    option = next(p for p in command.params if p.name == "variants")
    assert set(MODEL_NAMES) <= set(option.type.choices)


def test_alexnet_paper_time_is_beside_its_500x500_row():
    from bench.cli.latency import paper_of

    paper = paper_of("voc-fcn-alexnet")
    assert paper["latency_ms"] == 50 and "Table 1" in paper["source"]
    assert paper_for(CellKey("voc-fcn-alexnet", "torch", "model", 500, 500), paper) is paper
    assert paper_of("fcn8s") == paper_of("voc-fcn8s")
    assert paper_of("ade20k-fcn8s") is None


def test_synthetic_inputs_one_per_named_input_with_its_channels():
    single = latency.synthetic_batch(8, 6, 2, 0)
    assert single.shape == (2, 3, 8, 6) and single.dtype == np.float32
    spec = build_spec("nyud-fcn32s-color-d")
    from bench.cli.latency import input_shape

    pair = latency.synthetic_batch(8, 6, 2, 0, input_shape(spec))
    assert {k: v.shape for k, v in pair.items()} == {"color": (2, 3, 8, 6),
                                                     "depth": (2, 1, 8, 6)}
    assert all(v.dtype == np.float32 for v in pair.values())
    again = latency.synthetic_batch(8, 6, 2, 0, input_shape(spec))
    assert all(np.array_equal(pair[k], again[k]) for k in pair)  # deterministic per seed


def test_memory_estimate_counts_every_input_and_every_head():
    from bench.model.budget import estimate_cell, peak_live_elements

    # Late fusion reads "color" and "hha" (no "data" blob): both count while read.
    hha = build_spec("nyud-fcn32s-color-hha", width_divisor=16)
    assert peak_live_elements(hha, 32, 32) >= 2 * 3 * 32 * 32
    assert estimate_cell(hha, 32, 32, 1, "fp32").input_bytes == 6 * 32 * 32 * 4
    early = build_spec("nyud-fcn32s-color-d", width_divisor=16)
    assert estimate_cell(early, 32, 32, 1, "fp32").input_bytes == 4 * 32 * 32 * 4
    # SIFT Flow hands back 33 semantic + 3 geometric score maps.
    two = build_spec("siftflow-fcn8s", width_divisor=16)
    one = build_spec("fcn8s", num_classes=33, width_divisor=16)
    difference = (estimate_cell(two, 32, 32, 1, "fp32").activations_bytes
                  - estimate_cell(one, 32, 32, 1, "fp32").activations_bytes)
    assert difference >= 3 * 32 * 32 * 4


def _conv_out(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _pool_out(size: int, kernel: int = 3, stride: int = 2) -> int:
    return -(-(size - kernel) // stride) + 1  # Caffe pools round up


def test_alexnet_flops_match_a_hand_count():
    """FCN-AlexNet at 500x500, counted from CaffeNet's layer table by hand (2 FLOPs per
    multiply-add; a grouped conv sees in/group channels per output); LRN, pooling, ReLU, Crop
    are not multiply-adds and are not counted (docs/latency.md)."""
    s1 = _conv_out(500, 11, 4, 100)  # conv1: 173
    p1 = _pool_out(s1)  # 86
    p2 = _pool_out(_conv_out(p1, 5, 1, 2))  # conv2 86 -> pool2 43
    p5 = _pool_out(p2)  # conv3..5 keep 43 -> pool5 21
    f = _conv_out(p5, 6)  # fc6 6x6 valid: 16
    assert (s1, p1, p2, p5, f) == (173, 86, 43, 21, 16)
    convs = [  # (in channels, out, kernel, group, output side)
        (3, 96, 11, 1, s1), (96, 256, 5, 2, p1), (256, 384, 3, 1, p2), (384, 384, 3, 2, p2),
        (384, 256, 3, 2, p2), (256, 4096, 6, 1, f), (4096, 4096, 1, 1, f), (4096, 21, 1, 1, f)]
    hand = sum(2 * (cin // group) * k * k * cout * side * side
               for cin, cout, k, group, side in convs)
    hand += 2 * 21 * 63 * 63 * 21 * f * f  # upscore: 63x63 deconvolution of 21 channels
    assert get_flops("voc-fcn-alexnet") == hand


def get_flops(name: str) -> int:
    return build_spec(name).flops(500, 500)


ZOO_FAMILIES = ["voc-fcn8s-atonce", "voc-fcn-alexnet", "nyud-fcn32s-color-d",
                "nyud-fcn32s-color-hha", "siftflow-fcn16s", "pascalcontext-fcn32s",
                "ade20k-fcn8s"]


def test_one_model_of_each_family_runs_in_both_backends(tmp_path):
    """Narrow nets at 32x32: early and late fusion (two named inputs), SIFT Flow's two heads
    (one forward; end-to-end brings both heads' labels back), AlexNet's grouped conv and LRN."""
    for name in ("torch", "tensorflow"):
        _real_backend_or_skip(name)
    out = tmp_path / "lat.json"
    args = [arg for model in ZOO_FAMILIES for arg in ("--variant", model)]
    result = invoke(*args, "--device", "cpu", "--size", "32x32", "--iters", "1", "--warmup",
                    "0", "--min-time", "0", "--mode", "both", "--width-divisor", "16",
                    "--threads", "1", "--output", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["variant"], r["backend"], r["mode"]) for r in rows] == [
        (v, b, m) for v in ZOO_FAMILIES for b in ("torch", "tensorflow")
        for m in ("model", "end-to-end")]
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["size"] == "32x32" and len(row["samples_ms"]) == 1
        assert row["gflops"] == pytest.approx(
            build_spec(row["variant"], width_divisor=16).flops(32, 32) / 1e9)
