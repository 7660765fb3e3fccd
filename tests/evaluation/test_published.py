"""reference_results/ as data: every number has a source and split; tolerances and verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.data.labels import VOC_CLASSES
from bench.evaluation import published as refs
from bench.model.spec import VARIANTS

KNOWN_SPLITS = {"seg11valid", "voc2011-val", "voc2011-test", "voc2012-test", "nyud-test",
                "siftflow-test", "pascalcontext-val", "pascalcontext33-val", "ade20k-val"}
KNOWN_KINDS = {"paper", "claimed", "reevaluation", "independent"}


def test_every_row_has_source_split_and_a_parsable_value():
    rows = refs.load_references()
    assert len(rows) > 50
    for row in rows:
        assert row.source and row.location and row.evaluated_by, row
        assert row.split in KNOWN_SPLITS, row
        assert row.kind in KNOWN_KINDS, row
        assert row.metric in (*refs.METRICS, *refs.DATASET_METRICS, "class_iou"), row
        assert 0.0 < row.value < 1.0, row
        if row.metric == "class_iou":
            assert row.class_name in VOC_CLASSES, row


@pytest.mark.parametrize(("variant", "percent"), [
    ("fcn32s", "63.6"), ("fcn16s", "65.0"), ("fcn8s", "65.5"), ("fcn8s-atonce", "65.4")])
def test_released_models_readme_claims(variant, percent):
    (claim,) = refs.reference_metrics(variant, "seg11valid", kind="claimed", metric="mean_iou")
    assert claim.percent_text == percent and claim.decimals == 1
    assert claim.weights == "released-heavy"


def test_cvpr_table2_has_four_metrics_for_each_model():
    table2 = [r for r in refs.load_references() if r.source == "CVPR 2015 Table 2"]
    models = {r.model for r in table2}
    assert models == {"FCN-32s-fixed", "FCN-32s", "FCN-16s", "FCN-8s"}
    assert len(table2) == 16 and {r.split for r in table2} == {"seg11valid"}
    (fcn8s_miou,) = [r for r in table2 if r.model == "FCN-8s" and r.metric == "mean_iou"]
    assert fcn8s_miou.percent_text == "62.7"


@pytest.mark.parametrize("variant", VARIANTS)
def test_acceptance_is_both_reevaluations_on_all_four_metrics_at_005(variant):
    pairs = refs.acceptance(variant, "seg11valid")
    assert sorted(r.metric for r, _ in pairs) == sorted(refs.METRICS * 2)
    assert {r.evaluated_by for r, _ in pairs} == {"Chainer (converted)", "PyTorch (converted)"}
    assert {t.points for _, t in pairs} == {0.05}
    # The two re-evaluations agree with each other far inside the tolerance (data sanity).
    by_metric: dict[str, list[float]] = {}
    for ref, _ in pairs:
        by_metric.setdefault(ref.metric, []).append(ref.percent)
    assert all(max(v) - min(v) < 0.02 for v in by_metric.values())


def _summary_from(variant: str, evaluated_by: str, shift_points: float = 0.0) -> dict:
    return {r.metric: r.value + shift_points / 100.0 for r, _ in refs.acceptance(variant,
                                                                                 "seg11valid")
            if r.evaluated_by == evaluated_by}


def test_verdict_reproduced_within_tolerance_and_differs():
    summary = _summary_from("fcn8s", "Chainer (converted)")
    comparisons = refs.compare(summary, "fcn8s", "seg11valid", "released-heavy")
    assert refs.overall_verdict(comparisons) == "reproduced within tolerance"
    # CVPR Table 2 belongs to the original weights: shown as context, never a target here.
    context = [c for c in comparisons if c.reference.source == "CVPR 2015 Table 2"]
    assert context and all(c.verdict == "context (cvpr2015 weights)" for c in context)

    off = _summary_from("fcn8s", "Chainer (converted)", shift_points=0.06)
    comparisons = refs.compare(off, "fcn8s", "seg11valid", "released-heavy")
    assert refs.overall_verdict(comparisons) == "differs"


def test_other_weights_are_judged_on_mean_iou_with_the_retraining_tolerance():
    summary = {"pixel_accuracy": 0.5, "mean_accuracy": 0.5, "mean_iou": 0.645, "fw_iou": 0.5}
    comparisons = refs.compare(summary, "fcn8s", "seg11valid", "other")
    deciding = [c for c in comparisons if c.tolerance and c.tolerance.decides_verdict]
    assert [(c.reference.metric, c.tolerance.points) for c in deciding] == [("mean_iou", 1.0)]
    assert refs.overall_verdict(comparisons) == "reproduced within tolerance"
    summary["mean_iou"] = 0.60
    assert refs.overall_verdict(refs.compare(summary, "fcn8s", "seg11valid", "other")) == "differs"


def test_split_without_references_has_no_verdict():
    assert refs.reference_metrics("fcn8s", "val") == []
    assert refs.overall_verdict(refs.compare({"mean_iou": 0.5}, "fcn8s", "val")) == "no reference"


def test_run_weights_kind_from_archive_metadata():
    official = {"kind": "trained", "origin": "caffe:fcn8s-heavy-pascal"}
    assert refs.run_weights_kind(official, "fcn8s") == "released-heavy"
    assert refs.run_weights_kind(official, "fcn32s") == "other"
    assert refs.run_weights_kind({"kind": "random", "origin": "random:seed=0"}, "fcn8s") == "other"
    assert refs.run_weights_kind({"kind": "trained", "origin": "caffe:fcn-8s-pascal"},
                                 "fcn8s") == "cvpr2015"


def test_a_narrow_net_named_like_the_official_caffemodel_is_not_official():
    """QA: a width_divisor-16 conversion of a file called fcn8s-heavy-pascal.caffemodel was
    judged against the 0.05-point tolerance of the released weights."""
    named = {"kind": "trained", "origin": "caffe:fcn8s-heavy-pascal", "num_classes": "21"}
    assert refs.run_weights_kind({**named, "width_divisor": "1"}, "fcn8s") == "released-heavy"
    assert refs.run_weights_kind({**named, "width_divisor": "16"}, "fcn8s") == "other"
    assert refs.run_weights_kind({**named, "width_divisor": "1", "num_classes": "5"},
                                 "fcn8s") == "other"


def test_paper_latency_contract():
    keys = {"latency_ms", "hardware", "source", "input", "note"}
    fcn32s = refs.paper_latency_ms("fcn32s")
    assert set(fcn32s) == keys
    assert fcn32s["latency_ms"] == 210.0 and "K40c" in fcn32s["hardware"]
    assert fcn32s["source"] == "CVPR 2015 Table 1" and fcn32s["input"] == "500x500"
    fcn8s = refs.paper_latency_ms("fcn8s")
    assert fcn8s["latency_ms"] == 175.0 and fcn8s["source"] == "CVPR 2015 Table 3"
    assert "typical" in fcn8s["note"]
    for proxy in ("fcn16s", "fcn8s-atonce"):
        entry = refs.paper_latency_ms(proxy)
        assert entry is not None and f"no {proxy} time is published" in entry["note"]
    assert refs.paper_latency_ms("fcn4s") is None


def test_per_class_reference_exists_only_where_published():
    per_class = refs.per_class_iou("fcn8s", "voc2012-test")
    assert len(per_class) == 20 and "background" not in per_class
    assert per_class["aeroplane"].percent_text == "76.8"
    assert refs.per_class_iou("fcn8s", "seg11valid") == {}


def test_every_tolerance_row_matches_some_reference():
    for tol in refs.load_tolerances():
        assert tol.run_weights in refs.RUN_WEIGHTS
        assert any(r.kind == tol.reference_kind and r.weights == tol.reference_weights
                   for r in refs.load_references()), tol


# -- the other data sets ------------------------------------------------------------------

@pytest.mark.parametrize(("variant", "split", "metric", "percent"), [
    ("nyud-fcn32s-color-hha", "nyud-test", "pixel_accuracy", "64.3"),
    ("nyud-fcn32s-hha", "nyud-test", "mean_iou", "24.2"),
    ("siftflow-fcn16s", "siftflow-test", "mean_iou_present", "39.5"),
    ("siftflow-fcn16s", "siftflow-test", "geometric_accuracy", "94.3"),
    ("pascalcontext-fcn8s", "pascalcontext-val", "mean_iou", "35.1"),
    ("ade20k-fcn8s", "ade20k-val", "mean_iou", "29.39"),
])
def test_other_data_sets_tables(variant, split, metric, percent):
    (row,) = refs.reference_metrics(variant, split, metric=metric)
    assert row.percent_text == percent and row.kind == "paper"


def test_split_keys_of_other_data_sets():
    assert refs.reference_split("test", "nyud") == "nyud-test"
    assert refs.reference_split("validation", "ade20k") == "ade20k-val"
    assert refs.reference_split("val") == "voc2012-val"
    assert refs.dataset_of_split("pascalcontext33-val") == "pascalcontext"
    assert refs.dataset_of_split("seg11valid") == "voc"


def test_released_heavy_against_cvpr_is_a_reference_point_not_pass_fail():
    summary = {"pixel_accuracy": 0.60, "mean_accuracy": 0.40, "mean_iou": 0.10, "fw_iou": 0.44}
    comparisons = refs.compare(summary, "nyud-fcn32s-color", "nyud-test")
    assert len(comparisons) == 4
    verdicts = {c.reference.metric: c.verdict for c in comparisons}
    assert verdicts["pixel_accuracy"] == "reference point (near the paper)"
    assert verdicts["mean_iou"] == "reference point (far from the paper)"
    assert refs.overall_verdict(comparisons) == "reference point"


def test_voc_paper_rows_stay_context_for_released_weights():
    """The new reference-point rows must not leak into VOC (datasets column)."""
    (ref,) = refs.reference_metrics("fcn8s", "seg11valid", weights="cvpr2015", kind="paper",
                                    metric="mean_iou")
    assert refs.tolerance(ref, "released-heavy") is None


def test_an_install_without_its_checkout_names_the_missing_folder_and_the_fix(tmp_path):
    """A wheel holds the code, not reference_results/: the error says where to point."""
    import subprocess
    import sys

    code = ("from bench.evaluation import published\n"
            "try:\n    published.load_references()\nexcept Exception as e:\n    print(e)\n")
    env = {"FCN_BENCH_REFERENCE_RESULTS": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[2], timeout=60).stdout
    assert str(tmp_path / "nowhere" / "accuracy.csv") in out
    assert "set FCN_BENCH_REFERENCE_RESULTS" in out
