"""History of a folder of records: one table row per record over time, and a plot of it.

Rows are records (evaluate, reproduce, latency, golden, pytest-benchmark) sorted by time and
commit; columns are the key metrics of every measured cell (e.g. `mean_iou [fcn8s/torch]`,
`p50_ms [fcn8s/torch/model/500x500]`). Pandas and matplotlib (Agg backend).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.ci.record_files import RecordError, document_kind, json_files, read_json
from bench.ci.record_rows import IDENTITY_KEYS, Row, is_number, rows_from_document
from bench.ci.regression_table import letters, wrap_items
from bench.core.atomic import atomic_write_bytes, atomic_write_text
from bench.core.errors import UsageError

DEFAULT_METRICS = ("mean_iou", "pixel_accuracy", "p50_ms")
META_COLUMNS = ("time", "commit", "kind", "file", "dirty")
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


def _dirty(doc: object) -> bool | None:
    """Whether the record was made from a tree with uncommitted changes (None: unknown)."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("commit_info"), dict):  # pytest-benchmark
        dirty = doc["commit_info"].get("dirty")
    else:
        git = (doc.get("provenance") or {}).get("git") if isinstance(doc.get("provenance"),
                                                                    dict) else None
        dirty = git.get("dirty") if isinstance(git, dict) else None
    return dirty if isinstance(dirty, bool) else None


def load_history(path: str | Path, metrics: Sequence[str] = DEFAULT_METRICS, *,
                 require: bool = False) -> pd.DataFrame:
    """One row per record under `path` (sorted by time, then commit), one column per
    (metric, cell). Non-record JSON files in a folder are skipped. With `require` (metrics the
    user named), a metric that no record has is refused with the list of those they have.
    An undefined value (null in the record) is kept as NaN and shown as UNDEFINED, not blank."""
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
                "file": str(file.relative_to(path)) if path.is_dir() else file.name,
                "dirty": _dirty(doc)}
        entries.append((meta, rows))
    if not entries:
        raise RecordError(path, "no fcn-bench or pytest-benchmark records here")
    names = _cell_names([row for _, rows in entries for row in rows])
    table = []
    cells: dict[str, dict[str, str]] = {}  # column -> identity of its cell (for rendering)
    if require:
        _check_metrics(path, metrics, [row for _, rows in entries for row in rows])
    undefined: set[tuple[str, str]] = set()  # (file, column) whose value is NaN in the record
    for meta, rows in entries:
        line = dict(meta)
        for row in rows:
            for metric in metrics:
                value = row.metrics.get(metric)
                if is_number(value) and np.isnan(value):
                    undefined.add((meta["file"], f"{metric} [{names[id(row)]}]"))
                if is_number(value):
                    column = f"{metric} [{names[id(row)]}]"
                    line[column] = float(value)
                    cells[column] = dict(row.identity)
        table.append(line)
    frame = pd.DataFrame(table)
    # Grouped by metric in the order asked for, then by cell name.
    order = {metric: index for index, metric in enumerate(metrics)}
    metric_columns = sorted((c for c in frame.columns if c not in META_COLUMNS),
                            key=lambda c: (order[c.split(" [")[0]], c))
    frame = frame[[*META_COLUMNS, *metric_columns]]
    # Records without a time sort last; equal times keep commit order.
    frame = frame.sort_values(["time", "commit"], na_position="last", kind="stable").reset_index(
        drop=True)
    frame.attrs["cells"] = cells
    frame.attrs["undefined"] = undefined
    return frame


def _check_metrics(path: Path, metrics: Sequence[str], rows: Sequence[Row]) -> None:
    """Refuse metrics that no record has (a typo exited 0 with an empty table)."""
    present = {name for row in rows for name, value in row.metrics.items() if is_number(value)}
    missing = [metric for metric in metrics if metric not in present]
    if missing:
        raise UsageError(f"no record under {path} has metric {', '.join(missing)}; they have: "
                         f"{', '.join(sorted(present)) or 'none'}")


UNDEFINED = "undefined"  # shown for a NaN the record holds (null), unlike a blank: not measured


# Short column labels: the table says "mIU A", the legend under it says what A is.
SHORT_METRICS = {"mean_iou": "mIU", "pixel_accuracy": "pix acc", "mean_accuracy": "mean acc",
                 "fw_iou": "fwIU", "p50_ms": "p50 ms", "p90_ms": "p90 ms", "p99_ms": "p99 ms",
                 "mean_ms": "mean ms", "images_per_s": "img/s", "first_call_ms": "1st ms"}
