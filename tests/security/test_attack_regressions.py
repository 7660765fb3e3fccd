"""Regression tests for the failures an attack campaign found (issue 10), one per class."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.ci import record_rows
from bench.ci.gates import parse_gate
from bench.ci.judge import OK, CompareOptions, _judge_number
from bench.ci.record_files import RecordError
from bench.ci.record_rows import Row, load_side
from bench.ci.speed_stats import bootstrap_delta_interval
from bench.cli.app import cli
from bench.core.errors import FcnBenchError, UsageError, printable
from bench.perf.latency import CellResult, TimingPolicy
from bench.perf.policy import WarmupPolicy
from bench.perf.progress import MAX_CALLS, remaining_calls


def _latency_record(path: Path, p50: object, samples: object = None, utc_time: object = "t"
                    ) -> Path:
    row = {"variant": "fcn8s", "backend": "torch", "device": "cpu", "precision": "fp32",
           "size": [64, 64], "batch": 1, "status": "ok", "p50_ms": p50}
    if samples is not None:
        row["samples_ms"] = samples
    record = {"schema_version": 1, "kind": "latency", "provenance": {"utc_time": utc_time},
              "rows": [row]}
    # Python's json writes NaN/Infinity literals, as an attacker's file would hold them.
    path.write_text(json.dumps(record))
    return path


# -- F3 / W1 / W2 / W10: non-finite or absurd values in records -------------------------------

@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_metric_is_a_malformed_record(tmp_path, value):
    path = _latency_record(tmp_path / "cur.json", value)
    with pytest.raises(RecordError, match=r"'p50_ms'.*not a finite number"):
        load_side(path)


def test_nan_current_is_judged_a_regression(tmp_path):
    base = _latency_record(tmp_path / "base.json", 10.0)
    cur = _latency_record(tmp_path / "cur.json", math.nan)
    result = CliRunner().invoke(cli, ["compare", str(base), str(cur)])
    assert result.exit_code != 0 and "REGRESSION" in result.output


def test_infinite_current_never_passes_the_gate(tmp_path):
    base = _latency_record(tmp_path / "base.json", 10.0)
    cur = _latency_record(tmp_path / "cur.json", math.inf)
    result = CliRunner().invoke(cli, ["compare", str(base), str(cur)])
    assert result.exit_code != 0
    assert "ok" not in result.output.split("error:")[0]
    assert "cur.json" in result.output and "p50_ms" in result.output


@pytest.mark.parametrize("samples", [[math.nan] * 10, [1.0, 1e308, 2.0], [1.0, -5.0],
                                     [1.0, "x"]])
def test_bad_samples_are_a_malformed_record(tmp_path, samples):
    path = _latency_record(tmp_path / "r.json", 1.0, samples)
    with pytest.raises(RecordError, match="samples_ms"):
        load_side(path)


def test_sample_count_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(record_rows, "MAX_SAMPLES", 10)
    path = _latency_record(tmp_path / "r.json", 1.0, [1.0] * 11)
    with pytest.raises(RecordError, match="11 samples"):
        load_side(path)


@pytest.mark.parametrize("utc_time", [5, [1], {"a": 1}])
def test_wrong_type_of_utc_time_names_the_field(tmp_path, utc_time):
    path = _latency_record(tmp_path / "r.json", 1.0, utc_time=utc_time)
    with pytest.raises(RecordError, match=r"provenance\.utc_time"):
        load_side(path)


def test_pytest_benchmark_nan_mean_is_malformed(tmp_path):
    doc = {"machine_info": {}, "benchmarks": [{"name": "b", "stats": {"mean": math.nan}}]}
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RecordError, match=r"stats\.mean"):
        load_side(path)


def test_overflowing_difference_is_not_ok():
    row = Row(kind="latency", identity=(), metrics={}, source="s", schema="x")
    gate = parse_gate("p50_ms:+10%")
    finding = _judge_number("p50_ms", -1e308, 1e308, gate, (), row, row, CompareOptions())
    assert finding.verdict != OK


# -- F4: confidence validated in the library ---------------------------------------------------

@pytest.mark.parametrize("confidence", [math.nan, math.inf, 0.0, 1.0, -0.5, 2.0])
def test_bad_confidence_is_refused(confidence):
    samples = np.ones(10)
    with pytest.raises(UsageError, match="confidence"):
        bootstrap_delta_interval(samples, samples, np.median, confidence=confidence)
    with pytest.raises(UsageError, match="confidence"):
        CompareOptions(confidence=confidence)


# -- F2/F1: the progress estimate on a non-finite time budget ---------------------------------

def test_remaining_calls_bounded_on_non_finite_call_time():
    policy = TimingPolicy(WarmupPolicy(0, 0, 1, 0.05), min_iters=1, min_time_s=1.0)
    result = CellResult()
    assert remaining_calls(result, policy, math.nan) == MAX_CALLS
    assert remaining_calls(result, policy, 0.0) == MAX_CALLS
    assert remaining_calls(result, policy, 1e-300) == MAX_CALLS


@pytest.mark.parametrize("budget", [math.inf, math.nan, -1.0])
def test_timing_policy_refuses_non_finite_budget(budget):
    with pytest.raises(UsageError, match="finite"):
        TimingPolicy(WarmupPolicy(0, 0, 1, 0.05), min_iters=1, min_time_s=budget)


# -- F11: over-long values in messages and split ids ------------------------------------------

def test_printable_shortens_a_huge_value():
    text = printable("x: " + "a" * 10_000_000 + " missing")
    assert len(text) < 400
    assert text.startswith("x: aaa") and text.endswith(" missing") and "..." in text


def test_over_long_split_id_is_refused(tmp_path):
    from bench.data.id_lists import read_id_list
    path = tmp_path / "split.txt"
    path.write_text("2007_000033\n" + "a" * 100_000 + "\n")
    with pytest.raises(FcnBenchError, match="id number 2 is 100,000 characters"):
        read_id_list(path)


def test_infinite_gate_bound_is_refused():
    with pytest.raises(UsageError, match="finite"):
        parse_gate("p50_ms:+1e400")


# -- W6 / history: unknown metrics and undefined values -----------------------------------------

def _eval_record(path: Path, mean_iou: object) -> Path:
    record = {"schema_version": 1, "kind": "evaluate", "variant": "fcn8s", "backend": "torch",
              "split": "seg11valid", "provenance": {"utc_time": "2026-01-01T00:00:00Z"},
              "metrics": {"mean_iou": mean_iou, "pixel_accuracy": 0.9}}
    path.write_text(json.dumps(record))
    return path


def test_history_refuses_an_unknown_metric(tmp_path):
    _eval_record(tmp_path / "a.json", 0.6)
    result = CliRunner().invoke(cli, ["history", str(tmp_path), "--metric", "nosuch"])
    assert result.exit_code != 0
    assert "nosuch" in result.output and "mean_iou" in result.output


def test_history_marks_an_undefined_value(tmp_path):
    from bench.ci.history import UNDEFINED, load_history, render_history
    _eval_record(tmp_path / "a.json", None)  # strict JSON writes NaN as null
    text = render_history(load_history(tmp_path, ["mean_iou", "pixel_accuracy"]))
    assert UNDEFINED in text


# -- F7/F10: forward memory estimated before allocating; F8: framework OOM mapped --------------

def test_parity_refuses_a_size_that_cannot_fit(monkeypatch):
    import bench.model.memory
    monkeypatch.setattr(bench.model.memory, "available_memory_bytes", lambda: 1 << 20)
    result = CliRunner().invoke(cli, ["parity", "--backends", "torch,reference", "--device",
                                      "cpu", "--size", "512x512", "--width-divisor", "16"])
    assert result.exit_code != 0
    assert "needs at least" in result.output and "GiB" in result.output
    assert "Traceback" not in result.output


def test_parity_refuses_the_same_backend_twice():
    result = CliRunner().invoke(cli, ["parity", "--backends", "torch,torch", "--size", "8x8"])
    assert result.exit_code == 2 and "twice" in result.output


def test_forward_estimate_refuses_beyond_available_memory():
    from bench.model.budget import MemoryBudgetError
    from bench.model.memory import check_forward_memory, forward_bytes
    from bench.model.spec import build_spec
    needed = forward_bytes(build_spec("fcn8s"), 5000, 7000)
    assert needed > 20 * 2**30  # two 64-channel blobs of the padded conv1 alone are ~19 GiB
    with pytest.raises(MemoryBudgetError, match="use a smaller image"):
        check_forward_memory("fcn8s on a photo", needed, "cpu", available=2**30)
    check_forward_memory("fcn8s on a photo", needed, "cuda", available=2**30)  # GPU: its own


@pytest.mark.parametrize("message", ["[enforce fail at alloc_cpu.cpp:118] . DefaultCPUAllocator: "
                                     "can't allocate memory: you tried to allocate 1 bytes",
                                     "CUDA out of memory. Tried to allocate 2.00 GiB"])
def test_framework_allocation_failure_is_one_line(monkeypatch, message):
    import bench.cli.history as history_command

    def boom(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(history_command, "load_history", boom)
    result = CliRunner().invoke(cli, ["history", "."])
    assert result.exit_code == 1
    assert result.output.startswith("error: out of memory") and result.output.count("\n") == 1


# -- W8 / W9: what a path or an image really is --------------------------------------------------

def test_device_and_folder_are_not_called_missing(tmp_path):
    from bench.data.labels import open_image
    with pytest.raises(FcnBenchError, match=r"not a regular file \(a device\)"):
        open_image("/dev/zero")
    link = tmp_path / "label.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(FcnBenchError, match=r"a device"):
        open_image(link)
    with pytest.raises(FcnBenchError, match="is a folder"):
        open_image(tmp_path)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.float32])
def test_wide_sample_images_are_not_photos(tmp_path, dtype):
    from PIL import Image

    from bench.data.voc import load_image
    path = tmp_path / "x.tif"
    Image.fromarray(np.arange(16, dtype=dtype).reshape(4, 4)).save(path)
    with pytest.raises(FcnBenchError, match="mode"):
        load_image(path)


# -- F9: the golden baseline is validated before any work ------------------------------------

@pytest.mark.parametrize("content", ['{"a": ' + "[" * 5000, json.dumps(
    {"schema_version": 1, "kind": "latency", "rows": []}), json.dumps(
    {"schema_version": 1, "kind": "golden", "suite": {"seed": -1}, "rows": []})])
def test_golden_checks_its_baseline_before_running(tmp_path, monkeypatch, content):
    import bench.cli.golden as golden_command

    def never(*args, **kwargs):
        raise AssertionError("the suite ran before the baseline was checked")

    monkeypatch.setattr(golden_command, "run_golden", never)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(content)
    result = CliRunner().invoke(cli, ["golden", "--baseline", str(baseline)])
    assert result.exit_code in (1, 2), result.output
    assert result.output.startswith("error: ") and "baseline" in result.output


# -- W3 / W6: option values that mean nothing ---------------------------------------------------

@pytest.mark.parametrize("args, fragment", [(["--iters", "0", "--val-limit", "0"],
                                             "scores nothing"),
                                            (["--lr", "-1"], "--lr"),
                                            (["--lr", "0"], "--lr")])
def test_train_refuses_meaningless_values(tmp_path, args, fragment):
    result = CliRunner().invoke(cli, ["train", "--variant", "fcn32s", "--init", "random",
                                      "--data-root", str(tmp_path), *args])
    assert result.exit_code == 2 and fragment in result.output, result.output


def test_evaluate_refuses_an_unknown_model_before_work(tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", "nyud", "--model", "bogus",
                                      "--predictions", str(tmp_path), "--data-root",
                                      str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "bogus" in result.output and "nyud-fcn32s-color" in result.output


# -- W7: extraction bounded by the archive's size ---------------------------------------------

def _sparse_bomb(tmp_path: Path, size: int) -> Path:
    """A tiny .tar.gz whose one member declares `size` zero bytes (compresses ~1000:1)."""
    import tarfile
    member = tmp_path / "zeros.bin"
    with open(member, "wb") as handle:
        handle.truncate(size)
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(member, arcname="nyud/zeros.bin")
    member.unlink()
    return archive


def test_extraction_refuses_a_member_beyond_the_bound_before_writing(tmp_path, monkeypatch):
    from bench.downloads import extract
    monkeypatch.setattr(extract, "MIN_EXTRACT_BYTES", 1 << 20)
    archive = _sparse_bomb(tmp_path, 64 << 20)  # 64 MiB of zeros in a ~64 KB archive
    dest = tmp_path / "out"
    with pytest.raises(FcnBenchError, match="declares 67,108,864 bytes"):
        extract.safe_extract(archive, dest, root="nyud")
    assert not any(p.is_file() for p in dest.rglob("*"))  # nothing written, staging removed


def test_zip_extraction_is_bounded_too(tmp_path):
    import zipfile

    from bench.downloads.extract import safe_extract
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/x.bin", b"\0" * 100_000)
    with pytest.raises(FcnBenchError, match="declares 100,000 bytes"):
        safe_extract(archive, tmp_path / "out", max_bytes=10_000)


# -- F7 in loops: reproduce/evaluate check every new image size before its forward -------------

def test_run_evaluation_refuses_an_image_too_large_for_memory(tmp_path, monkeypatch):
    import bench.model.memory
    from bench.data.synthetic import make_voc
    from bench.data.voc import resolve_split
    from bench.evaluation.runner import run_evaluation
    from bench.model.budget import MemoryBudgetError
    from bench.model.spec import build_spec

    make_voc(tmp_path, num_images=2, seed=3)
    dataset = resolve_split(tmp_path, "trainval")

    class Backend:
        name, device, spec = "fake", "cpu", build_spec("fcn8s", width_divisor=16)

        def predict_labels(self, images):
            raise AssertionError("the forward ran before the memory check")

    monkeypatch.setattr(bench.model.memory, "available_memory_bytes", lambda: 1 << 20)
    with pytest.raises(MemoryBudgetError, match=f"image {dataset.ids[0]}.*remove or shrink"):
        run_evaluation(dataset, Backend(), progress=False)


def test_training_step_memory_is_checked_per_image_size(monkeypatch):
    import bench.model.memory
    from bench.model.budget import MemoryBudgetError
    from bench.model.memory import ImageMemoryCheck
    from bench.model.spec import build_spec

    monkeypatch.setattr(bench.model.memory, "available_memory_bytes", lambda: 64 << 20)
    fits = ImageMemoryCheck(build_spec("fcn32s", width_divisor=16), "cpu", training=True)
    fits(32, 32, "small")  # a few MB: fits
    with pytest.raises(MemoryBudgetError, match="training on the 3000x2000 image big"):
        fits(2000, 3000, "big")
    ImageMemoryCheck(build_spec("fcn32s"), "cuda:0", training=True)(2000, 3000)  # GPU: its own


def test_an_id_of_250_characters_is_still_an_id(tmp_path):
    from bench.data.id_lists import read_id_list
    path = tmp_path / "split.txt"
    path.write_text("a" * 250 + "\n")
    assert read_id_list(path) == ["a" * 250]
