"""What a reproduction reports: per-backend verdicts, the console tables and lines, the notes on
what limits the comparison, and the "reproduce" JSON record.

Works on finished runs (bench.evaluation.runner.RunResult plus bench.evaluation.published
comparisons); the figures are bench.evaluation.plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from bench.core.records import make_record
from bench.evaluation.metrics import evaluation_record, format_percent, heads_table
from bench.evaluation.published import (
    DATASET_METRICS,
    METRIC_LABELS,
    METRICS,
    Comparison,
    Reference,
    overall_verdict,
    reference_metrics,
    reference_split,
)

if TYPE_CHECKING:
    from bench.core.contracts import Dataset
    from bench.evaluation.runner import RunResult
    from bench.model.spec import FcnSpec

SUBSET_VERDICT = "not comparable (subset)"
REFERENCE_POINT_NOTE = ("reference point: the paper's numbers come from the authors' own models, "
                        "not the released weights, so they are context, not a pass/fail target "
                        "(docs/datasets.md)")


@dataclass
class BackendRun:
    """One backend's evaluation and its comparison with the references."""

    name: str
    device: str
    environment: dict[str, Any]
    result: RunResult
    summary: dict[str, Any]
    comparisons: list[Comparison]
    verdict: str
    precision: str = "fp32"  # the backend's RunOptions.precision (RunOptions' default here)


def run_verdict(comparisons: list[Comparison], subset: bool) -> str:
    """A backend's verdict: never judged on a subset of the split, else overall_verdict."""
    return SUBSET_VERDICT if subset else overall_verdict(comparisons)


def reproduce_notes(*, variant: str, split: str, split_name: str, num_images: int,
                    full_count: int, limit: int | None, run_weights: str,
                    metadata: Mapping[str, str], width_divisor: int) -> list[str]:
    """What limits the comparison with the paper (no references, a subset, other weights, a
    narrow test network), one sentence each, for stderr and the record."""
    has_references = bool(reference_metrics(variant, split))
    notes: list[str] = []
    if not has_references:
        notes.append(f"split '{split_name}' has no published reference numbers: metrics are "
                     "reported without a verdict")
    if num_images < full_count:
        notes.append(f"--limit {limit}: {num_images} of the {full_count} images of "
                     f"'{split_name}'" + ("; the comparison with the paper is indicative only"
                                          if has_references else ""))
    if run_weights == "other":
        notes.append(f"weights are not a conversion of the official {variant} caffemodel "
                     f"(kind {metadata.get('kind')!r}, origin {metadata.get('origin')!r})"
                     + (": judged on the README mean IU with the re-training tolerance"
                        if has_references else ""))
    if width_divisor > 1:
        notes.append(f"narrow test-only network (width_divisor {width_divisor}): not the "
                     "FCN of the paper")
    return notes


def weights_summary(path: Path, sha256: str, spec: FcnSpec, run_weights: str,
                    metadata: Mapping[str, str]) -> dict[str, Any]:
    """The record's `weights` entry: file, hash, variant, what the weights are and their origin."""
    return {"path": str(path), "sha256": sha256, "variant": spec.variant,
            "run_weights": run_weights, "width_divisor": spec.width_divisor,
            **{k: metadata.get(k) for k in ("kind", "origin", "source_sha256", "source_name",
                                            "converter_version")}}


# ----------------------------------------------------------------------------------------------
# Console


def _delta(comparison: Comparison) -> str:
    return f"{100.0 * comparison.delta:+.4f}"


def _row_verdict(comparison: Comparison, subset: bool) -> str:
    if subset and comparison.tolerance is not None:
        return "subset only"
    verdict = comparison.verdict
    if comparison.tolerance is not None:
        verdict += f" (±{comparison.tolerance.points:g})"
    return verdict


def comparison_table(runs: Sequence[BackendRun], subset: bool) -> str:
    """metric | paper % (source) | this run % | Δ points | verdict [per backend]."""
    single = len(runs) == 1
    headers = ["metric", "paper % (source)"]
    for run in runs:
        headers += ["this run %", "Δ points", "verdict"] if single else [
            f"{run.name} %", f"Δ {run.name} (points)", f"verdict {run.name}"]
    align = ("left", "left", *(("right", "right", "left") * len(runs)))
    rows = []
    # The data set's own figures (SIFT Flow's geometric accuracy, ...) where the run has them.
    extra = tuple(m for m in DATASET_METRICS if runs[0].summary.get(m) is not None)
    for metric in (*METRICS, *extra):
        # Targets for these weights, and the paper's own tables as context; other
        # re-evaluations of other weights stay in the record only.
        per_run = [[c for c in run.comparisons if c.reference.metric == metric
                    and (c.tolerance is not None or c.reference.kind == "paper")]
                   for run in runs]
        if not per_run[0]:
            row = [METRIC_LABELS[metric], "-"]
            for run in runs:
                row += [format_percent(run.summary[metric], 4), "", ""]
            rows.append(row)
            continue
        for index, comparison in enumerate(per_run[0]):
            ref = comparison.reference
            row = [METRIC_LABELS[metric], f"{ref.percent_text} ({ref.label})"]
            for run_comparisons in per_run:
                mine = run_comparisons[index]
                row += [format_percent(mine.measured, 4), _delta(mine),
                        _row_verdict(mine, subset)]
            rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=align)


