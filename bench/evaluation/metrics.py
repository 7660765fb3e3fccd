"""Segmentation scores exactly as FCN's reference `score.py`: one confusion matrix per dataset.

Rows are ground truth, columns predictions; void (255) pixels are ignored, and a data set may
ignore more label values (ADE20K's 0 = "other") and leave classes out of the means
(docs/datasets.md, "Metrics"). Per-image averaging is *not* used (docs/fidelity.md "Evaluation
protocol"). Numpy and tabulate only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tabulate import tabulate

from bench.core.records import make_record
from bench.data.labels import NUM_CLASSES, VOC_CLASSES, VOID_LABEL, describe_values


class ConfusionMatrix:
    """An int64 (n, n) histogram of (ground truth, prediction) pixel pairs, summed over images.

    `update` is the only hot path: it builds the flat bin index `n * label + pred` in uint16 (not
    int64) and lets void pixels fall into bins past n*n that are sliced off, which avoids boolean
    masking; that is ~3x faster than score.py's `bincount(n * a[k].astype(int) + b[k])` and gives
    the identical matrix (benchmarks/test_bench_metrics.py). int64 counts cannot overflow on any
    realistic dataset (2**63 pixels).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, class_names: Sequence[str] | None = None,
                 *, ignore_labels: Sequence[int] = (VOID_LABEL,),
                 scored_classes: Sequence[int] | None = None):
        if not 1 <= num_classes <= 255:
            raise ValueError(f"num_classes must be in 1..255 (255 is void), got {num_classes}")
        if class_names is None:
            class_names = (VOC_CLASSES if num_classes == NUM_CLASSES
                           else tuple(f"class_{i}" for i in range(num_classes)))
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = tuple(class_names)
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        # Label values that are not scored. Those >= n fall outside the bins anyway; those < n
        # (ADE20K's 0) are moved to 255 before counting. Their predictions are never counted.
        self.ignore_labels = tuple(sorted({int(v) for v in ignore_labels}))
        self._ignored_classes = tuple(v for v in self.ignore_labels if 0 <= v < num_classes)
        # Class indices that enter the means and per-class tables (default: all).
        scored = tuple(range(num_classes)) if scored_classes is None else tuple(scored_classes)
        if not scored or any(not 0 <= c < num_classes for c in scored):
            raise ValueError(f"scored classes must be a non-empty subset of 0..{num_classes - 1}")
        self.scored_classes = scored

    # -- accumulation -------------------------------------------------------------------------

    def update(self, label: np.ndarray, pred: np.ndarray) -> ConfusionMatrix:
        """Add one image (H, W) or a batch (N, H, W); returns self.

        Pixels whose label is not in 0..n-1 (void 255) are ignored, as `score.py` keeps
        0 <= a < n. Predictions must all be in 0..n-1: anything else is a bug or a bad file, and
        would silently land in another class's row if counted, so it raises ValueError listing the
        offending values (callers reading files turn it into a DataError naming the file).
        """
        label = np.asarray(label)
        pred = np.asarray(pred)
        if label.shape != pred.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape "
                             f"{label.shape}")
        if pred.dtype.kind not in "iub" or label.dtype.kind not in "iub":
            raise ValueError(f"labels and predictions must be integer class indices, got "
                             f"{label.dtype} and {pred.dtype}")
        n = self.num_classes
        if pred.size and ((pred.dtype.kind == "i" and pred.min() < 0) or pred.max() >= n):
            bad = np.unique(pred[(pred < 0) | (pred >= n)])
            raise ValueError(f"prediction values outside 0-{n - 1}: {describe_values(bad)}")
        if label.dtype != np.uint8:
            # Out-of-range labels (negative, or past 255) become row n: past the kept bins too.
            label = np.where((label >= 0) & (label < n), label, n).astype(np.uint8)
        if self._ignored_classes:
            label = np.where(np.isin(label, self._ignored_classes), np.uint8(VOID_LABEL), label)
        if pred.dtype not in (np.uint8, np.uint16):
            pred = pred.astype(np.uint16)  # validated above: 0..n-1
        # Flat bin index in uint16 (max 255 * n + n - 1 < 65536 for n <= 255), written by the
        # ufuncs without int64 temporaries. Void rows land in bins >= n*n; bincount counts them
        # and the slice drops them, which is cheaper than boolean masking.
        index = np.multiply(label, np.uint16(n), dtype=np.uint16)
        np.add(index, pred, out=index)
        counts = np.bincount(index.ravel(), minlength=n * n)[: n * n]
        self.matrix += counts.reshape(n, n)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix in place (shards of a dataset sum exactly); returns self."""
        self._check_compatible(other)
        self.matrix += other.matrix
        return self

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        self._check_compatible(other)
        result = self._empty_like()
        result.matrix = self.matrix + other.matrix
        return result

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ConfusionMatrix) and self.class_names == other.class_names
                and np.array_equal(self.matrix, other.matrix))

    __hash__ = None  # mutable

    def _check_compatible(self, other: ConfusionMatrix) -> None:
        if (not isinstance(other, ConfusionMatrix) or other.class_names != self.class_names
                or other.ignore_labels != self.ignore_labels
                or other.scored_classes != self.scored_classes):
            raise ValueError("can only combine confusion matrices over the same classes and "
                             "rules")

    def _empty_like(self) -> ConfusionMatrix:
        return ConfusionMatrix(self.num_classes, self.class_names,
                               ignore_labels=self.ignore_labels,
                               scored_classes=self.scored_classes)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray | Sequence[Sequence[int]],
                    class_names: Sequence[str] | None = None, **rules: Any) -> ConfusionMatrix:
        """Rebuild from a stored (n, n) count matrix (e.g. a record's `confusion_matrix`)."""
        counts = np.asarray(matrix)
        if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
            raise ValueError(f"confusion matrix must be square, got shape {counts.shape}")
        if counts.size and (counts.min() < 0 or not np.array_equal(counts, np.rint(counts))):
            raise ValueError("confusion matrix entries must be non-negative integers")
        result = cls(counts.shape[0], class_names, **rules)
        result.matrix = counts.astype(np.int64)
        return result

    @property
    def num_pixels(self) -> int:
        """Scored (non-void) pixels so far."""
        return int(self.matrix.sum())

    # -- scores ---------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The four FCN metrics as fractions, per-class values, and which classes are absent.

        With hist[i, j] = pixels of ground-truth class i predicted as j (score.py, CVPR §4):
        - pixel_accuracy = trace(hist) / sum(hist)
        - per-class accuracy = diag / rowsum;  mean_accuracy = nanmean over classes
          (a class with no ground-truth pixels is 0/0 = NaN and is excluded)
        - per-class IU = diag / (rowsum + colsum - diag);  mean_iou = nanmean over classes
          (absent from ground truth but predicted: IU = 0 and it counts; absent from both: NaN,
          excluded)
        - fw_iou = sum over classes with freq > 0 of freq * IU, freq = rowsum / sum(hist)
        NaN values (empty matrix, absent classes) are kept as NaN; records write them as null.
        With `scored_classes`, means, f.w. IU and the per-class tables cover those classes only;
        pixel accuracy stays trace / all counted pixels (a labelled pixel predicted as an
        unscored class is an error, as in the ADE20K benchmark).
        """
        hist = self.matrix.astype(np.float64)
        total = hist.sum()
        diag_all = np.diag(hist)
        keep = np.asarray(self.scored_classes)
        diag = diag_all[keep]
        gt_pixels = hist.sum(axis=1)[keep]    # rowsum: ground-truth pixels per class
        pred_pixels = hist.sum(axis=0)[keep]  # colsum: predicted pixels per class
        names = [self.class_names[i] for i in keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            pixel_accuracy = diag_all.sum() / total
            class_accuracy = diag / gt_pixels
            class_iou = diag / (gt_pixels + pred_pixels - diag)
            freq = gt_pixels / total
        present = freq > 0
        return {
            "pixel_accuracy": float(pixel_accuracy),
            "mean_accuracy": nanmean(class_accuracy),
            "mean_iou": nanmean(class_iou),
            "fw_iou": float((freq[present] * class_iou[present]).sum()) if total else math.nan,
            "per_class_iou": dict(zip(names, map(float, class_iou), strict=True)),
            "per_class_accuracy": dict(zip(names, map(float, class_accuracy), strict=True)),
            "absent_from_ground_truth": [name for name, count in zip(
                names, gt_pixels, strict=True) if count == 0],
            "absent_from_both": [name for name, gt, pr in zip(
                names, gt_pixels, pred_pixels, strict=True) if gt == 0 and pr == 0],
            "num_pixels": int(total),
        }


def nanmean(values: Any) -> float:
    """score.py's nanmean (mean IU, mean acc.), returning NaN quietly when every value is NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        array = values if isinstance(values, np.ndarray) else np.fromiter(values, np.float64)
        return float(np.nanmean(array))


def evaluation_record(split: str, confusion: ConfusionMatrix, num_images: int,
                      **fields: Any) -> dict[str, Any]:
    """The "evaluate" JSON record shared by evaluate, reproduce, golden and train.

    Layout: provenance (make_record), `split` and `num_images` at the top for filtering, any
    caller `fields` (variant, backend, weights, ...), and `metrics` holding the summary (fractions
    in [0, 1], per-class dicts keyed by class name, NaN -> null), `confusion_matrix` (n x n ints,
    rows = ground truth), `num_images` and `split`, so `metrics` alone is self-contained.
    """
    metrics = confusion.summary()
    metrics.update(confusion_matrix=confusion.matrix.tolist(), num_images=int(num_images),
                   split=str(split))
    return make_record("evaluate", split=str(split), num_images=int(num_images), **fields,
                       metrics=metrics)


def format_percent(value: float | None, decimals: int = 2) -> str:
    """A fraction as a percentage for tables; "-" where it is undefined (None / NaN)."""
    return "-" if value is None or math.isnan(value) else f"{100.0 * value:.{decimals}f}"


def metrics_table(metrics: Mapping[str, Any], tablefmt: str = "github") -> str:
    """Render a summary (or a record's `metrics`) as two tables, in percent: the four FCN scores,
    then per-class IU and accuracy ("-" where a class is absent, so the value is undefined)."""
    overall = tabulate(
        [[format_percent(metrics[key])
          for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou")]],
        headers=["pixel acc. %", "mean acc. %", "mean IU %", "f.w. IU %"],
        tablefmt=tablefmt, disable_numparse=True, colalign=("right",) * 4)
    per_class_accuracy = metrics.get("per_class_accuracy", {})
    rows = [[name, format_percent(iou), format_percent(per_class_accuracy.get(name))]
            for name, iou in metrics["per_class_iou"].items()]
    per_class = tabulate(rows, headers=["class", "IU %", "acc. %"], tablefmt=tablefmt,
                         disable_numparse=True, colalign=("left", "right", "right"))
    return f"{overall}\n\n{per_class}"


def mean_iou_present(summary: Mapping[str, Any]) -> float:
    """Mean IU over the classes that have ground-truth pixels only (CVPR 2015 footnote on SIFT
    Flow): a class absent from the test labels but predicted somewhere does not pull it down."""
    absent = set(summary["absent_from_ground_truth"])
    return nanmean(value for name, value in summary["per_class_iou"].items()
                   if name not in absent)


def dataset_summary(confusions: Mapping[str, ConfusionMatrix], primary: str, *,
                    notes: Sequence[str] = (), present_only_iou: bool = False
                    ) -> dict[str, Any]:
    """Metrics of a data set with one or more heads: the `primary` head's summary at the top
    level (so records keep the VOC shape), every head's summary and matrix under `heads`,
    `mean_iou_present` where asked (SIFT Flow), and `notes` saying how numbers are defined."""
    heads = {}
    for name, confusion in confusions.items():
        summary = confusion.summary()
        summary["mean_iou_present"] = mean_iou_present(summary)
        summary["confusion_matrix"] = confusion.matrix.tolist()
        heads[name] = summary
    metrics = {key: value for key, value in heads[primary].items()
               if key not in ("confusion_matrix",) and (present_only_iou
                                                        or key != "mean_iou_present")}
    metrics["heads"] = heads
    metrics["notes"] = list(notes)
    return metrics


def heads_table(metrics: Mapping[str, Any], tablefmt: str = "github") -> str:
    """One row per head: the four metrics, plus mean IU over present classes, in percent."""
    rows = []
    for name, head in metrics["heads"].items():
        rows.append([name] + [format_percent(head[key]) for key in (
            "pixel_accuracy", "mean_accuracy", "mean_iou", "mean_iou_present", "fw_iou")])
    return tabulate(rows, headers=["head", "pixel acc. %", "mean acc. %", "mean IU %",
                                   "mean IU (GT-present classes) %", "f.w. IU %"],
                    tablefmt=tablefmt, disable_numparse=True,
                    colalign=("left",) + ("right",) * 5)
