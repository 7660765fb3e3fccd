"""Records read into rows: one measured case (identity -> metrics) whatever file it came from.

Reads fcn-bench records (`bench.core.records.make_record`: evaluate, reproduce, latency, golden)
and pytest-benchmark JSON; identity keys (variant, backend, device, precision, mode, size, batch,
split, ...) say what was measured, everything else comparable becomes a metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.ci.label_maps import decode_label_maps
from bench.ci.record_files import RecordError, document_kind, json_files, read_json
from bench.core.records import SCHEMA_VERSION

# Keys that say *what* was measured (never compared, only matched), in table-column order.
IDENTITY_KEYS = ("kind", "benchmark", "variant", "backend", "device", "precision", "mode", "size",
                 "batch", "split", "width_divisor", "compile", "channels_last", "threads")
# Top-level record fields that are neither identity nor metrics.
_NON_METRIC_KEYS = frozenset({"schema_version", "provenance", "samples_ms", "environment",
                              "options", "notes", "rows", "suite", "error"})
# String fields that are compared for equality (a changed digest or status is news).
_STRING_METRIC_SUFFIXES = ("_digest", "_sha256")
_STRING_METRICS = frozenset({"status"})

# More raw samples than this in one row is not a measurement but an attack on memory and time
# (a 32 MB record holds ~4 M numbers): refused with one line (docs/security.md).
MAX_SAMPLES = 1_000_000
# A latency sample beyond ~11.6 days (1e9 ms) is not a time: 1e308 would overflow every sum.
MAX_SAMPLE_MS = 1e9


@dataclass
class Row:
    """One comparable case. Metrics are floats, ints, strings or confusion matrices (int64)."""

    kind: str
    identity: tuple[tuple[str, str], ...]
    metrics: dict[str, Any]
    source: str
    schema: str  # "fcn-bench/1", "pytest-benchmark", ...
    time: str | None = None
    commit: str | None = None
    samples_ms: np.ndarray | None = None
    error: str | None = None  # why a row that did not run failed
    # Record-level numbers (e.g. a calibration time) a row can be normalised by.
    context: dict[str, float] = field(default_factory=dict)
    pooled: int = 1

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        return self.identity

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.identity)


def identity_value(value: Any) -> str:
    """Normalise an identity value for matching and display: [500, 500] -> "500x500"."""
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _metrics_of(raw: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """The comparable values of a raw row: numbers, nested `metrics`, matrices, digests."""
    metrics: dict[str, Any] = {}

    def add(name: str, value: Any) -> None:
        if name == "label_maps" and isinstance(value, str):
            metrics[name] = decode_label_maps(value, source)
        elif value is None:
            metrics[name] = math.nan  # strict JSON writes NaN as null
        elif is_number(value):
            number = value.item() if isinstance(value, np.generic) else value
            if isinstance(number, float) and math.isinf(number):
                # An infinite value is no measurement and passed gates ("+inf% ok"). NaN stays:
                # it is how an undefined value (null in the file, e.g. the IoU of an absent
                # class) is held, and NaN on one side only is judged a regression.
                raise RecordError(source, f"malformed record: field {name!r} is {number} "
                                          f"(not a finite number)")
            metrics[name] = number
        elif name == "confusion_matrix" or name.endswith(".confusion_matrix"):
            metrics[name] = np.asarray(value, dtype=np.int64)
        elif isinstance(value, str) and (name in _STRING_METRICS
                                         or name.endswith(_STRING_METRIC_SUFFIXES)):
            metrics[name] = value

    for key, value in raw.items():
        if key in IDENTITY_KEYS or key in _NON_METRIC_KEYS:
            continue
        if key == "metrics" and isinstance(value, dict):
            # evaluate/reproduce/golden: {"mean_iou": .., "per_class_iou": {"aeroplane": ..}}
            for name, inner in value.items():
                if isinstance(inner, dict):
                    for sub, subvalue in inner.items():
                        add(f"{name}.{sub}", subvalue)
                else:
                    add(name, inner)
        else:
            add(key, value)
    return metrics


def _identity_of(kind: str, raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    fields = {"kind": kind, **{k: raw[k] for k in IDENTITY_KEYS if k in raw and k != "kind"}}
    return tuple((k, identity_value(fields[k])) for k in IDENTITY_KEYS
                 if k in fields and fields[k] is not None)


def _samples(value: Any, path: Path, field: str = "samples_ms",
             scale: float = 1.0) -> np.ndarray | None:
    """Raw samples in ms (`scale` converts); non-finite, negative or absurd values, or more
    than MAX_SAMPLES of them, make the record malformed: dropping them silently would let an
    all-NaN list or a 1e308 pass a gate."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError(path, f"malformed record: {field} is not a list of numbers")
    if len(value) > MAX_SAMPLES:
        raise RecordError(path, f"malformed record: {field} has {len(value):,} samples (limit "
                                f"{MAX_SAMPLES:,})")
    if not all(is_number(v) for v in value):
        raise RecordError(path, f"malformed record: {field} is not a list of numbers")
    try:
        samples = np.asarray(value, dtype=np.float64).reshape(-1) * scale
    except (TypeError, ValueError, OverflowError):
        raise RecordError(path, f"malformed record: {field} is not a list of numbers") from None
    bad = ~(np.isfinite(samples) & (samples >= 0) & (samples <= MAX_SAMPLE_MS))
    if bad.any():
        index = int(np.argmax(bad))
        raise RecordError(path, f"malformed record: {field}[{index}] = {value[index]} is not a "
                                f"time in ms (finite, 0..{MAX_SAMPLE_MS:.0e})")
    return samples


