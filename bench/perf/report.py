"""Latency results as text: the console/GitHub table, CSV, Markdown, the JSON record and a plot.

Tabulate, and matplotlib with the Agg backend.
Rows are the dicts made by `bench.perf.latency.make_row`.
"""

from __future__ import annotations

import csv
import io
import textwrap
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.core.atomic import atomic_path
from bench.core.errors import DataError, UsageError
from bench.core.json_text import to_json
from bench.core.outputs import writing
from bench.core.records import make_record
from bench.perf.latency import METHODOLOGY, LatencyRun

# The console is read in a terminal or pasted into a PR: the default table and its notes fit
# CONSOLE_WIDTH columns; --wide (and the .md file) keep every column.
CONSOLE_WIDTH = 120

OUTPUT_FORMATS = {".json": "json", ".csv": "csv", ".md": "md"}
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
TABLE_FORMATS = {"github": "github", "plain": "simple"}

# Scalar row fields written to CSV, in order (samples are joined with ";" in `samples_ms`).
CSV_FIELDS = ("variant", "backend", "device", "precision", "mode", "size", "batch", "compile",
              "channels_last", "status", "error", "n_samples", "p50_ms", "p90_ms", "p99_ms",
              "mean_ms", "std_ms", "min_ms", "max_ms", "images_per_s", "first_call_ms",
              "warmup_count", "warmup_stable", "gflops", "gflops_per_s", "achieved_tflops",
              "peak_tflops", "percent_of_peak", "compute_floor_ms", "peak_memory_bytes",
              "peak_memory_kind", "median_ci95_low_ms", "median_ci95_high_ms",
              "p90_upper_bound_ms", "paper_latency_ms", "samples_ms")


def output_kind(path: str | Path) -> str:
    """json / csv / md from the file extension; anything else is a usage error (exit 2)."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UsageError(f"--output {path}: unknown extension {suffix or '(none)'!r}; use "
                         f"{', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[suffix]


def check_plot_path(path: str | Path) -> None:
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {path}: use one of {', '.join(PLOT_SUFFIXES)}")


# ----------------------------------------------------------------------------------------------
# Number formatting: enough digits to compare, no more


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _sig(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}g}" if value < 10**digits else f"{value:.0f}"


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:.0f}"


# ----------------------------------------------------------------------------------------------
# The table


def _paper_notes(rows: Sequence[Mapping[str, Any]]) -> dict[int, tuple[int, Mapping[str, Any]]]:
    """Row index -> (footnote number, reference); one number per distinct reference."""
    notes: dict[tuple, int] = {}
    by_row: dict[int, tuple[int, Mapping[str, Any]]] = {}
    for index, row in enumerate(rows):
        ref = row.get("paper_reference")
        if ref:
            fingerprint = tuple(sorted((k, str(v)) for k, v in ref.items()))
            number = notes.setdefault(fingerprint, len(notes) + 1)
            by_row[index] = (number, ref)
    return by_row


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


# (header, value of a row) for every column of the wide table, in order.
_Getter = Callable[[Mapping[str, Any]], Any]
_COLUMNS: tuple[tuple[str, _Getter], ...] = (
    ("variant", lambda r: r["variant"]), ("backend", lambda r: r["backend"]),
    ("device", lambda r: r["device"]), ("precision", lambda r: r["precision"]),
    ("compile", lambda r: r.get("compile") or ""),
    ("mode", lambda r: r["mode"]), ("size", lambda r: r["size"]),
    ("batch", lambda r: r["batch"]),
    ("p50 ms", lambda r: _ms(r["p50_ms"])), ("p90 ms", lambda r: _ms(r["p90_ms"])),
    ("p99 ms", lambda r: _ms(r["p99_ms"])), ("mean ms", lambda r: _ms(r["mean_ms"])),
    ("std ms", lambda r: _ms(r["std_ms"])),
    ("floor ms", lambda r: _ms(r.get("compute_floor_ms"))),
    ("% peak", lambda r: _pct(r.get("percent_of_peak"))),
    ("TFLOP/s", lambda r: _sig(r.get("achieved_tflops"))),
    ("img/s", lambda r: _sig(r["images_per_s"])),
    ("first call ms", lambda r: _ms(r["first_call_ms"])),
    ("GFLOPs", lambda r: _sig(r["gflops"])), ("GFLOP/s", lambda r: _sig(r["gflops_per_s"])),
    ("peak MiB", lambda r: _mib(r["peak_memory_bytes"])),
)
_LEFT = {"variant", "backend", "device", "precision", "compile", "mode", "size", "paper ms",
         "status", "error"}
# The default table: these columns, minus the ones equal in every row (said once above the
# table), minus the later entries of _DROP_ORDER while a line is wider than CONSOLE_WIDTH.
_COMPACT = ("variant", "backend", "device", "precision", "compile", "mode", "size", "batch",
            "p50 ms", "p90 ms", "floor ms", "% peak", "img/s", "first call ms", "peak MiB")
_CONSTANT_CANDIDATES = ("device", "precision", "compile", "mode", "size", "batch")
_DROP_ORDER = ("img/s", "p90 ms", "peak MiB", "first call ms", "% peak", "floor ms")


def _error_notes(rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Row index -> error footnote number (one number per distinct error text)."""
    numbers: dict[str, int] = {}
    return {i: numbers.setdefault(row["error"] or "", len(numbers) + 1)
            for i, row in enumerate(rows) if row["status"] != "ok"}


