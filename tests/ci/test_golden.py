"""The golden suite: deterministic, matches the committed baseline, and bites on broken geometry.

Runs narrow nets on the torch backend only (the CI step `python cli.py golden` runs every backend,
every family and the full-width check); about 45 s on a 2-core machine.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from click.testing import CliRunner

from bench.ci.gates import load_tolerances
from bench.ci.golden import (
    GOLDEN_BASELINE,
    GoldenConfig,
    check_golden,
    default_spec_factory,
    faulty_factory,
    geometry_faults,
    golden_params,
    make_golden_images,
    render_golden,
    run_golden,
    stream_first_convs,
    with_crop_offset,
    without_skip,
    without_stream,
)
from bench.ci.judge import REGRESSION
from bench.cli.app import cli
from bench.core.errors import UsageError
from bench.core.json_text import to_json
from bench.model.init import random_params
from bench.model.spec import CONV1_1_PAD, MODEL_NAMES, Conv, build_spec

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

VARIANTS = ("fcn16s", "fcn8s")


def torch_factory(name, spec):
    from backends import RunOptions, create_backend

    return create_backend(name, spec, RunOptions(device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_golden_images(tmp_path_factory.mktemp("golden"), GoldenConfig())


@pytest.fixture(scope="module")
def reference(images):
    """The correct narrow fcn16s and fcn8s on torch."""
    return run_golden(default_spec_factory, torch_factory, ["torch"], variants=VARIANTS,
                      full_width=False, images=images, models=())


def run_faulty(images, variant, fault):
    return run_golden(faulty_factory(variant, fault), torch_factory, ["torch"],
                      variants=[variant] if variant in VARIANTS else [], full_width=False,
                      images=images, models=[] if variant in VARIANTS else [variant])


def test_rows_carry_metrics_matrix_and_label_maps(reference):
    rows = reference["rows"]
    assert [(r["variant"], r["backend"]) for r in rows] == [("fcn16s", "torch"),
                                                            ("fcn8s", "torch")]
    row = rows[1]
    assert row["status"] == "ok" and row["num_images"] == 8
    assert np.asarray(row["confusion_matrix"]).shape == (21, 21)
    assert set(row["metrics"]) >= {"pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"}
    assert row["label_maps"].startswith("zlib+base64:") and len(row["label_digest"]) == 64
    # Random nets must predict several classes, or geometry faults could not move a label.
    assert len([c for c in np.asarray(row["confusion_matrix"]).sum(axis=0) if c]) >= 3


def test_the_suite_is_deterministic(reference, images):
    again = run_golden(default_spec_factory, torch_factory, ["torch"], variants=["fcn8s"],
                       full_width=False, images=images, models=())
    first = next(r for r in reference["rows"] if r["variant"] == "fcn8s")
    assert to_json(again["rows"][0]) == to_json(first)  # as written: NaN (absent class) -> null


def test_data_generation_is_deterministic(images, tmp_path):
    regenerated = make_golden_images(tmp_path, GoldenConfig())
    assert [i.id for i in regenerated] == [i.id for i in images]
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
               for a, b in zip(images, regenerated, strict=True))


def test_current_code_matches_the_committed_baseline(reference):
    baseline = json.loads(GOLDEN_BASELINE.read_text())
    comparison = check_golden(reference, baseline, load_tolerances(),
                              baseline_name=str(GOLDEN_BASELINE))
    assert not comparison.failed, render_golden(comparison, reference)
    assert any("not checked" in note for note in comparison.notes)  # tensorflow, other variants


def test_a_wrong_crop_offset_fails_the_gate_with_a_readable_table(reference, images):
    faulty = run_faulty(images, "fcn8s", functools.partial(with_crop_offset, crop="score",
                                                           delta=1))
    comparison = check_golden(faulty, reference, load_tolerances(), baseline_name="reference")
    assert comparison.failed
    failing = {f.metric for f in comparison.failures}
    assert {"label_maps", "confusion_matrix"} <= failing
    moved = next(f.delta for f in comparison.findings if f.metric == "label_maps")
    assert moved > 0.001 * 9280 * 10  # ten times the budget, not a near miss
    table = render_golden(comparison, faulty, "github")
    assert "| fcn8s" in table and "**REGRESSION**" in table and "Failing checks" in table


def test_a_dropped_skip_fails_the_gate(reference, images):
    faulty = run_faulty(images, "fcn16s", functools.partial(without_skip, fuse="fuse_pool4"))
    comparison = check_golden(faulty, reference, load_tolerances(), baseline_name="reference")
    assert comparison.failed
    assert any(f.metric == "label_maps" and f.verdict == REGRESSION for f in comparison.findings)


def test_fault_helpers_change_only_their_layer():
    spec = build_spec("fcn8s", width_divisor=16)
    shifted = with_crop_offset(spec, "score_pool3c", -1)
    assert shifted.crop_offsets == {**spec.crop_offsets, "score_pool3c": 8}
    dropped = without_skip(spec, "fuse_pool3")
    assert dropped.layer("fuse_pool3").bottom == "upscore_pool4"
    assert dropped.parameters() == spec.parameters()
    names = [name for name, _ in geometry_faults(spec)]
    assert len(names) == 3 * 2 + 2 + 1  # three crops +-1, two skips, conv1_1 pad
    with pytest.raises(UsageError, match="not a Crop"):
        with_crop_offset(spec, "fuse_pool3", 1)


def test_atonce_scorers_compensate_their_scale():
    spec = build_spec("fcn8s-atonce", width_divisor=16)
    plain, golden = random_params(spec, 0), golden_params(spec, 0)
    np.testing.assert_allclose(golden["score_pool4.weight"] * 0.01, plain["score_pool4.weight"],
                               rtol=1e-6)
    np.testing.assert_allclose(golden["score_pool3.weight"] * 1e-4, plain["score_pool3.weight"],
                               rtol=1e-6)
    assert np.array_equal(golden["fc6.weight"], plain["fc6.weight"])


def test_a_baseline_from_other_settings_is_refused(reference):
    other = json.loads(json.dumps(reference))
    other["suite"]["width_divisor"] = 8
    with pytest.raises(UsageError, match="width_divisor: 8 -> 16"):
        check_golden(reference, other, load_tolerances())


def test_golden_command_on_a_subset(tmp_path):
    record = tmp_path / "golden-run.json"
    result = CliRunner().invoke(cli, ["golden", "--backend", "torch", "--variant", "fcn32s",
                                      "--no-full-width", "--format", "github", "--record",
                                      str(record), "--output", str(tmp_path / "golden.md")])
    assert result.exit_code == 0, result.output
    assert "### Golden suite" in result.output and "| fcn32s" in result.output
    assert json.loads(record.read_text())["kind"] == "golden"
    assert (tmp_path / "golden.md").read_text().startswith("### Golden suite")


def test_partial_update_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["golden", "--update", "--variant", "fcn8s", "--baseline",
                                      str(tmp_path / "golden.json")])
    assert result.exit_code == 2
    assert "rewrites the whole baseline" in result.output
    assert not (tmp_path / "golden.json").exists()


def test_missing_baseline_says_how_to_create_it(tmp_path):
    result = CliRunner().invoke(cli, ["golden", "--backend", "torch", "--variant", "fcn32s",
                                      "--no-full-width", "--baseline",
                                      str(tmp_path / "none.json")])
    assert result.exit_code == 1
    assert "golden --update" in result.output


# ----------------------------------------------------------------------------------------------
# The other families: one released model each, on its own generated data set


@pytest.fixture(scope="module")
def zoo_reference(images):
    """Two heads (SIFT Flow) and two inputs with late fusion (NYUD) on torch."""
    return run_golden(default_spec_factory, torch_factory, ["torch"], variants=[],
                      full_width=False, images=images,
                      models=["siftflow-fcn16s", "nyud-fcn32s-color-hha"])


def test_zoo_families_match_the_committed_baseline(zoo_reference):
    rows = {row["variant"]: row for row in zoo_reference["rows"]}
    assert rows["siftflow-fcn16s"]["split"] == "test"
    assert len(rows["siftflow-fcn16s"]["geometric_label_digest"]) == 64
    assert "geometric_pixel_accuracy" in rows["siftflow-fcn16s"]["metrics"]
    assert np.asarray(rows["nyud-fcn32s-color-hha"]["confusion_matrix"]).shape == (40, 40)
    baseline = json.loads(GOLDEN_BASELINE.read_text())
    assert set(baseline["suite"]["models"]) == set(GoldenConfig().zoo_models)
    comparison = check_golden(zoo_reference, baseline, load_tolerances(),
                              baseline_name=str(GOLDEN_BASELINE))
    assert not comparison.failed, render_golden(comparison, zoo_reference)
    checked = len(baseline["rows"]) - int(next(
        note.split()[0] for note in comparison.notes if "not checked" in note))
    assert checked == 2  # the two models' torch rows


def test_a_broken_geometric_head_fails_the_gate(zoo_reference, images):
    faulty = run_faulty(images, "siftflow-fcn16s",
                        functools.partial(with_crop_offset, crop="score_geo", delta=1))
    comparison = check_golden(faulty, zoo_reference, load_tolerances(),
                              baseline_name="reference")
    assert comparison.failed
    assert any(f.metric == "label_maps" for f in comparison.failures)  # maps hold both heads
    broken, good = faulty["rows"][0], zoo_reference["rows"][0]
    assert broken["label_digest"] == good["label_digest"]  # the semantic head is untouched
    assert broken["geometric_label_digest"] != good["geometric_label_digest"]


# ----------------------------------------------------------------------------------------------
# Fault injections for every family


FIRST_CONVS = {"voc-fcn8s": ["conv1_1"], "voc-fcn-alexnet": ["conv1"],
               "nyud-fcn32s-color-d": ["conv1_1_bgrd"],
               "nyud-fcn32s-color-hha": ["conv1_1color", "conv1_1hha"],
               "siftflow-fcn16s": ["conv1_1"]}


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_family_has_faults_and_a_pad_fault_per_stream(model):
    spec = build_spec(model, width_divisor=16)
    names = [name for name, _ in geometry_faults(spec)]
    firsts = [conv.name for conv in stream_first_convs(spec)]
    assert firsts == FIRST_CONVS.get(model, firsts) and firsts
    assert [n for n in names if " pad " in n] == [f"{c} pad {CONV1_1_PAD}-1" for c in firsts]
    assert all(spec.layer(c).pad == CONV1_1_PAD for c in firsts)
    # Every Crop twice, every Sum at least once (a weighted fusion once per stream).
    crops = [layer.name for layer in spec.layers if type(layer).__name__ == "Crop"]
    assert all(f"{c} offset {spec.layer(c).offset}+1" in names for c in crops)
    for fault_name, fault in geometry_faults(spec):
        faulty = fault(spec)
        assert faulty != spec and faulty.parameters() == spec.parameters(), fault_name


def test_late_fusion_faults_drop_each_stream():
    spec = build_spec("nyud-fcn32s-color-hha", width_divisor=16)
    names = [name for name, _ in geometry_faults(spec)]
    assert {"score_fused stream score_frcolor dropped",
            "score_fused stream score_frhha dropped"} <= set(names)
    dropped = without_stream(spec, "score_fused", "score_frcolor")
    assert dropped.layer("score_fused").bottom == "score_frhha"
    assert not any(isinstance(layer, Conv) and layer.name == "score_fused"
                   for layer in dropped.layers)
    with pytest.raises(UsageError, match="does not fuse"):
        without_stream(spec, "score_fused", "fc7color")
    siftflow = [n for n, _ in geometry_faults(build_spec("siftflow-fcn16s", width_divisor=16))]
    assert any("geo" in n for n in siftflow) and any("sem" in n for n in siftflow)


def test_check_faults_catches_every_fault_of_a_two_stream_family():
    result = CliRunner().invoke(cli, ["golden", "--check-faults", "--backend", "torch",
                                      "--variant", "nyud-fcn32s-color-hha"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines()
             if line.startswith("nyud-fcn32s-color-hha")]
    assert len(lines) == 6 and all(" caught" in line for line in lines), result.output
    assert "MISSED" not in result.output and "6 of 6 injected faults caught" in result.output


# ----------------------------------------------------------------------------------------------
# The half-precision gate after the fp32 suite


def test_golden_precision_prints_the_half_precision_gate(tmp_path):
    record = tmp_path / "golden-run.json"
    result = CliRunner().invoke(cli, ["golden", "--backend", "torch", "--variant", "fcn32s",
                                      "--variant", "pascalcontext-fcn32s", "--no-full-width",
                                      "--precision", "bf16", "--record", str(record)])
    assert result.exit_code == 0, result.output
    assert "golden in" in result.output  # the fp32 suite ran and passed first
    table = result.output[result.output.index("Half precision"):]
    rows = [line for line in table.splitlines() if " bf16 " in line]
    assert [line.split()[0] for line in rows] == ["fcn32s", "pascalcontext-fcn32s"]
    assert all(line.rstrip().endswith("ok") and ">= 99.5" in line for line in rows)
    assert "2 of 2 half-precision rows pass" in table
    assert max(len(line) for line in table.splitlines()) <= 120
    half = json.loads(record.read_text())["half_precision"]
    assert [r["precision"] for r in half] == ["bf16", "bf16"] and all(r["passed"] for r in half)
    assert all(0 < r["decided_pixels"] <= r["label_pixels"] for r in half)


def test_a_failing_half_precision_row_fails_the_command(monkeypatch):
    import bench.cli.golden as golden_command

    def broken(factory, backend, precision, images, **kwargs):
        return [{"variant": "fcn32s", "backend": backend, "precision": precision,
                 "status": "ok", "error": None, "label_agreement_with_fp32": 0.9,
                 "decided_pixels": 90, "label_pixels": 100, "label_agreement_all_pixels": 0.9,
                 "gate": 0.995, "passed": False},
                {"variant": "voc-fcn-alexnet", "backend": backend, "precision": precision,
                 "status": "unsupported", "error": "NotImplementedError: no LRN kernel",
                 "passed": None}]

    monkeypatch.setattr(golden_command, "half_precision_rows", broken)
    result = CliRunner().invoke(cli, ["golden", "--backend", "torch", "--variant", "fcn32s",
                                      "--no-full-width", "--precision", "fp16"])
    assert result.exit_code == 1
    assert "0 of 1 half-precision rows pass (1 unsupported" in result.output
    assert "no LRN kernel" in result.output
    assert "half-precision gate: 1 failing row" in result.output.splitlines()[-1]
    assert "Traceback" not in result.output


def test_precision_is_refused_with_check_faults():
    result = CliRunner().invoke(cli, ["golden", "--check-faults", "--precision", "bf16"])
    assert result.exit_code == 2 and "--precision" in result.output
