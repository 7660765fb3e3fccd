"""bench.evaluation.metrics: FCN score.py semantics on hand-computed matrices, plus hypothesis
properties."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bench.core.json_text import to_json
from bench.data.labels import VOC_CLASSES
from bench.evaluation.metrics import ConfusionMatrix, evaluation_record, metrics_table


def _ref_scores(pairs, n):
    """REF score.py (fast_hist + compute_hist + the four formulas), verbatim in numpy."""
    hist = np.zeros((n, n))
    for a, b in pairs:
        a, b = a.ravel(), b.ravel()
        k = (a >= 0) & (a < n)
        hist += np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        acc = np.diag(hist).sum() / hist.sum()
        acc_cls = np.nanmean(np.diag(hist) / hist.sum(1))
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
        return hist, acc, acc_cls, np.nanmean(iu), (freq[freq > 0] * iu[freq > 0]).sum()


def test_hand_computed_three_classes():
    label = np.array([[0, 0, 1, 1], [255, 2, 2, 0]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]], dtype=np.uint8)
    cm = ConfusionMatrix(3, ["a", "b", "c"]).update(label, pred)
    np.testing.assert_array_equal(cm.matrix, [[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert cm.matrix.dtype == np.int64
    s = cm.summary()
    assert s["pixel_accuracy"] == pytest.approx(5 / 7)
    assert s["per_class_accuracy"] == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.5})
    assert s["mean_accuracy"] == pytest.approx(13 / 18)
    assert s["per_class_iou"] == pytest.approx({"a": 0.5, "b": 2 / 3, "c": 0.5})
    assert s["mean_iou"] == pytest.approx(5 / 9)
    assert s["fw_iou"] == pytest.approx(23 / 42)
    assert s["num_pixels"] == 7
    assert s["absent_from_ground_truth"] == [] and s["absent_from_both"] == []


def test_absent_classes_follow_the_nan_rules():
    """z: predicted but never in GT -> IU 0 counts in mean IU, acc NaN excluded from mean acc.
    y: absent from both -> NaN, excluded everywhere."""
    cm = ConfusionMatrix(4, ["w", "x", "y", "z"]).update(np.array([0, 0, 1, 1]),
                                                       np.array([0, 3, 1, 1]))
    s = cm.summary()
    assert s["per_class_iou"]["z"] == 0.0
    assert math.isnan(s["per_class_iou"]["y"])
    assert math.isnan(s["per_class_accuracy"]["y"]) and math.isnan(s["per_class_accuracy"]["z"])
    assert s["mean_iou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert s["mean_accuracy"] == pytest.approx(0.75)
    assert s["pixel_accuracy"] == pytest.approx(0.75)
    assert s["fw_iou"] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert s["absent_from_ground_truth"] == ["y", "z"]
    assert s["absent_from_both"] == ["y"]


def test_empty_matrix_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ConfusionMatrix().summary()
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert math.isnan(s[key]), key
    assert s["absent_from_both"] == list(VOC_CLASSES)


def test_void_and_out_of_range_labels_are_ignored():
    label = np.array([[255, 3, 30], [-1, 0, 300]], dtype=np.int64)
    pred = np.array([[1, 3, 2], [2, 0, 1]], dtype=np.int64)
    cm = ConfusionMatrix(4, list("abcd")).update(label, pred)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[3, 3] = expected[0, 0] = 1
    np.testing.assert_array_equal(cm.matrix, expected)
    cm8 = ConfusionMatrix(4, list("abcd")).update(np.array([[255, 3, 30]], np.uint8),
                                                  np.array([[1, 3, 2]], np.uint8))
    assert cm8.num_pixels == 1 and cm8.matrix[3, 3] == 1


def test_invalid_predictions_and_shapes_raise():
    cm = ConfusionMatrix()
    with pytest.raises(ValueError, match=r"prediction values outside 0-20: 21, 255"):
        cm.update(np.zeros((2, 2), np.uint8), np.array([[0, 21], [255, 3]], np.uint8))
    with pytest.raises(ValueError, match="outside 0-20: -1"):
        cm.update(np.zeros(2, np.uint8), np.array([0, -1]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        cm.update(np.zeros(2, np.uint8), np.zeros(2, np.float32))
    assert cm.num_pixels == 0  # nothing half-counted


def test_matches_reference_score_py_on_random_data():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(5):
        label = rng.integers(0, 21, (37, 53)).astype(np.uint8)
        label[rng.random(label.shape) < 0.1] = 255
        pred = np.where(rng.random(label.shape) < 0.6, label % 21, rng.integers(0, 21, label.shape))
        pairs.append((label, pred.astype(np.uint8)))
    cm = ConfusionMatrix()
    for label, pred in pairs:
        cm.update(label, pred)
    hist, acc, acc_cls, mean_iu, fwavacc = _ref_scores(pairs, 21)
    np.testing.assert_array_equal(cm.matrix, hist)
    s = cm.summary()
    assert (s["pixel_accuracy"], s["mean_accuracy"], s["mean_iou"], s["fw_iou"]) == \
        pytest.approx((acc, acc_cls, mean_iu, fwavacc), rel=1e-12)


def test_batches_merge_add_and_int64_headroom():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 21, (3, 8, 9)).astype(np.uint8)
    preds = rng.integers(0, 21, (3, 8, 9)).astype(np.uint8)
    batched = ConfusionMatrix().update(labels, preds)
    one_by_one = ConfusionMatrix()
    for label, pred in zip(labels, preds, strict=True):
        one_by_one.update(label, pred)
    assert batched == one_by_one
    total = batched + one_by_one
    np.testing.assert_array_equal(total.matrix, 2 * batched.matrix)
    assert batched.merge(one_by_one) is batched and batched == total
    big = ConfusionMatrix.from_matrix(np.full((21, 21), 2 ** 40, dtype=np.int64))
    big.update(labels, preds)  # a full dataset is ~10^8 pixels; int64 leaves huge headroom
    assert big.matrix.min() >= 2 ** 40 and big.num_pixels == 441 * 2 ** 40 + labels.size
    with pytest.raises(ValueError, match="same classes"):
        ConfusionMatrix(3, list("abc")) + ConfusionMatrix(3, list("xyz"))
    with pytest.raises(ValueError, match="square"):
        ConfusionMatrix.from_matrix(np.zeros((2, 3)))


# -- properties ----------------------------------------------------------------------------------

def _images(num_classes):
    """1-6 (label, prediction) pairs of random small sizes, ~20% void."""
    return st.lists(
        st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2 ** 32 - 1)).map(
            lambda hws: _random_pair(*hws, num_classes)),
        min_size=1, max_size=6)


def _random_pair(height, width, seed, num_classes):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, num_classes, (height, width)).astype(np.uint8)
    label[rng.random(label.shape) < 0.2] = 255
    pred = rng.integers(0, num_classes, (height, width)).astype(np.uint8)
    return label, pred


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)),
              elements=st.sampled_from([*range(21), 255])))
def test_perfect_prediction_scores_one(label):
    pred = np.where(label == 255, 7, label).astype(np.uint8)  # void pixels: any prediction
    s = ConfusionMatrix().update(label, pred).summary()
    if (label != 255).any():
        for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
            assert s[key] == pytest.approx(1.0), key
    else:
        assert math.isnan(s["mean_iou"])


@settings(max_examples=60, deadline=None)
@given(_images(5), st.data())
def test_shards_merge_to_one_pass_and_order_does_not_matter(pairs, data):
    one_pass = ConfusionMatrix(5)
    for label, pred in pairs:
        one_pass.update(label, pred)
    cut = data.draw(st.integers(0, len(pairs)))
    left, right = ConfusionMatrix(5), ConfusionMatrix(5)
    for label, pred in pairs[:cut]:
        left.update(label, pred)
    for label, pred in pairs[cut:]:
        right.update(label, pred)
    assert left + right == one_pass
    permuted = ConfusionMatrix(5)
    for index in data.draw(st.permutations(range(len(pairs)))):
        permuted.update(*pairs[index])
    assert permuted == one_pass
    assert to_json(permuted.summary()) == to_json(one_pass.summary())
    _, acc, acc_cls, mean_iu, fwavacc = _ref_scores(pairs, 5)
    s = one_pass.summary()
    if one_pass.num_pixels == 0:
        # Nothing scored (all void): score.py's f.w. IU is an empty sum (0) while its other
        # metrics are 0/0; we report all four as undefined (NaN -> null in records).
        assert all(math.isnan(s[k]) for k in ("pixel_accuracy", "mean_accuracy", "mean_iou",
                                               "fw_iou"))
        return
    np.testing.assert_allclose([s["pixel_accuracy"], s["mean_accuracy"], s["mean_iou"],
                                s["fw_iou"]], [acc, acc_cls, mean_iu, fwavacc], rtol=1e-12)


# -- record and table ----------------------------------------------------------------------------

def test_evaluation_record_schema_and_strict_json():
    cm = ConfusionMatrix().update(np.array([[0, 1], [1, 255]], np.uint8),
                                  np.array([[0, 1], [0, 4]], np.uint8))
    record = evaluation_record("val", cm, 1, backend="torch")
    assert record["kind"] == "evaluate" and record["schema_version"] == 1
    assert "provenance" in record and record["backend"] == "torch"
    assert record["split"] == "val" and record["num_images"] == 1
    metrics = record["metrics"]
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert 0.0 <= metrics[key] <= 1.0
    assert list(metrics["per_class_iou"]) == list(VOC_CLASSES)
    assert metrics["confusion_matrix"] == cm.matrix.tolist()
    assert metrics["num_images"] == 1 and metrics["split"] == "val"
    parsed = json.loads(to_json(record))  # strict JSON: NaN written as null
    assert parsed["metrics"]["per_class_iou"]["cat"] is None
    assert parsed["metrics"]["per_class_iou"]["aeroplane"] == pytest.approx(0.5)
    rebuilt = ConfusionMatrix.from_matrix(parsed["metrics"]["confusion_matrix"])
    assert rebuilt == cm


def test_metrics_table_in_percent_with_dashes_for_undefined():
    cm = ConfusionMatrix().update(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    table = metrics_table(cm.summary(), tablefmt="plain")
    assert "75.00" in table  # pixel accuracy
    assert "58.33" in table  # mean IU: (1/2 + 2/3) / 2
    cat_line = next(line for line in table.splitlines() if line.startswith("cat"))
    assert cat_line.split()[1:] == ["-", "-"]
    assert "| background" in metrics_table(cm.summary())  # github format by default
    parsed = json.loads(to_json(cm.summary()))  # also renders a record's (null) metrics
    assert "-" in metrics_table(parsed, tablefmt="plain")


# -- other data sets: ignore rules, scored classes, heads -----------------------------------------

def test_ignore_label_below_n_is_not_counted_and_defaults_are_unchanged():
    from bench.evaluation.metrics import ConfusionMatrix

    label = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    pred = np.array([[2, 1, 0, 1]], dtype=np.uint8)
    plain = ConfusionMatrix(3, ("a", "b", "c")).update(label, pred)
    assert plain.num_pixels == 3
    ade_like = ConfusionMatrix(3, ("other", "b", "c"), ignore_labels=(0, 255),
                               scored_classes=(1, 2)).update(label, pred)
    assert ade_like.num_pixels == 2
    summary = ade_like.summary()
    assert list(summary["per_class_iou"]) == ["b", "c"]
    assert summary["pixel_accuracy"] == 0.5
    assert summary["mean_iou"] == 0.5  # b: 1/1, c: 0/1 (predicted 'other' is still an error)


def test_scored_subset_must_be_valid_and_rules_must_match_to_merge():
    from bench.evaluation.metrics import ConfusionMatrix

    with pytest.raises(ValueError):
        ConfusionMatrix(3, scored_classes=(3,))
    with pytest.raises(ValueError):
        ConfusionMatrix(3).merge(ConfusionMatrix(3, ignore_labels=(0,)))


def test_mean_iou_present_skips_classes_absent_from_ground_truth():
    from bench.evaluation.metrics import ConfusionMatrix, dataset_summary

    confusion = ConfusionMatrix(3, ("a", "b", "c"))
    confusion.update(np.array([[0, 0, 1, 1]], dtype=np.uint8),
                     np.array([[0, 2, 1, 1]], dtype=np.uint8))  # c absent, but predicted once
    metrics = dataset_summary({"semantic": confusion}, "semantic", present_only_iou=True)
    assert metrics["mean_iou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # score.py
    assert metrics["mean_iou_present"] == pytest.approx((0.5 + 1.0) / 2)  # CVPR footnote
    assert metrics["heads"]["semantic"]["confusion_matrix"] == confusion.matrix.tolist()


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, (2, 7, 9), elements=st.integers(0, 150)),
       arrays(np.uint8, (2, 7, 9), elements=st.integers(0, 150)))
def test_ade20k_rules_equal_the_scene_parsing_evaluation(labels, preds):
    """CSAILVision/sceneparsing evaluationCode: prediction masked by GT > 0, histograms over
    classes 1..150, accuracy = correct / labelled."""
    from bench.data.ade20k import HEADS

    confusion = HEADS[0].confusion()
    for label, pred in zip(labels, preds, strict=True):
        confusion.update(label, pred)
    masked = preds * (labels > 0)
    bins = np.arange(1, 152)
    inter = np.histogram(masked[masked == labels], bins=bins)[0]
    union = (np.histogram(masked, bins=bins)[0] + np.histogram(labels, bins=bins)[0] - inter)
    summary = confusion.summary()
    ious = np.array(list(summary["per_class_iou"].values()))
    present = union > 0
    np.testing.assert_allclose(ious[present], inter[present] / union[present])
    assert np.isnan(ious[~present]).all()
    labelled = (labels > 0).sum()
    if labelled:
        assert summary["pixel_accuracy"] == pytest.approx(
            ((preds == labels) & (labels > 0)).sum() / labelled)
