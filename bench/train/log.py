"""The training log (CSV of loss windows and validation metrics, whole rows even after a kill),
its curves (one PNG) and the names of a run's output files.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.atomic import atomic_write_bytes, atomic_write_text

LOG_NAME = "train_log.csv"
CURVES_NAME = "curves.png"
RECORD_NAME = "train_record.json"
LOG_COLUMNS = ("iteration", "phase", "images", "loss", "pixel_accuracy", "mean_accuracy",
               "mean_iou", "fw_iou", "lr", "elapsed_s", "images_per_s")


class TrainLog:
    """CSV of training loss (every `log_every` updates) and validation metrics.

    Each row is one `write` on an O_APPEND file, so a kill leaves whole rows; on resume, rows after
    the snapshot's iteration are dropped (they will be produced again).
    """

    def __init__(self, path: Path, resume_iteration: int | None):
        self.path = path
        if resume_iteration is None or not path.is_file():
            atomic_write_text(path, ",".join(LOG_COLUMNS) + "\n")
        else:
            rows = [row for row in read_log(path) if int(row["iteration"]) <= resume_iteration]
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, LOG_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(path, buffer.getvalue())

    def append(self, **values: Any) -> None:
        row = [_format_cell(values.get(column)) for column in LOG_COLUMNS]
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(",".join(row) + "\n")


def _format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_curves(log_path: Path, png_path: Path, title: str) -> None:
    """Training loss and validation metrics against iteration, one PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = read_log(log_path)
    train = [(int(r["iteration"]), float(r["loss"])) for r in rows
             if r["phase"] == "train" and r["loss"]]
    val = [r for r in rows if r["phase"] == "val"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, metric_axes = figure.subplots(1, 2)
    if train:
        loss_axes.plot(*zip(*train, strict=True), label="train (window mean)")
    val_loss = [(int(r["iteration"]), float(r["loss"])) for r in val if r["loss"]]
    if val_loss:
        loss_axes.plot(*zip(*val_loss, strict=True), "o-", label="val (mean per image)")
    loss_axes.set(xlabel="iteration", ylabel="loss per image", title="loss")
    loss_axes.legend()
    for key in ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou"):
        points = [(int(r["iteration"]), float(r[key])) for r in val if r[key]]
        if points:
            metric_axes.plot(*zip(*points, strict=True), "o-", label=key)
    metric_axes.set(xlabel="iteration", ylabel="fraction", title="validation", ylim=(0, 1))
    metric_axes.legend()
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(png_path, buffer.getvalue())