TABLE_WIDTH = 120
DIRTY_MARK = "*"


def _metric_and_cell(column: str) -> tuple[str, str]:
    metric, _, rest = column.partition(" [")
    return metric, rest[:-1] if rest.endswith("]") else rest


def _legend(columns: Sequence[str], cells: dict[str, dict[str, str]]
            ) -> tuple[dict[str, str], list[tuple[str, str]], str]:
    """Short header per column, the legend (letter, cell) and a caption of what all share."""
    names = list(dict.fromkeys(_metric_and_cell(c)[1] for c in columns))
    identities = [next((cells.get(c, {}) for c in columns if _metric_and_cell(c)[1] == name),
                       {}) for name in names]
    keys = [k for k in IDENTITY_KEYS if k != "kind" and any(k in i for i in identities)]
    varying = [k for k in keys if len({i.get(k, "") for i in identities}) > 1]
    constant = [_shown(k, identities[0][k]) for k in keys
                if k not in varying and identities[0].get(k)]
    single = len(names) == 1
    labels = dict(zip(names, [""] if single else letters(len(names)), strict=True))
    headers = {}
    for column in columns:
        metric, name = _metric_and_cell(column)
        short = SHORT_METRICS.get(metric, metric)
        headers[column] = f"{short} {labels[name]}".strip()
    legend = [] if single else [
        (labels[name], "/".join(_shown(k, i[k]) for k in varying if i.get(k)) or name)
        for name, i in zip(names, identities, strict=True)]
    return headers, legend, ", ".join(constant)


# Identity values that read by themselves (fcn8s, torch, cpu, fp32, model, 500x500, seg11valid);
# the others are shown with their key (batch 1, compile no).
_SELF_EXPLAINING = frozenset({"kind", "benchmark", "variant", "backend", "device", "precision",
                              "mode", "size", "split"})


def _shown(key: str, value: str) -> str:
    return value if key in _SELF_EXPLAINING else f"{key} {value}"


def _when(time: object, digits: int = 16) -> str:
    """2026-03-01T12:34:56Z -> 2026-03-01 12:34 (or to the second with `digits` 19)."""
    return str(time).replace("T", " ")[:digits] if isinstance(time, str) else ""


def _time_digits(times: Sequence[object]) -> int:
    """Minutes, unless two records of a table share a minute: then seconds."""
    minutes = [_when(t) for t in times if isinstance(t, str)]
    return 16 if len(set(minutes)) == len(minutes) else 19


def _commit(commit: object, dirty: object) -> str:
    text = str(commit)[:8] if isinstance(commit, str) else "?"
    return text + (DIRTY_MARK if dirty is True else "")


def _value(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) and not np.isnan(value) else ""


def _chunks(headers: list[str], body: list[list[str]], fixed: int, tablefmt: str,
            width: int) -> list[list[int]]:
    """Column index groups (the first `fixed` in each) whose tables fit in `width` characters,
    measured on the rendered table itself."""
    def fits(group: list[int]) -> bool:
        text = tabulate([[row[i] for i in group] for row in body],
                        headers=[headers[i] for i in group], tablefmt=tablefmt,
                        disable_numparse=True)
        return max(len(line) for line in text.splitlines()) <= width

    groups: list[list[int]] = []
    current = list(range(fixed))
    for index in range(fixed, len(headers)):
        if len(current) > fixed and not fits([*current, index]):
            groups.append(current)
            current = list(range(fixed))
        current.append(index)
    groups.append(current)
    return groups


