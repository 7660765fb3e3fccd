"""History of a folder of records: one table row per record over time, and a plot of it.

Rows are records (evaluate, reproduce, latency, golden, pytest-benchmark) sorted by time and
commit; columns are the key metrics of every measured cell (e.g. `mean_iou [fcn8s/torch]`,
`p50_ms [fcn8s/torch/model/500x500]`). Framework-free (pandas, matplotlib Agg); never imports
torch or tensorflow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.compare import (
    IDENTITY_KEYS,
    RecordError,
    Row,
    document_kind,
    is_number,
    json_files,
    read_json,
    rows_from_document,
)
from bench.errors import UsageError
from bench.records import atomic_write_bytes, atomic_write_text

DEFAULT_METRICS = ("mean_iou", "pixel_accuracy", "p50_ms")
META_COLUMNS = ("time", "commit", "kind", "file")
HISTORY_FORMATS = ("github", "plain", "csv")


def _cell_names(rows: Sequence[Row]) -> dict[int, str]:
    """A short name per row: its identity values, leaving out keys equal in every row."""
    values: dict[str, set[str]] = {}
    for row in rows:
        identity = dict(row.identity)
        for key in IDENTITY_KEYS:
            values.setdefault(key, set()).add(identity.get(key, ""))
    varying = [k for k in IDENTITY_KEYS if k != "kind" and len(values.get(k, ())) > 1]
    names = {}
    for row in rows:
        identity = dict(row.identity)
        parts = [identity[k] for k in varying if identity.get(k)]
        names[id(row)] = "/".join(parts) or "all"
    return names


def load_history(path: str | Path, metrics: Sequence[str] = DEFAULT_METRICS) -> pd.DataFrame:
    """One row per record under `path` (sorted by time, then commit), one column per
    (metric, cell). Non-record JSON files in a folder are skipped."""
    path = Path(path)
    entries: list[tuple[dict, list[Row]]] = []
    for file in json_files(path):
        doc = read_json(file)
        if document_kind(doc) is None:
            if path.is_dir():
                continue
            raise RecordError(file, "not an fcn-bench record nor a pytest-benchmark file")
        rows = rows_from_document(doc, file)
        first = rows[0] if rows else None
        commit = first.commit if first else None
        meta = {"time": first.time if first else None,
                "commit": commit[:10] if isinstance(commit, str) else None,
                "kind": doc.get("kind", "pytest-benchmark"),
                "file": str(file.relative_to(path)) if path.is_dir() else file.name}
        entries.append((meta, rows))
    if not entries:
        raise RecordError(path, "no fcn-bench or pytest-benchmark records here")
    names = _cell_names([row for _, rows in entries for row in rows])
    table = []
    for meta, rows in entries:
        line = dict(meta)
        for row in rows:
            for metric in metrics:
                value = row.metrics.get(metric)
                if is_number(value):
                    line[f"{metric} [{names[id(row)]}]"] = float(value)
        table.append(line)
    frame = pd.DataFrame(table)
    # Grouped by metric in the order asked for, then by cell name.
    order = {metric: index for index, metric in enumerate(metrics)}
    metric_columns = sorted((c for c in frame.columns if c not in META_COLUMNS),
                            key=lambda c: (order[c.split(" [")[0]], c))
    frame = frame[[*META_COLUMNS, *metric_columns]]
    # Records without a time sort last; equal times keep commit order.
    return frame.sort_values(["time", "commit"], na_position="last", kind="stable").reset_index(
        drop=True)


def render_history(frame: pd.DataFrame, fmt: str = "plain") -> str:
    if fmt not in HISTORY_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(HISTORY_FORMATS)}")
    if fmt == "csv":
        return frame.to_csv(index=False)
    shown = frame.astype(object).where(frame.notna(), "")
    for column in frame.columns:
        if column not in META_COLUMNS:
            shown[column] = [f"{v:.4g}" if isinstance(v, float) else v for v in shown[column]]
    return tabulate(shown.values.tolist(), headers=list(frame.columns),
                    tablefmt="github" if fmt == "github" else "simple",
                    disable_numparse=True) + "\n"


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def plot_history(frame: pd.DataFrame, path: str | Path) -> Path:
    """PNG: accuracy metrics (%, top) and latencies (ms, bottom) against the record sequence,
    x labelled by commit (or time). Written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, never a window
    import matplotlib.pyplot as plt

    metric_columns = [c for c in frame.columns if c not in META_COLUMNS]
    timing = [c for c in metric_columns if c.split(" ")[0].endswith("_ms")]
    accuracy = [c for c in metric_columns if c not in timing]
    panels = [(cols, label, scale) for cols, label, scale in
              ((accuracy, "accuracy (%)", 100.0), (timing, "latency (ms)", 1.0)) if cols]
    if not panels:
        raise UsageError("nothing to plot: the records have none of the requested metrics")
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), sharex=True,
                                squeeze=False)
    x = np.arange(len(frame))
    for axis, (columns, label, scale) in zip(axes[:, 0], panels, strict=True):
        for column in columns:
            values = frame[column].to_numpy(dtype=float) * scale
            present = ~np.isnan(values)  # each cell appears only in its own records
            axis.plot(x[present], values[present], marker="o", label=column)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        # Outside the axes: a history has many cells, and the lines matter more than the labels.
        axis.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ticks = [c if isinstance(c, str) else (t or "?")[:16]
             for c, t in zip(frame["commit"], frame["time"], strict=True)]
    axes[-1, 0].set_xticks(x, ticks, rotation=45, ha="right", fontsize="small")
    axes[-1, 0].set_xlabel("record (commit)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
