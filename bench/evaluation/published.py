"""Published FCN numbers and their tolerances, loaded from reference_results/*.csv (stdlib only).

No number is typed into code: every value comes from the CSV files with its source, split and
the weights it belongs to (see reference_results/README.md). Percentages are kept as printed
(so "65.0" keeps its one decimal); `Reference.value` is the fraction the metrics module uses.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from bench.core.errors import DataError
from bench.core.records import REFERENCE_RESULTS

REFERENCE_DIR = REFERENCE_RESULTS
METRICS = ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou")
# Metrics only some data sets have (docs/datasets.md): SIFT Flow's mean IU over the classes
# present in the test labels (CVPR 2015 Table 5) and its geometric head's pixel accuracy.
DATASET_METRICS = ("mean_iou_present", "geometric_accuracy")
METRIC_LABELS = {"pixel_accuracy": "pixel acc.", "mean_accuracy": "mean acc.",
                 "mean_iou": "mean IU", "fw_iou": "f.w. IU",
                 "mean_iou_present": "mean IU (GT-present classes)",
                 "geometric_accuracy": "geom. acc."}
# What a run's weights are, for choosing tolerances: the released "heavy" caffemodels, the
# original CVPR caffemodels, the CSAIL ADE20K FCN-8s, or anything else (trained here...).
RUN_WEIGHTS = ("released-heavy", "cvpr2015", "released-csail", "other")
# Reference-table split keys of the other data sets: (data set, split name) -> key.
DATASET_SPLIT_KEYS = {("nyud", "test"): "nyud-test", ("siftflow", "test"): "siftflow-test",
                      ("pascalcontext", "val"): "pascalcontext-val",
                      ("ade20k", "validation"): "ade20k-val"}
# Split names of `reproduce --split` -> split keys of the reference tables.
SPLIT_KEYS = {"seg11valid": "seg11valid", "val": "voc2012-val"}
# Caffe model file stems (as recorded in a converted archive's `origin`, "caffe:<stem>").
_ORIGIN_WEIGHTS = {
    "fcn32s-heavy-pascal": "released-heavy", "fcn16s-heavy-pascal": "released-heavy",
    "fcn8s-heavy-pascal": "released-heavy", "fcn8s-atonce-pascal": "released-heavy",
    "fcn-32s-pascal": "cvpr2015", "fcn-16s-pascal": "cvpr2015", "fcn-8s-pascal": "cvpr2015",
}
_ORIGIN_VARIANT = {
    "fcn32s-heavy-pascal": "fcn32s", "fcn16s-heavy-pascal": "fcn16s",
    "fcn8s-heavy-pascal": "fcn8s", "fcn8s-atonce-pascal": "fcn8s-atonce",
    "fcn-32s-pascal": "fcn32s", "fcn-16s-pascal": "fcn16s", "fcn-8s-pascal": "fcn8s",
}


@dataclass(frozen=True)
class Reference:
    """One published number (a row of accuracy.csv)."""

    model: str  # as the source names it, e.g. "FCN-8s heavy"
    variant: str  # harness variant (fcn8s...), or another name / "" for non-harness models
    weights: str  # released-heavy | cvpr2015 | cvpr2015-fixed | cvpr2015-preliminary | ""
    split: str  # seg11valid | voc2011-val | voc2011-test | voc2012-test
    metric: str  # pixel_accuracy | mean_accuracy | mean_iou | fw_iou | class_iou
    class_name: str | None
    percent_text: str  # exactly as printed, e.g. "63.6261"
    kind: str  # paper | claimed | reevaluation | independent
    source: str  # short: "CVPR 2015 Table 2"
    location: str  # paper id or repository + file
    evaluated_by: str
    note: str

    @property
    def percent(self) -> float:
        return float(self.percent_text)

    @property
    def value(self) -> float:
        """The number as a fraction (what bench.evaluation.metrics reports)."""
        return self.percent / 100.0

    @property
    def decimals(self) -> int:
        return len(self.percent_text.partition(".")[2])

    @property
    def label(self) -> str:
        return f"{self.source}, {self.evaluated_by}"


@dataclass(frozen=True)
class Tolerance:
    """How close a run must be to a kind of reference (a row of tolerances.csv)."""

    run_weights: str
    reference_kind: str
    reference_weights: str
    metric: str  # a metric name or "*"
    points: float  # percentage points
    decides_verdict: bool
    rationale: str
    # Data sets the row applies to (reference split prefix); empty: PASCAL VOC.
    datasets: tuple[str, ...] = ()
    # A reference point: the published number is for other weights of the same recipe, so the
    # verdict says how near it is, never pass/fail (docs/datasets.md, "Tolerance policy").
    reference_point: bool = False

    @property
    def fraction(self) -> float:
        return self.points / 100.0


@dataclass(frozen=True)
class Comparison:
    """A measured metric against one reference."""

    reference: Reference
    tolerance: Tolerance | None  # None: a number for other weights, shown as context
    measured: float  # fraction

    @property
    def delta(self) -> float:
        return self.measured - self.reference.value

    @property
    def within(self) -> bool | None:
        if self.tolerance is None:
            return None
        # Compare in printed precision: 0.05 points means |delta| <= 0.05 after rounding noise.
        return abs(self.delta) * 100.0 <= self.tolerance.points + 1e-9

    @property
    def verdict(self) -> str:
        if self.tolerance is None:
            return f"context ({self.reference.weights} weights)"
        if self.tolerance.reference_point:
            return ("reference point (near the paper)" if self.within
                    else "reference point (far from the paper)")
        if not self.tolerance.decides_verdict:
            return "consistent" if self.within else "inconsistent"
        return "reproduced within tolerance" if self.within else "differs"


def _read_csv(name: str) -> list[dict[str, str]]:
    path = REFERENCE_DIR / name
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as error:
        hint = ("" if REFERENCE_DIR.is_dir() else "; fcn-bench reads the paper's numbers from "
                "reference_results/ of its checkout: run it from a clone, or set "
                "FCN_BENCH_REFERENCE_RESULTS to that folder")
        raise DataError(path, f"cannot read reference table: {error.strerror or error}{hint}"
                        ) from None


@cache
def load_references() -> tuple[Reference, ...]:
    rows = _read_csv("accuracy.csv")
    refs = []
    for line, row in enumerate(rows, start=2):
        try:
            float(row["percent"])
            refs.append(Reference(
                model=row["model"], variant=row["variant"], weights=row["weights"],
                split=row["split"], metric=row["metric"], class_name=row["class_name"] or None,
                percent_text=row["percent"], kind=row["kind"], source=row["source"],
                location=row["location"], evaluated_by=row["evaluated_by"], note=row["note"]))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(REFERENCE_DIR / "accuracy.csv",
                            f"line {line} is malformed ({error})") from None
    return tuple(refs)


@cache
def load_tolerances() -> tuple[Tolerance, ...]:
    tolerances = []
    for line, row in enumerate(_read_csv("tolerances.csv"), start=2):
        try:
            tolerances.append(Tolerance(
                run_weights=row["run_weights"], reference_kind=row["reference_kind"],
                reference_weights=row["reference_weights"], metric=row["metric"],
                points=float(row["tolerance_points"]),
                decides_verdict=row["decides_verdict"] == "yes", rationale=row["rationale"],
                datasets=tuple(d for d in (row.get("datasets") or "").split(";") if d),
                reference_point=row["decides_verdict"] == "reference"))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(REFERENCE_DIR / "tolerances.csv",
                            f"line {line} is malformed ({error})") from None
    return tuple(tolerances)


def reference_split(split: str, dataset: str = "voc") -> str:
    """The reference-table key of a split name (a list file path has none), e.g. "val" ->
    "voc2012-val", or ("test", dataset="nyud") -> "nyud-test"."""
    if dataset != "voc":
        return DATASET_SPLIT_KEYS.get((dataset, split), f"{dataset}-{split}")
    return SPLIT_KEYS.get(split, split)


def dataset_of_split(split_key: str) -> str:
    """Which data set a reference-table split key belongs to ("pascalcontext33-val" ->
    "pascalcontext"); VOC keys have no data-set prefix."""
    for dataset in ("nyud", "siftflow", "pascalcontext", "ade20k"):
        if split_key.startswith(dataset):
            return dataset
    return "voc"


def reference_metrics(variant: str, split: str, *, weights: str | None = None,
                      metric: str | None = None, kind: str | None = None) -> list[Reference]:
    """Published numbers for a variant on a split (optionally only some weights/metric/kind),
    in table order: paper first, then the README claims and re-evaluations."""
    split = reference_split(split)
    return [ref for ref in load_references()
            if ref.variant == variant and ref.split == split
            and (weights is None or ref.weights == weights)
            and (metric is None or ref.metric == metric)
            and (kind is None or ref.kind == kind)]


def per_class_iou(variant: str, split: str, weights: str | None = None) -> dict[str, Reference]:
    """{class name: Reference} where a source gives per-class IU (empty where none does)."""
    return {ref.class_name: ref
            for ref in reference_metrics(variant, split, weights=weights, metric="class_iou")
            if ref.class_name}


def tolerance(reference: Reference, run_weights: str = "released-heavy") -> Tolerance | None:
    """The tolerance for comparing a run with `run_weights` to `reference`, None if the
    reference belongs to other weights (then it is context, not a target)."""
    dataset = dataset_of_split(reference.split)
    for tol in load_tolerances():
        if (tol.run_weights == run_weights and tol.reference_kind == reference.kind
                and tol.reference_weights == reference.weights
                and tol.metric in ("*", reference.metric)
                and dataset in (tol.datasets or ("voc",))):
            return tol
    return None


def acceptance(variant: str, split: str, run_weights: str = "released-heavy"
               ) -> list[tuple[Reference, Tolerance]]:
    """The (reference, tolerance) pairs that decide the verdict; for converted official weights
    on seg11valid: the Chainer and PyTorch re-evaluations, all four metrics, 0.05 points."""
    pairs = []
    for ref in reference_metrics(variant, split):
        tol = tolerance(ref, run_weights)
        if tol is not None and tol.decides_verdict and ref.metric in METRICS:
            pairs.append((ref, tol))
    return pairs


def compare(summary: Mapping[str, float], variant: str, split: str,
            run_weights: str = "released-heavy") -> list[Comparison]:
    """Every summary metric against every published number for the variant and split."""
    comparisons = []
    for ref in reference_metrics(variant, split):
        if ref.metric in (*METRICS, *DATASET_METRICS) and summary.get(ref.metric) is not None:
            comparisons.append(Comparison(ref, tolerance(ref, run_weights),
                                          float(summary[ref.metric])))
    return comparisons


def overall_verdict(comparisons: list[Comparison]) -> str:
    """"reproduced within tolerance" when every deciding comparison holds, "differs" when one
    fails, "reference point" when only reference points exist (the paper's models are not the
    released ones), "no reference" when none decides (a split without published numbers)."""
    deciding = [c for c in comparisons if c.tolerance is not None and c.tolerance.decides_verdict]
    if not deciding:
        if any(c.tolerance is not None and c.tolerance.reference_point for c in comparisons):
            return "reference point"
        return "no reference"
    return "reproduced within tolerance" if all(c.within for c in deciding) else "differs"


def run_weights_kind(metadata: Mapping[str, str], variant: str) -> str:
    """"released-heavy" / "cvpr2015" for a conversion of that variant's official caffemodel
    (per the archive's kind and origin metadata), else "other".

    The origin only records the source file's name, so the shape is checked too: a narrow
    test network or one with other classes cannot be the official VGG16 FCN, whatever its
    source file was called, and must not be judged against the 0.05-point tolerance.
    """
    origin = str(metadata.get("origin", ""))
    stem = origin.removeprefix("caffe:") if origin.startswith("caffe:") else ""
    full_size = (metadata.get("width_divisor", "1") == "1"
                 and metadata.get("num_classes", "21") == "21")
    if metadata.get("kind") == "trained" and _ORIGIN_VARIANT.get(stem) == variant and full_size:
        return _ORIGIN_WEIGHTS[stem]
    return "other"


@cache
def _latency_rows() -> tuple[dict[str, str], ...]:
    return tuple(_read_csv("paper_latency.csv"))


def paper_latency_ms(variant: str) -> dict | None:
    """The paper's forward time for a variant: {"latency_ms", "hardware", "source", "input",
    "note"}. fcn32s -> 210 ms (CVPR Tab. 1, 500x500), fcn8s -> ~175 ms (CVPR Tab. 3, typical
    image); fcn16s / fcn8s-atonce -> the closest published number, said so in the note."""
    rows = [row for row in _latency_rows() if row["paper_default"] == "yes"]
    exact = [row for row in rows if row["variant"] == variant]
    proxy = [row for row in rows if variant in row["proxy_for"].split(";")]
    if exact:
        row, prefix = exact[0], ""
    elif proxy:
        row = proxy[0]
        prefix = (f"no {variant} time is published; closest: {row['model']} "
                  f"({row['proxy_note']}). ")
    else:
        return None
    return {
        "latency_ms": float(row["latency_ms"]),
        "hardware": f"{row['hardware']} ({row['framework']})",
        "source": row["source"],
        "input": row["compare_input"],
        "note": f"{prefix}{row['statistic']}; input {row['input']}; {row['note']}",
    }
