"""Figures of a reproduction: per-class IU bars (against the paper where it has per-class numbers)
and the confusion matrix as a row-normalised heat map. PNG files, matplotlib's Agg backend (no
display needed).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.core.atomic import atomic_write_bytes
from bench.core.outputs import safe_file_part, writing
from bench.data.labels import VOC_CLASSES
from bench.evaluation.metrics import nanmean

if TYPE_CHECKING:
    from bench.evaluation.published import Reference
    from bench.evaluation.report import BackendRun


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path) -> Path:
    """Render to PNG bytes, then write atomically (no half-written figure on disk)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    with writing(path, "figure"):
        atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def per_class_iou_bars(path: str | Path, runs: Mapping[str, Mapping[str, float]],
                       class_names: Sequence[str], *, paper: Mapping[str, float] | None = None,
                       paper_label: str = "paper", title: str = "") -> Path:
    """Grouped bars of per-class IU in percent: one bar per run (backend) and, where given, the
    paper's per-class value (classes the paper does not report get no paper bar).

    A run's undefined IU (class absent from both ground truth and predictions, NaN) gets no bar
    and an "n/a" mark, so it cannot be mistaken for a measured 0; the legend gives each run's
    mean IU.
    """
    plt = _pyplot()
    series: list[tuple[str, list[float]]] = [
        (f"{name} (mean IU {100.0 * nanmean(values.values()):.2f}%)",
         [100.0 * float(values.get(c, np.nan)) for c in class_names])
        for name, values in runs.items()]
    if paper:
        series.append((paper_label, [100.0 * paper[c] if c in paper else np.nan
                                     for c in class_names]))
    positions = np.arange(len(class_names))
    width = 0.8 / max(1, len(series))
    # ADE20K's 150 classes: bounded figure (40 in), ticks in a smaller font.
    figure, axes = plt.subplots(figsize=(min(40.0, max(8.0, 0.55 * len(class_names))), 4.5))
    for index, (label, values) in enumerate(series):
        offsets = positions - 0.4 + width * (index + 0.5)
        is_paper = bool(paper) and index == len(series) - 1
        axes.bar(offsets, np.nan_to_num(values, nan=0.0), width, label=label,
                 hatch="//" if is_paper else None)
        if not is_paper:
            for offset, value in zip(offsets, values, strict=True):
                if np.isnan(value):
                    axes.text(offset, 1.0, "n/a", rotation=90, ha="center", va="bottom",
                              fontsize="x-small", color="grey")
    axes.set_xticks(positions, class_names, rotation=60, ha="right",
                    fontsize="medium" if len(class_names) <= 60 else 5)
    axes.set_ylabel("IU (%)")
    axes.set_ylim(0, 100)
    if any(np.isnan(v) for _, values in series[:len(runs)] for v in values):
        title += ("\n" if title else "") + "n/a: class absent from ground truth and predictions"
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return _save(figure, path)


def confusion_heatmap(path: str | Path, matrix: np.ndarray, class_names: Sequence[str], *,
                      title: str = "") -> Path:
    """Row-normalised confusion matrix (each ground-truth row sums to 1; rows without pixels
    stay empty), ground truth on the y axis, prediction on the x axis."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(rows > 0, counts / rows, np.nan)
    size = min(30.0, max(6.0, 0.42 * len(class_names)))  # bounded for ADE20K's 151
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(normalised, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ticks = np.arange(len(class_names))
    font = "medium" if len(class_names) <= 60 else 4
    axes.set_xticks(ticks, class_names, rotation=90, fontsize=font)
    axes.set_yticks(ticks, class_names, fontsize=font)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    if (rows == 0).any():  # say what the blank rows mean instead of leaving them unexplained
        title += ("\n" if title else "") + "blank rows: class absent from ground truth"
    axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the row")
    return _save(figure, path)


def write_reproduce_plots(plots_dir: Path, variant: str, split_name: str,
                          runs: Sequence[BackendRun], paper: Mapping[str, Reference]
                          ) -> list[Path]:
    """A reproduction's figures: per-class IU bars of every backend (and the paper's, where it
    has per-class numbers), then one confusion heat map per backend, with the data set's class
    names; a multi-head data set (SIFT Flow) gets the figures of every head, files suffixed by
    the head's name. Returns the files."""
    safe = safe_file_part(split_name)
    paper_values = {name: ref.value for name, ref in paper.items()}
    paper_label = f"paper ({next(iter(paper.values())).source})" if paper else "paper"
    heads = list(runs[0].result.confusions)
    written = []
    for index, head in enumerate(heads):
        tag = f"-{head}" if len(heads) > 1 else ""
        where = f"{variant} on {split_name}" + (f" ({head} head)" if tag else "")
        names = _class_names(runs[0].result.confusions[head])
        written.append(per_class_iou_bars(
            plots_dir / f"{variant}-{safe}{tag}-per-class-iou.png",
            {run.name: run.result.confusions[head].summary()["per_class_iou"] for run in runs},
            names, paper=(paper_values or None) if index == 0 else None,
            paper_label=paper_label, title=f"{where}: per-class IU"))
        for run in runs:
            written.append(confusion_heatmap(
                plots_dir / f"{variant}-{safe}{tag}-{run.name}-confusion.png",
                run.result.confusions[head].matrix, names,
                title=f"{where} ({run.name}), row-normalised"))
    return written


def _class_names(confusion: Any) -> Sequence[str]:
    """The matrix's class names (the data set's), VOC's for a plain 21-class matrix."""
    names = getattr(confusion, "class_names", None)
    return tuple(names) if names else VOC_CLASSES
