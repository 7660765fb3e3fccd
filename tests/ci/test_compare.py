"""`compare`: row matching, gates on the command line, noise-aware speed verdicts, inputs and exit
codes (bench/ci/record_rows.py, judge.py, regression_table.py through the command).

Records are built with the producers' own functions (bench.evaluation.metrics.evaluation_record,
bench.perf.latency.make_row, bench.perf.report.make_latency_record), so the tests also pin the
record layout that compare consumes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bench.ci import record_rows
from bench.ci.gates import load_tolerances
from bench.ci.judge import IMPROVED, REGRESSION, compare_paths
from bench.ci.record_rows import load_side
from bench.ci.regression_table import render
from bench.cli.app import cli
from bench.core.atomic import write_json
from bench.core.records import make_record
from bench.evaluation.metrics import ConfusionMatrix, evaluation_record
from bench.perf.latency import CellKey, CellResult, LatencyRun, make_row
from bench.perf.report import make_latency_record

RNG_SAMPLES = 60


def latency_record(cells: dict[str, list[float]], *, calibration_ms: float | None = None,
                   status: dict[str, str] | None = None) -> dict:
    """A real latency record: one model-mode cell per variant with these samples (ms)."""
    rows = []
    for variant, samples_ms in cells.items():
        key = CellKey(variant, "torch", "model", 64, 64, batch=1)
        result = CellResult(first_call_ns=1, samples_ns=[int(s * 1e6) for s in samples_ms])
        if status and variant in status:
            result = CellResult(error=status[variant])
        rows.append(make_row(key, result, device="cpu", precision="fp32", gflops=1.0))
    record = make_latency_record(LatencyRun(rows, {}, "all cells", {}), {})
    if calibration_ms is not None:
        record["calibration_ms"] = calibration_ms
    return record


def evaluate_record(mean_iou_shift: int = 0, **fields) -> dict:
    """A real evaluate record whose confusion matrix is shifted by `mean_iou_shift` pixels."""
    confusion = ConfusionMatrix()
    labels = np.repeat(np.arange(21, dtype=np.uint8), 100).reshape(21, 100)
    preds = labels.copy()
    preds[:, :10 + mean_iou_shift] = 0  # wrong predictions lower every class's IU
    confusion.update(labels, preds)
    return evaluation_record("seg11valid", confusion, 21, **fields)


def samples(median: float, seed: int, n: int = RNG_SAMPLES, spread: float = 0.03) -> list[float]:
    rng = np.random.default_rng(seed)
    return (median * rng.lognormal(0.0, spread, n)).round(4).tolist()


def run(args: list[str]):
    return CliRunner().invoke(cli, ["compare", *args])


def write(tmp_path, name: str, record: dict):
    path = tmp_path / name
    write_json(path, record)
    return str(path)


# -- gates on the command line (the gate parser: tests/ci/test_gates.py) -----------------------


def test_bad_tolerance_on_the_command_line_exits_2(tmp_path):
    base = write(tmp_path, "a.json", evaluate_record())
    result = run([base, base, "--tolerance", "mean_iou=-0.001"])
    assert result.exit_code == 2
    assert "bad tolerance 'mean_iou=-0.001'" in result.output
    assert "Traceback" not in result.output


# -- accuracy verdicts --------------------------------------------------------------------------


def test_accuracy_improvement_passes(tmp_path):
    base = write(tmp_path, "base.json", evaluate_record(mean_iou_shift=5))
    cur = write(tmp_path, "cur.json", evaluate_record(mean_iou_shift=0))
    result = run([base, cur])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("mean_iou")]
    assert lines and "improved" in lines[0]


def test_accuracy_regression_fails_with_the_whole_table(tmp_path):
    base = write(tmp_path, "base.json", evaluate_record(mean_iou_shift=0))
    cur = write(tmp_path, "cur.json", evaluate_record(mean_iou_shift=5))
    result = run([base, cur, "--format", "github"])
    assert result.exit_code == 1
    assert "| mean_iou" in result.output and "**REGRESSION**" in result.output
    assert "| pixel_accuracy" in result.output  # every gated metric, not just the first failure
    assert "failing checks" in result.output


# -- speed verdicts ---------------------------------------------------------------------------


def test_speed_regression_with_samples_is_significant(tmp_path):
    base = write(tmp_path, "base.json", latency_record({"fcn8s": samples(100, 1)}))
    cur = write(tmp_path, "cur.json", latency_record({"fcn8s": samples(130, 2)}))
    comparison = compare_paths(base, cur, load_tolerances())
    p50 = next(f for f in comparison.findings if f.metric == "p50_ms")
    assert p50.verdict == REGRESSION and "CI of Δ" in p50.note
    assert run([base, cur]).exit_code == 1


def test_speed_improvement_is_reported(tmp_path):
    base = write(tmp_path, "base.json", latency_record({"fcn8s": samples(100, 1)}))
    cur = write(tmp_path, "cur.json", latency_record({"fcn8s": samples(70, 2)}))
    comparison = compare_paths(base, cur, load_tolerances())
    assert {f.metric: f.verdict for f in comparison.findings}["p50_ms"] == IMPROVED
    assert not comparison.failed


def test_noise_from_one_distribution_is_inconclusive_not_a_regression(tmp_path):
    # Eight draws each from one lognormal (median 100 ms, sigma 0.35): the medians differ by
    # 14 %, beyond the 10 % gate, but the bootstrap interval of the difference includes 0.
    baseline = [79.6, 94.1, 179.0, 125.9, 56.3, 99.8, 80.4, 105.3]
    current = [57.0, 108.8, 108.6, 173.6, 111.7, 119.6, 59.3, 220.0]
    assert np.median(current) / np.median(baseline) > 1.10
    base = write(tmp_path, "base.json", latency_record({"fcn8s": baseline}))
    cur = write(tmp_path, "cur.json", latency_record({"fcn8s": current}))
    result = run([base, cur, "--tolerance", "p90_ms:info"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("p50_ms"))
    assert "inconclusive" in line and "includes 0" in line


def test_without_samples_a_speed_gate_is_a_plain_threshold(tmp_path):
    base_record = latency_record({"fcn8s": samples(100, 1)})
    cur_record = latency_record({"fcn8s": samples(130, 2)})
    for record in (base_record, cur_record):
        record["rows"][0]["samples_ms"] = None
    comparison = compare_paths(write(tmp_path, "a.json", base_record),
                                   write(tmp_path, "b.json", cur_record), load_tolerances())
    assert {f.metric: f.verdict for f in comparison.findings}["p50_ms"] == REGRESSION


def test_normalize_by_calibration_turns_times_into_ratios(tmp_path):
    # The candidate machine is 2x slower at everything, the calibration kernel included.
    base = write(tmp_path, "a.json", latency_record({"fcn8s": samples(100, 1)},
                                                    calibration_ms=5.0))
    cur = write(tmp_path, "b.json", latency_record({"fcn8s": samples(200, 2)},
                                                   calibration_ms=10.0))
    assert run([base, cur]).exit_code == 1
    result = run([base, cur, "--normalize-by", "calibration_ms"])
    assert result.exit_code == 0, result.output
    assert "normalised by each record's calibration_ms" in result.output
    missing = run([base, cur, "--normalize-by", "no_such_field"])
    assert missing.exit_code == 2 and "no_such_field" in missing.output


def test_a_cell_that_stopped_running_is_a_regression(tmp_path):
    base = write(tmp_path, "a.json", latency_record({"fcn8s": samples(100, 1)}))
    cur = write(tmp_path, "b.json", latency_record({"fcn8s": []},
                                                   status={"fcn8s": "CUDA out of memory"}))
    result = run([base, cur])
    assert result.exit_code == 1
    assert "CUDA out of memory" in result.output and "REGRESSION" in result.output


# -- rows on one side only, schemas, inputs -----------------------------------------------------


def test_missing_rows_fail_and_new_rows_are_info(tmp_path):
    both = latency_record({"fcn8s": samples(100, 1), "fcn16s": samples(90, 3)})
    one = latency_record({"fcn8s": samples(100, 2)})
    full, partial = write(tmp_path, "full.json", both), write(tmp_path, "partial.json", one)
    missing = run([full, partial])
    assert missing.exit_code == 1
    assert "row missing in current" in missing.output and "missing" in missing.output
    assert run([full, partial, "--allow-missing"]).exit_code == 0
    new = run([partial, full])
    assert new.exit_code == 0
    assert "new in current" in new.output


def test_newer_schema_version_exits_2(tmp_path):
    record = evaluate_record()
    record["schema_version"] = 99
    result = run([write(tmp_path, "a.json", evaluate_record()), write(tmp_path, "b.json", record)])
    assert result.exit_code == 2
    assert "schema_version 99 is newer" in result.output


def test_mismatched_schema_versions_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(record_rows, "SCHEMA_VERSION", 2)
    old, new = evaluate_record(), evaluate_record()
    new["schema_version"] = 2
    result = run([write(tmp_path, "a.json", old), write(tmp_path, "b.json", new)])
    assert result.exit_code == 2
    assert "schema mismatch" in result.output and "fcn-bench/1" in result.output


@pytest.mark.parametrize("content, problem", [("{not json", "not valid JSON"),
                                              ('{"hello": 1}', "neither an fcn-bench record")])
def test_unreadable_input_exits_2(tmp_path, content, problem):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = run([write(tmp_path, "a.json", evaluate_record()), str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output and problem in result.output


def test_folders_match_every_record_inside(tmp_path):
    for side, slow in (("base", 100), ("cur", 100)):
        folder = tmp_path / side
        write_json(folder / "latency.json", latency_record({"fcn8s": samples(slow, 1)}))
        write_json(folder / "nested" / "eval.json", evaluate_record())
        (folder / "tolerances.json").write_text('{"default": []}')  # not a record: skipped
    comparison = compare_paths(tmp_path / "base", tmp_path / "cur", load_tolerances())
    kinds = {dict(f.identity)["kind"] for f in comparison.findings}
    assert kinds == {"latency", "evaluate"}
    assert not comparison.failed
    assert any("skipped 1 JSON files" in note for note in comparison.notes)


def test_repeated_runs_in_a_folder_are_pooled(tmp_path):
    for index in range(3):  # e.g. interleaved A/B runs in one CI job
        write_json(tmp_path / "base" / f"{index}.json",
                   latency_record({"fcn8s": samples(100, index, n=10)}))
        write_json(tmp_path / "cur" / f"{index}.json",
                   latency_record({"fcn8s": samples(100, 10 + index, n=10)}))
    comparison = compare_paths(tmp_path / "base", tmp_path / "cur", load_tolerances())
    assert any("pooled" in note for note in comparison.notes)
    assert not comparison.failed


def test_reproduce_rows_inherit_the_record_identity(tmp_path):
    def reproduce(shift: int) -> dict:
        rows = []
        for backend in ("torch", "tensorflow"):
            row = evaluate_record(shift, backend=backend, device="cpu", variant="fcn8s")
            for key in ("schema_version", "kind", "provenance"):
                row.pop(key)
            rows.append({**row, "precision": "fp32", "verdict": "reproduced"})
        return make_record("reproduce", variant="fcn8s", split="seg11valid", num_images=21,
                           rows=rows)

    base, cur = write(tmp_path, "a.json", reproduce(0)), write(tmp_path, "b.json", reproduce(3))
    comparison = compare_paths(base, cur, load_tolerances())
    failing = {(dict(f.identity)["backend"], f.metric) for f in comparison.failures}
    assert ("torch", "mean_iou") in failing and ("tensorflow", "mean_iou") in failing
    assert all(dict(f.identity)["split"] == "seg11valid" for f in comparison.findings)


def pytest_benchmark_file(path, median_s: float, seed: int, with_data: bool = True):
    data = (np.asarray(samples(median_s, seed)) if with_data else None)
    stats = {"min": median_s * 0.9, "max": median_s * 1.2, "mean": median_s, "median": median_s,
             "stddev": median_s * 0.03, "rounds": RNG_SAMPLES, "iqr": median_s * 0.04,
             "ops": 1.0 / median_s}
    if with_data:
        stats["data"] = data.tolist()
        stats["median"] = float(np.median(data))
    doc = {"machine_info": {"node": "ci"}, "commit_info": {"id": "abc123", "dirty": False},
           "datetime": "2026-01-01T00:00:00", "version": "5.2.3",
           "benchmarks": [{"group": None, "name": "test_forward[fcn8s-torch]",
                           "fullname": "benchmarks/test_x.py::test_forward[fcn8s-torch]",
                           "params": {}, "extra_info": {"variant": "fcn8s", "backend": "torch",
                                                        "mean_iou": 0.65},
                           "options": {}, "stats": stats}]}
    path.write_text(json.dumps(doc))
    return str(path)


def test_pytest_benchmark_json_is_compared_in_milliseconds(tmp_path):
    base = pytest_benchmark_file(tmp_path / "0001_a.json", 0.100, 1)
    slow = pytest_benchmark_file(tmp_path / "0002_b.json", 0.150, 2)
    rows = load_side(base).rows
    assert rows[0].kind == "pytest-benchmark"
    assert dict(rows[0].identity)["benchmark"] == "test_forward[fcn8s-torch]"
    assert dict(rows[0].identity)["variant"] == "fcn8s"
    assert rows[0].metrics["p50_ms"] == pytest.approx(100, rel=0.05)
    assert rows[0].samples_ms is not None and rows[0].metrics["mean_iou"] == 0.65
    result = run([base, slow])
    assert result.exit_code == 1 and "CI of Δ" in result.output
    same = pytest_benchmark_file(tmp_path / "0003_c.json", 0.100, 3, with_data=False)
    assert run([base, same]).exit_code == 0


# -- rendering ----------------------------------------------------------------------------------


def test_csv_output_keeps_every_identity_column(tmp_path):
    base = write(tmp_path, "a.json", latency_record({"fcn8s": samples(100, 1)}))
    result = run([base, base, "--format", "csv"])
    assert result.exit_code == 0
    header = result.output.splitlines()[0].split(",")
    assert header[:4] == ["kind", "benchmark", "variant", "backend"]
    assert "verdict" in header


def test_output_file_is_written(tmp_path):
    base = write(tmp_path, "a.json", evaluate_record())
    out = tmp_path / "table.md"
    result = run([base, base, "--format", "github", "--output", str(out), "--title", "Accuracy"])
    assert result.exit_code == 0
    assert out.read_text().startswith("### Accuracy")


def one_backend_reproduce_record(shift: int) -> dict:
    row = evaluate_record(shift, backend="torch", device="cpu", variant="fcn8s")
    for key in ("schema_version", "kind", "provenance"):
        row.pop(key)
    return make_record("reproduce", variant="fcn8s", split="seg11valid", num_images=21,
                       rows=[{**row, "precision": "fp32", "images_per_s": 3.0}])


def test_records_of_different_kinds_exit_2_naming_both(tmp_path):
    """Issue 11.6: a latency and a reproduce record gave a table of 'missing' rows and exit 1."""
    latency = write(tmp_path, "lat.json", latency_record({"fcn8s": [10.0] * 5}))
    result = run([latency, write(tmp_path, "rep.json", one_backend_reproduce_record(0))])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot compare a latency record with a reproduce record" in result.output


def test_a_reproduce_and_an_evaluate_record_of_the_same_predictions_match(tmp_path):
    """Issue 11.6: `evaluate` re-scoring reproduce's --save-predictions must match row for row."""
    base = write(tmp_path, "rep.json", one_backend_reproduce_record(2))
    same = compare_paths(base, write(tmp_path, "same.json", evaluate_record(2)),
                             load_tolerances())
    assert not same.failed
    verdicts = {f.metric: f.verdict for f in same.findings}
    assert verdicts["mean_iou"] == verdicts["confusion_matrix"] == "ok"
    assert "(row)" not in verdicts  # no row is missing on either side
    assert any("compared as accuracy records, matched on split" in n for n in same.notes)
    worse = compare_paths(base, write(tmp_path, "worse.json", evaluate_record(5)),
                              load_tolerances())
    assert {f.metric for f in worse.failures} >= {"mean_iou", "pixel_accuracy"}