def constant_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Compact-table columns whose value is the same in every row (stated once, not per row)."""
    getters = dict(_COLUMNS)
    constant = {}
    for name in _CONSTANT_CANDIDATES:
        values = {str(getters[name](row)) for row in rows}
        if len(values) == 1 and rows:
            constant[name] = getters[name](rows[0])
    return constant


def format_table(rows: Sequence[Mapping[str, Any]], table_format: str = "plain",
                 wide: bool = True) -> str:
    """One line per cell; FAILED cells stay in it with their error (inline when `wide`, else a
    numbered note). Not `wide`: the compact console table, at most CONSOLE_WIDTH columns."""
    paper = _paper_notes(rows)
    errors = _error_notes(rows)
    any_failed = bool(errors)
    if wide:
        names = [name for name, _ in _COLUMNS]
        dropped: list[str] = []
    else:
        constant = constant_columns(rows)
        names = [name for name in _COMPACT if name not in constant]
        dropped = [name for name in _DROP_ORDER if name in names]
    getters = dict(_COLUMNS)
    while True:
        headers = [*names, "paper ms", "status"] + (["error"] if wide and any_failed else [])
        body = []
        for index, row in enumerate(rows):
            line = [getters[name](row) for name in names]
            line.append(f"{row['paper_latency_ms']:g} [{paper[index][0]}]" if index in paper
                        else "")
            if row["status"] == "ok":
                line.append("ok")
            else:
                line.append("FAILED" if wide else f"FAILED [e{errors[index]}]")
            if wide and any_failed:
                line.append(row["error"] or "")
            body.append(line)
        text = tabulate(body, headers=headers, tablefmt=TABLE_FORMATS[table_format],
                        disable_numparse=True,
                        colalign=tuple("left" if h in _LEFT else "right" for h in headers))
        widest = max(len(line) for line in text.splitlines())
        if wide or widest <= CONSOLE_WIDTH or not dropped:
            return text
        names.remove(dropped.pop(0))


def table_caption(rows: Sequence[Mapping[str, Any]]) -> str:
    """The compact table's shared values, e.g. "all rows: device cpu, precision fp32, ..."."""
    constant = constant_columns(rows)
    if not constant:
        return ""
    return "all rows: " + ", ".join(f"{name} {value if value != '' else 'none'}"
                                    for name, value in constant.items())


