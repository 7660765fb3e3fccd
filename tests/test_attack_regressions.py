"""Regression tests for the failures an attack campaign found (issue 10), one per class."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench import compare
from bench.compare import CompareOptions, RecordError, bootstrap_delta_interval, load_side
from bench.errors import FcnBenchError, UsageError, printable
from bench.latency import CellResult, TimingPolicy, WarmupPolicy
from bench.latency_progress import MAX_CALLS, remaining_calls
from cli import cli


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

@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_metric_is_a_malformed_record(tmp_path, value):
    path = _latency_record(tmp_path / "cur.json", value)
    with pytest.raises(RecordError, match=r"'p50_ms'.*not a finite number"):
        load_side(path)


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
    monkeypatch.setattr(compare, "MAX_SAMPLES", 10)
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
    row = compare.Row(kind="latency", identity=(), metrics={}, source="s", schema="x")
    gate = compare.parse_gate("p50_ms:+10%")
    finding = compare._judge_number("p50_ms", -1e308, 1e308, gate, (), row, row,
                                    CompareOptions())
    assert finding.verdict != compare.OK


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
    from bench.voc import read_id_list
    path = tmp_path / "split.txt"
    path.write_text("2007_000033\n" + "a" * 100_000 + "\n")
    with pytest.raises(FcnBenchError, match="id number 2 is 100,000 characters"):
        read_id_list(path)


def test_infinite_gate_bound_is_refused():
    with pytest.raises(UsageError, match="finite"):
        compare.parse_gate("p50_ms:+1e400")