def per_class_table(runs: Sequence[BackendRun], paper: Mapping[str, Reference]) -> str:
    """class | IU % per backend | IU % paper (where a source gives per-class IU)."""
    headers = ["class", *(f"IU % {run.name}" for run in runs)]
    if paper:
        headers.append("IU % paper")
    rows = []
    for name in runs[0].summary["per_class_iou"]:
        row = [name, *(format_percent(run.summary["per_class_iou"][name]) for run in runs)]
        if paper:
            row.append(paper[name].percent_text if name in paper else "-")
        rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=("left", *("right",) * (len(headers) - 1)))


def profile_line(run: BackendRun) -> str:
    """Images, wall time, images/s and where the time went, for one backend."""
    timing = run.result.timing
    rate = timing.images_per_s
    shares = timing.as_dict().get("share_of_wall", {})
    parts = ", ".join(f"{label} {100 * shares.get(key, 0.0):.0f}%" for key, label in (
        ("data_wait_s", "data wait"), ("forward_s", "forward+argmax"),
        ("accumulate_s", "accumulate"), ("save_s", "save PNG"), ("checkpoint_s", "checkpoint")))
    resumed = (f", {run.result.resumed_from} images from the checkpoint"
               if run.result.resumed_from else "")
    speed = f"{rate:.2f} images/s" if rate else "no images run"
    return (f"{run.name} ({run.device}): {timing.images} images in {timing.wall_s:.1f} s, "
            f"{speed}{resumed}; {parts}")


def agreement_line(runs: Sequence[BackendRun]) -> str | None:
    """How the confusion matrices of the other backends differ from the first one's (None for
    a single backend)."""
    if len(runs) < 2:
        return None
    base = runs[0].result.confusion.matrix
    lines = []
    for run in runs[1:]:
        other = run.result.confusion.matrix
        if (other == base).all():
            lines.append(f"{runs[0].name} and {run.name}: identical confusion matrices")
        else:
            moved = int(abs(other - base).sum()) // 2
            diff = 100.0 * abs(run.summary["mean_iou"] - runs[0].summary["mean_iou"])
            lines.append(f"{runs[0].name} and {run.name}: confusion matrices differ by {moved:,} "
                         f"pixels; mean IU differs by {diff:.4f} points")
    return "\n".join(lines)


def results_text(runs: Sequence[BackendRun], subset: bool,
                 paper: Mapping[str, Reference]) -> str:
    """The console report after the runs: comparison table, verdicts, backend agreement,
    per-class table and timing profiles."""
    parts = [comparison_table(runs, subset), ""]
    parts += [f"verdict {run.name}: {run.verdict}" for run in runs]
    if any(run.verdict == "reference point" for run in runs):
        parts.append(REFERENCE_POINT_NOTE)
    if len(runs[0].summary.get("heads", {})) > 1:  # every head's metrics (SIFT Flow)
        for run in runs:
            parts += ["", f"heads ({run.name}):", heads_table(run.summary)]
    agreement = agreement_line(runs)
    if agreement:
        parts.append(agreement)
    parts += ["", per_class_table(runs, paper), ""]
    parts += [profile_line(run) for run in runs]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Record


def build_record(*, variant: str, split: str, dataset: Dataset, full_count: int, weights: dict,
                 data_fingerprint: dict, runs: Sequence[BackendRun], notes: list[str],
                 reference_key: str | None = None) -> dict:
    """The "reproduce" record: one row per backend, each the evaluate record of
    bench.evaluation.metrics plus the references, deltas, verdict, images/s and timing profile."""
    rows = []
    for run in runs:
        row = evaluation_record(dataset.name, run.result.confusion, run.result.num_images,
                                backend=run.name, device=run.device, variant=variant)
        for key in ("schema_version", "kind", "provenance"):
            row.pop(key, None)
        row.update(
            precision=run.precision,
            verdict=run.verdict,
            references=[{
                "metric": c.reference.metric, "paper_percent": c.reference.percent_text,
                "source": c.reference.source, "location": c.reference.location,
                "evaluated_by": c.reference.evaluated_by, "kind": c.reference.kind,
                "reference_weights": c.reference.weights, "measured": c.measured,
                "delta_points": 100.0 * c.delta,
                "tolerance_points": c.tolerance.points if c.tolerance else None,
                "verdict": c.verdict} for c in run.comparisons],
            images_per_s=run.result.timing.images_per_s,
            timing=run.result.timing.as_dict(),
            resumed_from=run.result.resumed_from,
            environment=run.environment,
            predictions=str(run.result.predictions_dir) if run.result.predictions_dir else None)
        for key in ("heads", "notes", *DATASET_METRICS):  # multi-head data sets' own figures
            if key in run.summary:
                row["metrics"][key] = run.summary[key]
        rows.append(row)
    return make_record("reproduce", variant=variant, split=dataset.name,
                       split_requested=split, split_source=str(dataset.source),
                       reference_split=reference_key or reference_split(split),
                       dataset=getattr(dataset, "dataset", "voc") or "voc", num_images=len(dataset),
                       split_images=full_count, weights=weights,
                       data_fingerprint=data_fingerprint, notes=notes, rows=rows)