def footnotes(rows: Sequence[Mapping[str, Any]], wide: bool = True) -> list[str]:
    """Paper sources, errors (compact table), what "peak MiB" measured, the roofline columns,
    and cells whose warm-up never settled. Not `wide`: paper notes without their long remark."""
    lines = []
    seen: set[int] = set()
    fields = ("hardware", "input", "source", "note") if wide else ("hardware", "input", "source")
    for number, ref in _paper_notes(rows).values():
        if number not in seen:
            seen.add(number)
            details = "; ".join(str(ref[k]) for k in fields if ref.get(k))
            lines.append(f"[{number}] {ref['latency_ms']:g} ms: {details}")
    if not wide:
        seen_errors: set[int] = set()
        for index, number in _error_notes(rows).items():
            if number not in seen_errors:
                seen_errors.add(number)
                lines.append(f"[e{number}] {rows[index]['error']}")
    if any(row.get("compile") for row in rows):
        lines.append("compiled: torch.compile (torch), XLA jit_compile (tensorflow); "
                     "compilation time is in first call ms")
    if any(row.get("peak_tflops") for row in rows):
        lines.append("floor ms: the forward's FLOPs at the device's measured matrix-product peak "
                     "in this precision; % peak: achieved TFLOP/s at the p50 over that peak")
    if any(row["channels_last"] for row in rows):
        lines.append("torch cells use the channels_last memory format (TensorFlow is NHWC)")
    kinds = sorted({row["peak_memory_kind"] for row in rows if row.get("peak_memory_kind")})
    lines += [f"peak MiB: {kind}" for kind in kinds]
    unsettled = [f"{r['variant']}/{r['backend']}/{r['mode']}/{r['size']}" for r in rows
                 if r["status"] == "ok" and r["warmup_stable"] is False]
    if unsettled:
        lines.append("warm-up reached its maximum before the CV threshold (times still drifting): "
                     + ", ".join(unsettled))
    return lines