def _optional_str(value: Any, path: Path, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RecordError(path, f"malformed record: {field} is a {type(value).__name__}, "
                                f"expected a string")
    return value


def _optional_dict(value: Any, path: Path, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(path, f"malformed record: {field} is a {type(value).__name__}, "
                                f"expected an object")
    return value


def rows_from_record(record: dict[str, Any], path: Path) -> list[Row]:
    """Rows of one fcn-bench record: the record itself (evaluate/reproduce) or its `rows`."""
    kind = str(record["kind"])
    prov = _optional_dict(record.get("provenance"), path, "provenance")
    git = _optional_dict(prov.get("git"), path, "provenance.git")
    common = {"source": path.name, "schema": f"fcn-bench/{record['schema_version']}",
              "time": _optional_str(prov.get("utc_time"), path, "provenance.utc_time"),
              "commit": _optional_str(git.get("commit"), path, "provenance.git.commit")}
    context = {k: float(v) for k, v in record.items()
               if is_number(v) and k not in _NON_METRIC_KEYS}
    for key, value in context.items():
        if math.isinf(value):
            raise RecordError(path, f"malformed record: field {key!r} is {value} (not a finite "
                                    f"number)")
    raw_rows = record.get("rows")
    if raw_rows is None:
        raw_rows = [record]
        inherited: dict[str, Any] = {}
    elif isinstance(raw_rows, list) and all(isinstance(r, dict) for r in raw_rows):
        # Record-level identity (e.g. `device`) applies to every row that does not override it.
        inherited = {k: record[k] for k in IDENTITY_KEYS if k in record and k != "kind"}
    else:
        raise RecordError(path, "`rows` must be a list of objects")
    rows = []
    for raw in raw_rows:
        raw = {**inherited, **raw}
        error = raw.get("error")
        rows.append(Row(kind=kind, identity=_identity_of(kind, raw),
                        metrics=_metrics_of(raw, path), error=error if isinstance(error, str)
                        else None, samples_ms=_samples(raw.get("samples_ms"), path),
                        context=context, **common))
    return rows


# pytest-benchmark stores seconds; rows use milliseconds like `latency` records.
_PYTEST_BENCHMARK_STATS = {"median": "p50_ms", "mean": "mean_ms", "min": "min_ms",
                           "max": "max_ms", "stddev": "std_ms", "iqr": "iqr_ms", "q1": "q1_ms",
                           "q3": "q3_ms"}


def rows_from_pytest_benchmark(doc: dict[str, Any], path: Path) -> list[Row]:
    """Rows of a pytest-benchmark JSON file: one per benchmark, keyed by name + extra_info."""
    commit = _optional_dict(doc.get("commit_info"), path, "commit_info")
    _optional_str(commit.get("id"), path, "commit_info.id")
    _optional_str(doc.get("datetime"), path, "datetime")
    rows = []
    for bench in doc.get("benchmarks") or []:
        if not isinstance(bench, dict) or "name" not in bench:
            raise RecordError(path, "a pytest-benchmark entry has no `name`")
        extra = bench.get("extra_info") or {}
        stats = bench.get("stats") or {}
        raw = {"benchmark": bench["name"], **{k: v for k, v in extra.items()
                                              if k in IDENTITY_KEYS and k != "kind"}}
        metrics = _metrics_of({k: v for k, v in extra.items() if k not in IDENTITY_KEYS}, path)
        for stat in (*_PYTEST_BENCHMARK_STATS, "ops"):
            value = stats.get(stat)
            if is_number(value) and not math.isfinite(float(value) * 1000.0):
                raise RecordError(path, f"malformed record: stats.{stat} of {bench['name']!r} "
                                        f"is {value} (not a finite number)")
        for stat, name in _PYTEST_BENCHMARK_STATS.items():
            if is_number(stats.get(stat)):
                metrics[name] = float(stats[stat]) * 1000.0
        if is_number(stats.get("ops")):
            metrics["ops_per_s"] = float(stats["ops"])
        if is_number(stats.get("rounds")):
            metrics["rounds"] = int(stats["rounds"])
        data = stats.get("data")  # per-iteration seconds, only with --benchmark-save-data
        samples = _samples(data, path, "stats.data", 1000.0)
        rows.append(Row(kind="pytest-benchmark", identity=_identity_of("pytest-benchmark", raw),
                        metrics=metrics, source=path.name, schema="pytest-benchmark",
                        time=doc.get("datetime"), commit=commit.get("id"), samples_ms=samples))
    return rows


def rows_from_document(doc: Any, path: Path) -> list[Row]:
    kind = document_kind(doc)
    if kind == "pytest-benchmark":
        return _malformed_as_record_error(rows_from_pytest_benchmark, doc, path)
    if kind != "fcn-bench":
        raise RecordError(path, "neither an fcn-bench record (schema_version, kind) nor a "
                                "pytest-benchmark JSON file (benchmarks, machine_info)")
    version = doc["schema_version"]
    if not isinstance(version, int) or version < 1:
        raise RecordError(path, f"schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise RecordError(path, f"schema_version {version} is newer than this fcn-bench reads "
                                f"({SCHEMA_VERSION}); upgrade fcn-bench")
    return _malformed_as_record_error(rows_from_record, doc, path)


def _malformed_as_record_error(reader: Callable[[dict[str, Any], Path], list[Row]],
                               doc: dict[str, Any], path: Path) -> list[Row]:
    """Run a row reader; a value of the wrong type anywhere in the file (a string where an
    object belongs, a 400-digit number, a ragged matrix) is a RecordError naming the file."""
    try:
        return reader(doc, path)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as error:
        raise RecordError(path, f"malformed record ({type(error).__name__}: "
                                f"{str(error)[:200]})") from None


@dataclass
class Side:
    """Every row read from one command-line argument (a file or a folder of records)."""

    path: Path
    rows: list[Row]
    skipped: list[Path] = field(default_factory=list)

    @property
    def schemas(self) -> set[str]:
        return {row.schema for row in self.rows}


def load_side(path: str | Path) -> Side:
    """Read a record file or folder. In a folder, JSON files that are not records are skipped."""
    path = Path(path)
    files = json_files(path)
    rows: list[Row] = []
    skipped: list[Path] = []
    for file in files:
        doc = read_json(file)
        if path.is_dir() and document_kind(doc) is None:
            skipped.append(file)  # e.g. tolerances.json beside golden.json
            continue
        rows.extend(rows_from_document(doc, file))
    if not files:
        raise RecordError(path, "no *.json files in this folder")
    if not rows and path.is_dir():
        raise RecordError(path, "no fcn-bench or pytest-benchmark records in this folder")
    return Side(path, rows, skipped)