def render_history(frame: pd.DataFrame, fmt: str = "plain", width: int = TABLE_WIDTH) -> str:
    """One table per record kind: rows = records (time, commit, * = uncommitted changes),
    columns = metric and a short cell letter explained by the legend under the table; tables
    wider than `width` are split. `csv` is the whole frame with full column names."""
    if fmt not in HISTORY_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(HISTORY_FORMATS)}")
    if fmt == "csv":
        return frame.to_csv(index=False)
    cells = frame.attrs.get("cells", {})
    tablefmt = "github" if fmt == "github" else "simple"
    sections = []
    for kind in dict.fromkeys(frame["kind"]):
        sub = frame[frame["kind"] == kind]
        undefined = frame.attrs.get("undefined", set())
        files = set(sub["file"])
        columns = [c for c in frame.columns if c not in META_COLUMNS and (
            sub[c].notna().any() or any((f, c) in undefined for f in files))]
        headers, legend, caption = _legend(columns, cells)
        head = ["time", "commit"]
        digits = _time_digits(list(sub["time"]))
        body = [[_when(t, digits), _commit(c, d),
                 *(UNDEFINED if (f, column) in undefined else _value(v)
                   for column, v in zip(columns, values, strict=True))]
                for t, c, d, f, *values in zip(sub["time"], sub["commit"], sub["dirty"],
                                               sub["file"], *(sub[c] for c in columns),
                                               strict=True)]
        if len({tuple(row[:2]) for row in body}) < len(body):  # same time and commit: say which
            head.append("file")
            body = [[*row[:2], file, *row[2:]] for row, file in zip(body, sub["file"],
                                                                    strict=True)]
        all_headers = [*head, *(headers[c] for c in columns)]
        count = f"{len(sub)} record{'s' if len(sub) != 1 else ''}"
        title = f"{kind}: {count}" + (f" ({caption})" if caption else "")
        lines = [f"### {title}" if fmt == "github" else title, ""]
        for group in _chunks(all_headers, body, len(head), tablefmt, width):
            lines.append(tabulate([[row[i] for i in group] for row in body],
                                  headers=[all_headers[i] for i in group], tablefmt=tablefmt,
                                  disable_numparse=True))
            lines.append("")
        if legend:
            lines += wrap_items("legend:", [f"{letter} = {name}" for letter, name in legend], width)
            lines.append("")
        sections.append("\n".join(lines))
    text = "\n".join(sections)
    if (frame["dirty"] == True).any():  # noqa: E712 (None/NaN mean unknown)
        text += f"{DIRTY_MARK} after a commit: made with uncommitted changes\n"
    return text


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


# Fractions drawn in percent; *_ms in the latency panel; anything else (images/s...) on its own.
ACCURACY_METRICS = frozenset({"pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"})
_BACKEND_MARKERS = {"torch": "o", "tensorflow": "s", "reference": "^"}
_OTHER_MARKERS = ("D", "v", "P", "X", "*")


def _tick(time: object, commit: object, dirty: object) -> str:
    return f"{_when(time, 19)[5:] or '?'}\n{_commit(commit, dirty)}"


def plot_history(frame: pd.DataFrame, path: str | Path) -> Path:
    """PNG: accuracy metrics (%, top) and latencies (ms, bottom) against the records in time
    order: one x position per record (never two on one spot), ticked with its time and commit
    (* = uncommitted changes); one marker shape per backend. Written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, never a window
    import matplotlib.pyplot as plt

    cells = frame.attrs.get("cells", {})
    metric_columns = [c for c in frame.columns if c not in META_COLUMNS]
    timing = [c for c in metric_columns if c.split(" ")[0].endswith("_ms")]
    accuracy = [c for c in metric_columns if c.split(" ")[0] in ACCURACY_METRICS
                or c.startswith("per_class_iou.")]
    other = [c for c in metric_columns if c not in timing and c not in accuracy]
    panels = [(cols, label, scale) for cols, label, scale in
              ((accuracy, "accuracy (%)", 100.0), (timing, "latency (ms)", 1.0),
               (other, "value", 1.0)) if cols]
    if not panels:
        raise UsageError("nothing to plot: the records have none of the requested metrics")
    figure, axes = plt.subplots(len(panels), 1, figsize=(max(8.0, 0.6 * len(frame) + 4), 3.6
                                                         * len(panels)),
                                sharex=True, squeeze=False)
    x = np.arange(len(frame))
    backends = list(dict.fromkeys(cells.get(c, {}).get("backend", "") for c in metric_columns))
    others = iter(_OTHER_MARKERS * (len(backends) + 1))
    markers = {b: _BACKEND_MARKERS.get(b) or next(others) for b in backends}
    for axis, (columns, label, scale) in zip(axes[:, 0], panels, strict=True):
        for column in columns:
            values = frame[column].to_numpy(dtype=float) * scale
            present = ~np.isnan(values)  # each cell appears only in its own records
            backend = cells.get(column, {}).get("backend", "")
            axis.plot(x[present], values[present], marker=markers[backend], markersize=5,
                      linewidth=1, alpha=0.85, label=column)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        # Outside the axes: a history has many cells, and the lines matter more than the labels.
        axis.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ticks = [_tick(t, c, d) for t, c, d in zip(frame["time"], frame["commit"], frame["dirty"],
                                               strict=True)]
    axes[-1, 0].set_xticks(x, ticks, rotation=60, ha="right", fontsize="x-small")
    axes[-1, 0].set_xlabel("record (UTC time, commit; * = uncommitted changes)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