def backend_ratios(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """p50 of each other backend over the first, per matching cell: the cross-framework verdict."""
    ok = [row for row in rows if row["status"] == "ok"]
    names = list(dict.fromkeys(row["backend"] for row in ok))
    if len(names) < 2:
        return []
    index = {(r["variant"], r["mode"], r["size"], r["batch"], r["backend"]): r for r in ok}
    lines = []
    for other in names[1:]:
        parts = []
        for row in ok:
            if row["backend"] != names[0]:
                continue
            match = index.get((row["variant"], row["mode"], row["size"], row["batch"], other))
            if match:
                parts.append(f"{row['variant']} {row['mode']} {row['size']}: "
                             f"{match['p50_ms'] / row['p50_ms']:.2f}")
        if parts:
            lines.append(f"p50 {other} / {names[0]} (>1: {names[0]} faster): " + "; ".join(parts))
    return lines


def host_line(run: LatencyRun) -> str:
    """The host and its load during the run: a loaded machine explains noisy numbers."""
    before, after = run.host_before, run.host_after
    cpus = before.get("usable_cpus") or 1
    text = f"host: {before.get('cpu_model')}, {cpus} usable CPUs"
    if before.get("load_average_1_5_15") and after.get("load_average_1_5_15"):
        start, end = before["load_average_1_5_15"][0], after["load_average_1_5_15"][0]
        text += f", 1-min load average {start:.1f} at start, {end:.1f} at end"
        # At the start the load is other processes'; at the end it includes this run's own
        # threads (up to one per CPU), so only the excess over that counts.
        if start > 0.5 * cpus or end > 1.5 * cpus:
            text += " (other processes competed for the CPUs: expect noisy timings)"
    return text


def render_text(run: LatencyRun, table_format: str = "plain", wide: bool = False) -> str:
    """Table, footnotes, backend ratios and the host's load, as printed to the console; the
    default (not `wide`) fits CONSOLE_WIDTH columns, notes wrapped."""
    parts = []
    caption = "" if wide else table_caption(run.rows)
    if caption:
        parts.append(caption)
    parts += [format_table(run.rows, table_format, wide=wide), ""]
    notes = footnotes(run.rows, wide=wide) + backend_ratios(run.rows) + [host_line(run)]
    if wide:
        parts += notes
    else:
        parts += [textwrap.fill(note, CONSOLE_WIDTH, subsequent_indent="    ",
                                break_long_words=True) for note in notes]
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------
# Files


def make_latency_record(run: LatencyRun, options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON record: provenance (records.make_record), options, environment, rows, method."""
    environment = {"host": run.host_before, "host_after": run.host_after,
                   "backends": run.environments}
    return make_record(
        "latency", rows=run.rows, environment=environment,
        options={**options, "interleaving": run.interleaving,
                 "policies": {device: policy.describe() for device, policy in
                              run.policies.items()}},
        methodology=METHODOLOGY)


def run_from_record(record: Mapping[str, Any]) -> LatencyRun:
    """A stored latency record back as a LatencyRun, to re-render its table or Markdown."""
    if record.get("kind") != "latency":
        raise UsageError(f"not a latency record (kind {record.get('kind')!r})")
    environment = record["environment"]
    return LatencyRun(list(record["rows"]), dict(environment["backends"]),
                      record["options"]["interleaving"], {}, dict(environment["host"]),
                      dict(environment.get("host_after") or {}))


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        confidence = row.get("confidence") or {}
        ci = confidence.get("median_ci95_ms") or (None, None)
        flat = {**row, "median_ci95_low_ms": ci[0], "median_ci95_high_ms": ci[1],
                "p90_upper_bound_ms": confidence.get("p90_upper_bound_ms"),
                "samples_ms": ";".join(f"{s:.4f}" for s in row["samples_ms"])}
        writer.writerow({key: "" if flat.get(key) is None else flat[key] for key in CSV_FIELDS})
    return buffer.getvalue()


def markdown_text(record: Mapping[str, Any], run: LatencyRun) -> str:
    """A self-contained report: when/where, the GitHub table, notes, the environment, the method."""
    prov = record["provenance"]
    git = prov["git"]
    lines = [
        "# fcn-bench latency", "",
        f"{prov['utc_time']}, commit {git['commit'] or 'unknown'}"
        f"{' (dirty)' if git['dirty'] else ''}; {host_line(run)}.", "",
        format_table(run.rows, "github", wide=True), "",
    ]
    lines += [f"- {note}" for note in footnotes(run.rows) + backend_ratios(run.rows)]
    lines += ["", "## Environment", ""]
    for name, env in run.environments.items():
        lines.append(f"- **{name}**: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    options = record["options"]
    lines += ["", "## Method", "", f"Interleaving: {options['interleaving']}. "
              + " ".join(f"{device}: {text}." for device, text in options["policies"].items()),
              "", METHODOLOGY, ""]
    return "\n".join(lines)


def render_output(path: str | Path, record: Mapping[str, Any], run: LatencyRun) -> bytes:
    """The bytes of the record as .json, .csv or .md (chosen by the extension)."""
    kind = output_kind(path)
    if kind == "json":
        return to_json(record).encode("utf-8")
    if kind == "csv":
        return csv_text(run.rows).encode("utf-8")
    return markdown_text(record, run).encode("utf-8")


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def write_all_or_none(contents: Mapping[str | Path, bytes], what: str = "latency results"
                      ) -> None:
    """Write every file or none: each goes to a temporary file beside it first, and only when
    all are fully written are they renamed into place. A failure (a full disk) removes the
    temporary files, leaves every target as it was, and names the path that failed."""
    with ExitStack() as stack:
        for path, data in contents.items():
            tmp = stack.enter_context(atomic_path(path))
            try:
                with writing(path, what):
                    _write_file(tmp, data)
            except DataError as error:
                raise DataError(error.path, f"{error.problem}; no output was written "
                                f"({len(contents)} requested)") from None


def write_output(path: str | Path, record: Mapping[str, Any], run: LatencyRun) -> None:
    """Write the record as .json, .csv or .md (atomically: never half a file)."""
    write_all_or_none({path: render_output(path, record, run)})


def write_plot(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Latency distribution per finished cell, written atomically (see render_plot)."""
    write_all_or_none({path: render_plot(path, rows)}, what="plot")


def render_plot(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Latency distribution per finished cell (box = quartiles, points = every raw sample)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    ok = [row for row in rows if row["status"] == "ok" and row["samples_ms"]]
    if not ok:
        raise UsageError(f"--plot {path}: no cell finished, nothing to plot")
    labels = [f"{r['variant']} {r['backend']} {r['mode']} {r['size']} bs{r['batch']}" for r in ok]
    figure, axes = plt.subplots(figsize=(0.6 * len(ok) + 3, 6))
    axes.boxplot([r["samples_ms"] for r in ok], showfliers=False)
    for position, row in enumerate(ok, start=1):
        axes.plot([position] * len(row["samples_ms"]), row["samples_ms"], "o", alpha=0.4,
                  markersize=3, color="tab:blue")
    axes.set_xticks(range(1, len(ok) + 1), labels, rotation=60, ha="right", fontsize=8)
    values = [s for r in ok for s in r["samples_ms"]]
    if max(values) / max(min(values), 1e-9) > 20:
        axes.set_yscale("log")  # cells of very different cost share one readable axis
    axes.set_ylabel("latency per call (ms)")
    axes.set_title(f"fcn-bench latency ({', '.join(sorted({r['device'] for r in ok}))}, "
                   f"{ok[0]['precision']})")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lower().lstrip("."), dpi=120)
    plt.close(figure)
    return buffer.getvalue()