def test_a_wide_comparison_fits_120_columns_with_a_legend_of_cases(tmp_path):
    """Issue 11.6: every variant x backend made a table wider than a terminal."""
    from bench.model.spec import VARIANTS

    def matrix(median: float, seed: int) -> dict:
        rows = [make_row(CellKey(variant, backend, "model", 500, 500), CellResult(
            first_call_ns=1, samples_ns=[int(s * 1e6) for s in samples(median, seed)]),
            device="cpu", precision="fp32", gflops=1.0)
            for variant in VARIANTS for backend in ("torch", "tensorflow")]
        return make_latency_record(LatencyRun(rows, {}, "all cells", {}), {})

    comparison = compare_paths(write(tmp_path, "a.json", matrix(100.0, 0)),
                                   write(tmp_path, "b.json", matrix(112.0, 1)),
                                   load_tolerances())
    text = render(comparison, "plain")
    assert max(len(line) for line in text.splitlines()) <= 120, text
    assert "every row: kind=latency, device=cpu" in text
    assert "A = fcn32s/torch," in text and "H = fcn8s-atonce/tensorflow" in text
    assert "\nA       p50_ms" in text and "  +10%  " in text  # the gate's bound, not its metric
    narrow = compare_paths(write(tmp_path, "c.json", evaluate_record(0)),
                               write(tmp_path, "d.json", evaluate_record(1)),
                               load_tolerances())
    assert "cases:" not in render(narrow, "plain")  # a narrow table keeps its columns
