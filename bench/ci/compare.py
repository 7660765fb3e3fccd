"""Compare two sets of result records row by row and judge every metric against a tolerance gate.

Reads fcn-bench records (`bench.core.records.make_record`: evaluate, reproduce, latency, golden) and
pytest-benchmark JSON, matches rows on identity keys (variant, backend, device, precision, mode,
size, batch, split, ...), and renders one delta table. Speed gates are noise-aware: with raw samples
on both sides a seeded bootstrap interval of the difference decides between REGRESSION and
inconclusive. Framework-free (stdlib, numpy, tabulate); never imports torch or tensorflow.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from bench.core.errors import DataError, UsageError
from bench.core.json_text import loads_bounded
from bench.core.records import REPO_ROOT, SCHEMA_VERSION

DEFAULT_TOLERANCES = REPO_ROOT / "reference_results" / "ci" / "tolerances.json"

# Keys that say *what* was measured (never compared, only matched), in table-column order.
IDENTITY_KEYS = ("kind", "benchmark", "variant", "backend", "device", "precision", "mode", "size",
                 "batch", "split", "width_divisor", "compile", "channels_last", "threads")
# Top-level record fields that are neither identity nor metrics.
_NON_METRIC_KEYS = frozenset({"schema_version", "provenance", "samples_ms", "environment",
                              "options", "notes", "rows", "suite", "error"})
# String fields that are compared for equality (a changed digest or status is news).
_STRING_METRIC_SUFFIXES = ("_digest", "_sha256")
_STRING_METRICS = frozenset({"status"})

OK, IMPROVED, REGRESSION, INCONCLUSIVE, MISSING, INFO = (
    "ok", "improved", "REGRESSION", "inconclusive", "missing", "info")
VERDICTS = (REGRESSION, MISSING, INCONCLUSIVE, IMPROVED, INFO, OK)

# Fewer raw samples than this on either side cannot support an interval: such a speed change is
# reported inconclusive rather than judged.
MIN_SAMPLES = 5
BOOTSTRAP_RESAMPLES = 2000
# More raw samples than this in one row is not a measurement but an attack on memory and time
# (a 32 MB record holds ~4 M numbers): refused with one line (docs/security.md).
MAX_SAMPLES = 1_000_000
# A latency sample beyond ~11.6 days (1e9 ms) is not a time: 1e308 would overflow every sum.
MAX_SAMPLE_MS = 1e9


class RecordError(DataError):
    """An input file is unreadable or not a record: bad usage of `compare`, so exit 2."""

    exit_code = 2


# Golden records store their predicted label maps, so a comparison can count changed pixels
# exactly instead of trusting a digest: uint8 arrays in id order, concatenated, zlib, base64.
LABEL_MAPS_PREFIX = "zlib+base64:"


@dataclass(frozen=True)
class LabelMaps:
    """Predicted labels of every image, flattened and concatenated (uint8)."""

    pixels: np.ndarray

    def changed_pixels(self, other: LabelMaps) -> int | None:
        """Pixels whose label differs, or None if the two cover different image sizes."""
        if self.pixels.shape != other.pixels.shape:
            return None
        return int(np.count_nonzero(self.pixels != other.pixels))


def encode_label_maps(labels: Iterable[np.ndarray]) -> str:
    flat = np.concatenate([np.ascontiguousarray(label, np.uint8).ravel() for label in labels])
    return LABEL_MAPS_PREFIX + base64.b64encode(zlib.compress(flat.tobytes(), 9)).decode("ascii")


def decode_label_maps(text: str, source: str | Path = "record") -> LabelMaps:
    if not text.startswith(LABEL_MAPS_PREFIX):
        raise RecordError(source, f"label_maps must start with {LABEL_MAPS_PREFIX!r}")
    try:
        packed = base64.b64decode(text[len(LABEL_MAPS_PREFIX):], validate=True)
        inflater = zlib.decompressobj()
        # Bounded: a few KB of zlib can claim gigabytes (docs/security.md).
        raw = inflater.decompress(packed, MAX_LABEL_MAP_BYTES + 1)
    except (binascii.Error, zlib.error) as error:
        raise RecordError(source, f"label_maps cannot be decoded: {error}") from None
    if len(raw) > MAX_LABEL_MAP_BYTES:
        raise RecordError(source, f"label_maps decompress to more than "
                                  f"{MAX_LABEL_MAP_BYTES // 2**20} MiB; refusing")
    if not inflater.eof:
        raise RecordError(source, "label_maps cannot be decoded: truncated zlib stream")
    return LabelMaps(np.frombuffer(raw, dtype=np.uint8))


MAX_LABEL_MAP_BYTES = 256 * 2**20  # 1000 VOC-sized predictions


# ----------------------------------------------------------------------------------------------
# Rows: one measured case (identity -> metrics), whatever file format it came from.


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


MAX_RECORD_BYTES = 32 * 2**20  # the largest records (golden, with label maps) are under 1 MB


def read_json(path: Path) -> Any:
    """A record file parsed as JSON: size and nesting depth bounded (docs/security.md)."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise RecordError(path, "is a folder, expected a JSON file")
        if size > MAX_RECORD_BYTES:
            raise RecordError(path, f"{size / 2**20:.0f} MiB is too large for a record (limit "
                                    f"{MAX_RECORD_BYTES // 2**20} MiB)")
        return loads_bounded(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(path, f"cannot read: {error}") from None
    except json.JSONDecodeError as error:
        raise RecordError(path, f"not valid JSON (line {error.lineno}: {error.msg})") from None
    except ValueError as error:  # JsonTooDeep, or an integer beyond Python's digit limit
        raise RecordError(path, f"not a usable JSON file ({error})") from None


def document_kind(doc: Any) -> str | None:
    """"fcn-bench", "pytest-benchmark", or None for any other JSON."""
    if isinstance(doc, dict) and "schema_version" in doc and "kind" in doc:
        return "fcn-bench"
    if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list) and (
            "machine_info" in doc or "commit_info" in doc):
        return "pytest-benchmark"
    return None


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


def json_files(path: Path) -> list[Path]:
    """A file, or every *.json under a folder (recursively, sorted)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if p.is_file())
    if not path.exists():
        raise RecordError(path, "no such file or folder")
    return [path]


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


# ----------------------------------------------------------------------------------------------
# Tolerance gates: expressions kept as data.

_GATE_HELP = ("expected METRIC:BOUND, e.g. mean_iou:-0.001 (may drop by at most 0.001), "
              "p50_ms:+10% (may grow by at most 10%), confusion_matrix:40 (at most 40 pixels "
              "move), status:exact, label_digest:info")
_METRIC_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]/-]+$")
_BOUND_PATTERN = re.compile(r"^(?P<sign>[-+±~])?(?P<number>(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)"
                            r"(?P<percent>%)?$")


@dataclass(frozen=True)
class Gate:
    """How much a metric may move: `sense` says which direction is bad.

    higher: a drop is bad (accuracy); lower: a rise is bad (latency); both: any change beyond
    the bound is bad (digests, counts, confusion matrices); info: shown, never judged.
    """

    pattern: str
    sense: str
    bound: float
    relative: bool
    text: str

    def matches(self, metric: str) -> bool:
        return fnmatchcase(metric, self.pattern)

    def limit(self, baseline: float) -> float:
        """The allowed change in the metric's unit (a relative bound scales with |baseline|)."""
        return self.bound * abs(baseline) if self.relative else self.bound


def parse_gate(text: str) -> Gate:
    """Parse `METRIC:BOUND` (see _GATE_HELP); raises UsageError naming the expression."""
    metric, sep, bound = text.strip().rpartition(":")
    metric, bound = metric.strip(), bound.strip()
    if not sep or not metric or not bound:
        raise UsageError(f"bad tolerance {text!r}: {_GATE_HELP}")
    if not _METRIC_PATTERN.match(metric):
        raise UsageError(f"bad tolerance {text!r}: metric {metric!r} may only contain letters, "
                         f"digits, _ . - / and the wildcards * ? []")
    if bound == "info":
        return Gate(metric, "info", 0.0, False, text.strip())
    if bound == "exact":
        return Gate(metric, "both", 0.0, False, text.strip())
    match = _BOUND_PATTERN.match(bound)
    if not match:
        raise UsageError(f"bad tolerance {text!r}: bound {bound!r} is not [+|-]NUMBER[%], "
                         f"'exact' or 'info'; {_GATE_HELP}")
    sense = {"-": "higher", "+": "lower"}.get(match["sign"] or "", "both")
    value = float(match["number"])
    if not math.isfinite(value):  # "1e400" parses as inf: a gate nothing could fail
        raise UsageError(f"bad tolerance {text!r}: bound {bound!r} is not a finite number")
    relative = bool(match["percent"])
    return Gate(metric, sense, value / 100.0 if relative else value, relative, text.strip())


@dataclass
class Tolerances:
    """Gate lists per record kind ("default" applies to every kind); the last match wins."""

    sections: dict[str, list[Gate]]
    overrides: list[Gate] = field(default_factory=list)
    source: str = "built-in"

    def gate_for(self, kind: str, metric: str) -> Gate | None:
        chain = [*self.sections.get("default", []), *self.sections.get(kind, []),
                 *self.overrides]
        for gate in reversed(chain):
            if gate.matches(metric):
                return gate
        return None

    def with_overrides(self, expressions: Iterable[str]) -> Tolerances:
        return replace(self, overrides=[*self.overrides, *(parse_gate(e) for e in expressions)])


def load_tolerances(path: str | Path = DEFAULT_TOLERANCES) -> Tolerances:
    """Read a tolerances file: {"default": [{"gate": EXPR, "why": ...}], "<kind>": [...]}."""
    path = Path(path)
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("default"), list):
        raise RecordError(path, 'expected {"default": [{"gate": "mean_iou:-0.001", "why": ...}],'
                                ' "<kind>": [...]}')
    sections: dict[str, list[Gate]] = {}
    for kind, entries in doc.items():
        if not isinstance(entries, list):
            continue  # free-text fields such as "about"
        gates = []
        for entry in entries:
            expression = entry.get("gate") if isinstance(entry, dict) else entry
            if not isinstance(expression, str):
                raise RecordError(path, f"section {kind!r}: every entry needs a \"gate\" string")
            try:
                gates.append(parse_gate(expression))
            except UsageError as error:
                raise RecordError(path, f"section {kind!r}: {error}") from None
        sections[kind] = gates
    return Tolerances(sections, source=str(path))


# ----------------------------------------------------------------------------------------------
# Noise-aware speed statistics


def _percentile(q: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.percentile(x, q, axis=-1)


# Metrics that are a statistic of `samples_ms`, so a bootstrap can say how sure a change is.
SAMPLE_STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "p50_ms": lambda x: np.median(x, axis=-1),
    "median_ms": lambda x: np.median(x, axis=-1),
    "mean_ms": lambda x: np.mean(x, axis=-1),
    "p90_ms": _percentile(90),
    "p95_ms": _percentile(95),
    "p99_ms": _percentile(99),
}


def sample_statistic(name: str, row: Row) -> Callable[[np.ndarray], np.ndarray] | None:
    """How metric `name` of `row` derives from its samples_ms (None if it does not).

    images_per_s is batch / mean call time, as bench/perf/latency.py computes it.
    """
    if name == "images_per_s":
        batch = float(dict(row.identity).get("batch", "1"))
        return lambda x: batch * 1000.0 / np.mean(x, axis=-1)
    return SAMPLE_STATISTICS.get(name)


def check_confidence(confidence: float) -> None:
    """A confidence level is a finite number strictly between 0 and 1 (NaN crashed quantile)."""
    if not (is_number(confidence) and 0.0 < confidence < 1.0):
        raise UsageError(f"confidence {confidence!r} must be a number strictly between 0 and 1")


def bootstrap_delta_interval(baseline: np.ndarray, current: np.ndarray,
                             statistic: Callable[[np.ndarray], np.ndarray], *,
                             confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of statistic(current) - statistic(baseline).

    Each side is resampled with replacement independently (seeded, so the verdict is
    reproducible); work is chunked so that memory stays near 16 MB whatever the sample count.
    """
    check_confidence(confidence)
    if len(baseline) == 0 or len(current) == 0:
        raise ValueError("bootstrap needs samples on both sides")
    rng = np.random.default_rng(seed)
    n_base, n_cur = len(baseline), len(current)
    deltas = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(n_base, n_cur))
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        # (count, n) resampled index arrays -> one statistic per resample
        base_stat = statistic(baseline[rng.integers(0, n_base, (count, n_base))])
        cur_stat = statistic(current[rng.integers(0, n_cur, (count, n_cur))])
        deltas[start:start + count] = cur_stat - base_stat
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------
# Comparing


@dataclass
class Finding:
    """One line of the delta table."""

    identity: tuple[tuple[str, str], ...]
    metric: str
    baseline: Any
    current: Any
    delta: float | None
    delta_pct: float | None
    verdict: str
    gate: str = ""
    note: str = ""
    fails: bool = False


@dataclass
class CompareOptions:
    allow_missing: bool = False  # rows missing in current are reported, not failed
    all_metrics: bool = False  # also show metrics without a gate (verdict info)
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        check_confidence(self.confidence)


@dataclass
class Comparison:
    findings: list[Finding]
    baseline: str
    current: str
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.fails]

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(VERDICTS, 0)
        for finding in self.findings:
            counts[finding.verdict] += 1
        return counts

    def summary(self) -> str:
        counts = self.counts()
        parts = [f"{counts[v]} {v}" for v in VERDICTS if counts[v]]
        missing_allowed = sum(1 for f in self.findings if f.verdict == MISSING and not f.fails)
        if missing_allowed:
            parts.append(f"{missing_allowed} missing allowed")
        status = "FAILED" if self.failed else "passed"
        return f"{status}: {len(self.findings)} checks: " + (", ".join(parts) or "nothing to check")


def pool_rows(rows: Sequence[Row]) -> dict[tuple, Row]:
    """Group rows by identity. Repeated runs of one case (e.g. interleaved A/B) are pooled:
    samples concatenated and the sample statistics recomputed from them, other numbers take the
    median over the runs, matrices and strings come from the latest run."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.key, []).append(row)
    pooled: dict[tuple, Row] = {}
    for key, group in groups.items():
        if len(group) == 1:
            pooled[key] = group[0]
            continue
        group = sorted(group, key=lambda r: r.time or "")
        latest = group[-1]
        metrics: dict[str, Any] = {}
        for name in dict.fromkeys(m for r in group for m in r.metrics):
            values = [r.metrics[name] for r in group if name in r.metrics]
            if all(is_number(v) for v in values):
                metrics[name] = float(np.median(values))
            else:
                metrics[name] = values[-1]
        samples = None
        if all(r.samples_ms is not None for r in group):
            samples = np.concatenate([r.samples_ms for r in group])
            for name, statistic in SAMPLE_STATISTICS.items():
                if name in metrics and len(samples):
                    metrics[name] = float(statistic(samples))
        pooled[key] = replace(latest, metrics=metrics, samples_ms=samples, pooled=len(group),
                              source=f"{len(group)} records")
    return pooled


def normalize_rows(rows: Sequence[Row], by: str) -> list[Row]:
    """Divide every *_ms metric and the samples by a per-record calibration time (`by`).

    Speeds measured on different machines or at different clocks become ratios to the same
    calibration kernel; throughput (images_per_s) is multiplied by it.
    """
    normalized = []
    for row in rows:
        factor = row.metrics.get(by, row.context.get(by))
        if not is_number(factor) or not factor > 0:
            raise RecordError(row.source, f"--normalize-by {by}: the record has no positive "
                                          f"{by!r} value (row {row.label()})")
        metrics = {}
        for name, value in row.metrics.items():
            if name != by and name.endswith("_ms") and is_number(value):
                value = value / factor
            elif name == "images_per_s" and is_number(value):
                value = value * factor
            metrics[name] = value
        samples = row.samples_ms / factor if row.samples_ms is not None else None
        normalized.append(replace(row, metrics=metrics, samples_ms=samples))
    return normalized


def _matrix_moved_pixels(baseline: np.ndarray, current: np.ndarray) -> int:
    # A pixel whose (label, prediction) cell changes leaves one cell and enters another.
    return math.ceil(int(np.abs(current - baseline).sum()) / 2)


def _judge_matrix(name: str, base: np.ndarray, cur: np.ndarray, gate: Gate | None,
                  identity) -> Finding:
    total = int(base.sum())
    if base.shape != cur.shape:
        return Finding(identity, name, f"{base.shape}", f"{cur.shape}", None, None, REGRESSION,
                       gate.text if gate else "", "matrix shape changed", True)
    moved = _matrix_moved_pixels(base, cur)
    pct = 100.0 * moved / total if total else None
    if gate is None or gate.sense == "info":
        return Finding(identity, name, f"{total} px", f"{int(cur.sum())} px", moved, pct,
                       INFO if moved else OK, gate.text if gate else "", _moved_note(moved))
    limit = gate.bound * total if gate.relative else gate.bound
    verdict = REGRESSION if moved > limit else OK
    note = _moved_note(moved) + (" (within tolerance)" if moved and verdict == OK else "")
    return Finding(identity, name, f"{total} px", f"{int(cur.sum())} px", moved, pct, verdict,
                   gate.text, note, verdict == REGRESSION)


def _judge_label_maps(name: str, base: LabelMaps, cur: LabelMaps, gate: Gate | None,
                      identity) -> Finding:
    total = base.pixels.size
    changed = base.changed_pixels(cur)
    text = gate.text if gate else ""
    shown_base, shown_cur = f"{total} px", f"{cur.pixels.size} px"
    if changed is None:
        return Finding(identity, name, shown_base, shown_cur, None, None, REGRESSION, text,
                       "image sizes changed", True)
    pct = 100.0 * changed / total if total else None
    note = f"{changed} px changed label" if changed else ""
    if gate is None or gate.sense == "info":
        return Finding(identity, name, shown_base, shown_cur, changed, pct,
                       INFO if changed else OK, text, note)
    limit = gate.bound * total if gate.relative else gate.bound
    verdict = REGRESSION if changed > limit else OK
    if changed and verdict == OK:
        note += " (within tolerance)"
    return Finding(identity, name, shown_base, shown_cur, changed, pct, verdict, text, note,
                   verdict == REGRESSION)


def _moved_note(moved: int) -> str:
    return f"{moved} px moved between cells" if moved else ""


def _judge_string(name: str, base: str, cur: str, gate: Gate | None, identity) -> Finding:
    changed = base != cur
    if not changed:
        verdict = OK
    elif gate is None or gate.sense == "info":
        verdict = INFO
    else:
        verdict = REGRESSION
    note = "changed" if changed else ""
    return Finding(identity, name, base, cur, None, None, verdict, gate.text if gate else "",
                   note, verdict == REGRESSION)


def _judge_number(name: str, base: float, cur: float, gate: Gate | None, identity,
                  base_row: Row, cur_row: Row, options: CompareOptions) -> Finding:
    text = gate.text if gate else ""
    if math.isnan(base) or math.isnan(cur):
        if math.isnan(base) and math.isnan(cur):
            return Finding(identity, name, base, cur, None, None, OK, text)
        judged = gate is not None and gate.sense != "info"
        return Finding(identity, name, base, cur, None, None, REGRESSION if judged else INFO,
                       text, "NaN (undefined) on one side only", judged)
    delta = cur - base
    pct = 100.0 * delta / abs(base) if base else None
    if not (math.isfinite(base) and math.isfinite(cur) and math.isfinite(delta)):
        # Defensive: readers refuse non-finite values, but an overflowing difference
        # (1e308 - -1e308) must never read "ok".
        judged = gate is not None and gate.sense != "info"
        return Finding(identity, name, base, cur, None, None, REGRESSION if judged else INFO,
                       text, "not a finite number", judged)
    if gate is None or gate.sense == "info":
        return Finding(identity, name, base, cur, delta, pct, INFO if delta else OK, text)
    limit = gate.limit(base)
    # Floating-point slack so that "may drop by at most 0.001" admits exactly 0.001.
    slack = 1e-9 * max(abs(base), abs(cur), 1e-12)
    if gate.sense == "higher":
        worse, better = -delta, delta
    elif gate.sense == "lower":
        worse, better = delta, -delta
    else:
        worse, better = abs(delta), 0.0
    if worse <= limit + slack and not (better > limit + slack):
        return Finding(identity, name, base, cur, delta, pct, OK, text)

    beyond = REGRESSION if worse > limit + slack else IMPROVED
    statistic = sample_statistic(name, base_row)
    base_samples, cur_samples = base_row.samples_ms, cur_row.samples_ms
    if statistic is None or base_samples is None or cur_samples is None:
        return Finding(identity, name, base, cur, delta, pct, beyond, text,
                       fails=beyond == REGRESSION)
    if min(len(base_samples), len(cur_samples)) < MIN_SAMPLES:
        note = (f"only {min(len(base_samples), len(cur_samples))} samples on one side: "
                f"too few for an interval")
        verdict = INCONCLUSIVE if beyond == REGRESSION else OK
        return Finding(identity, name, base, cur, delta, pct, verdict, text, note)
    low, high = bootstrap_delta_interval(base_samples, cur_samples, statistic,
                                         confidence=options.confidence, seed=options.seed)
    level = f"{options.confidence:.0%}"
    interval = f"{level} CI of Δ [{low:+.4g}, {high:+.4g}]"
    # The change counts only if the interval excludes zero in the direction of the change.
    significant = low > 0 if delta > 0 else high < 0
    if beyond == REGRESSION:
        if significant:
            return Finding(identity, name, base, cur, delta, pct, REGRESSION, text, interval,
                           True)
        return Finding(identity, name, base, cur, delta, pct, INCONCLUSIVE, text,
                       f"{interval} includes 0: noise")
    if significant:
        return Finding(identity, name, base, cur, delta, pct, IMPROVED, text, interval)
    return Finding(identity, name, base, cur, delta, pct, OK, text, f"{interval}: not significant")


def _status_finding(base: Row, cur: Row, gate: Gate | None) -> Finding | None:
    """A latency row that did not run ("oom", "error", ...) is judged on its status only."""
    base_status, cur_status = base.metrics.get("status"), cur.metrics.get("status")
    if base_status in (None, "ok") and cur_status in (None, "ok"):
        return None
    text = gate.text if gate else ""
    if base_status == cur_status:
        verdict = OK
    elif cur_status == "ok":
        verdict = IMPROVED
    else:
        verdict = REGRESSION if base_status in (None, "ok") else INFO
    reason = cur.error or base.error or "a side did not run"
    return Finding(base.identity, "status", base_status, cur_status, None, None, verdict, text,
                   f"metrics not compared: {reason}", verdict == REGRESSION)


def compare_pair(base: Row, cur: Row, tolerances: Tolerances,
                 options: CompareOptions) -> list[Finding]:
    """Findings for one matched case: every gated metric (all metrics with `all_metrics`)."""
    identity = base.identity
    status = _status_finding(base, cur, tolerances.gate_for(base.kind, "status"))
    if status is not None:
        return [status]
    findings = []
    for name in dict.fromkeys([*base.metrics, *cur.metrics]):
        if name == "status":
            continue  # both ran ("ok"): nothing to say
        gate = tolerances.gate_for(base.kind, name)
        if gate is None and not options.all_metrics:
            continue
        if name not in cur.metrics:
            judged = gate is not None and gate.sense != "info"
            findings.append(Finding(identity, name, base.metrics[name], None, None, None,
                                    MISSING if judged else INFO, gate.text if gate else "",
                                    "metric missing in current", judged))
            continue
        if name not in base.metrics:
            findings.append(Finding(identity, name, None, cur.metrics[name], None, None, INFO,
                                    gate.text if gate else "", "new metric (not in baseline)"))
            continue
        b, c = base.metrics[name], cur.metrics[name]
        if isinstance(b, LabelMaps) and isinstance(c, LabelMaps):
            findings.append(_judge_label_maps(name, b, c, gate, identity))
        elif isinstance(b, np.ndarray) and isinstance(c, np.ndarray):
            findings.append(_judge_matrix(name, b, c, gate, identity))
        elif is_number(b) and is_number(c):
            findings.append(_judge_number(name, float(b), float(c), gate, identity, base, cur,
                                          options))
        elif isinstance(b, str) and isinstance(c, str):
            findings.append(_judge_string(name, b, c, gate, identity))
        else:
            findings.append(Finding(identity, name, _short(b), _short(c), None, None, REGRESSION,
                                    gate.text if gate else "", "value changed type", True))
    return findings


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"matrix{value.shape}"
    if isinstance(value, LabelMaps):
        return f"{value.pixels.size} px"
    return str(value)


def check_schemas(baseline: Side, current: Side) -> None:
    """Refuse to compare fcn-bench records of different schema versions (exit 2)."""
    base = {s for s in baseline.schemas if s.startswith("fcn-bench/")}
    cur = {s for s in current.schemas if s.startswith("fcn-bench/")}
    if base and cur and base != cur:
        raise UsageError(f"schema mismatch: baseline {baseline.path} is {', '.join(sorted(base))}"
                         f" but current {current.path} is {', '.join(sorted(cur))}; regenerate "
                         f"the baseline with this fcn-bench version")


# `evaluate` and `reproduce` records both hold the four accuracy metrics and the confusion matrix
# of a set of predictions on a split: a reproduce run's --save-predictions re-scored by evaluate
# must match it row for row, so the two kinds are compared as one "accuracy" kind.
ACCURACY_KINDS = ("evaluate", "reproduce")
ACCURACY = "accuracy"


def _family(kind: str) -> str:
    return ACCURACY if kind in ACCURACY_KINDS else kind


def _a(kind: str) -> str:
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def _kinds_text(kinds: set[str]) -> str:
    return " / ".join(sorted(kinds))


def align_kinds(baseline_rows: Sequence[Row], current_rows: Sequence[Row]
                ) -> tuple[list[Row], list[Row], list[str]]:
    """Rows ready to match across kinds: refuse (exit 2) sides with no kind in common, and turn
    evaluate and reproduce rows into "accuracy" rows matched on the identity keys both have."""
    base, cur = list(baseline_rows), list(current_rows)
    base_kinds, cur_kinds = {r.kind for r in base}, {r.kind for r in cur}
    if not base_kinds or not cur_kinds or base_kinds == cur_kinds:
        return base, cur, []
    if not {_family(k) for k in base_kinds} & {_family(k) for k in cur_kinds}:
        raise UsageError(f"cannot compare {_a(_kinds_text(base_kinds))} record with "
                         f"{_a(_kinds_text(cur_kinds))} record")
    base_acc = {k for k in base_kinds if k in ACCURACY_KINDS}
    cur_acc = {k for k in cur_kinds if k in ACCURACY_KINDS}
    if not base_acc or not cur_acc or base_acc == cur_acc:
        return base, cur, []
    accuracy = [r for r in (*base, *cur) if r.kind in ACCURACY_KINDS]
    shared = set.intersection(*({k for k, _ in r.identity} for r in accuracy)) - {"kind"}
    keys = [k for k in IDENTITY_KEYS if k in shared]

    def as_accuracy(rows: list[Row], side: str) -> list[Row]:
        out, seen = [], {}
        for row in rows:
            if row.kind not in ACCURACY_KINDS:
                out.append(row)
                continue
            identity = (("kind", ACCURACY), *((k, v) for k, v in row.identity if k in shared))
            if identity in seen:
                raise UsageError(
                    f"{side} {row.source}: several {row.kind} rows match one "
                    f"{_kinds_text((base_acc | cur_acc) - {row.kind})} row on "
                    f"{', '.join(keys) or 'nothing'}; compare one row's record (e.g. one "
                    "backend)")
            seen[identity] = row
            out.append(replace(row, kind=ACCURACY, identity=identity))
        return out

    note = (f"{_kinds_text(base_acc)} and {_kinds_text(cur_acc)} records compared as accuracy "
            f"records, matched on {', '.join(keys) or 'nothing'}")
    return as_accuracy(base, "baseline"), as_accuracy(cur, "current"), [note]


def compare_rows(baseline_rows: Sequence[Row], current_rows: Sequence[Row],
                 tolerances: Tolerances, options: CompareOptions | None = None, *,
                 baseline_name: str = "baseline", current_name: str = "current") -> Comparison:
    """Match rows on identity and judge them; rows on one side only are reported too."""
    options = options or CompareOptions()
    baseline_rows, current_rows, notes = align_kinds(baseline_rows, current_rows)
    base_rows, cur_rows = pool_rows(baseline_rows), pool_rows(current_rows)
    findings: list[Finding] = []
    for key, base in base_rows.items():
        cur = cur_rows.get(key)
        if cur is None:
            fails = not options.allow_missing
            findings.append(Finding(key, "(row)", base.source, None, None, None, MISSING, "",
                                    "row missing in current", fails))
            continue
        findings.extend(compare_pair(base, cur, tolerances, options))
    for key, cur in cur_rows.items():
        if key not in base_rows:
            findings.append(Finding(key, "(row)", None, cur.source, None, None, INFO, "",
                                    "new in current (not in baseline)"))
    pooled = [row for row in [*base_rows.values(), *cur_rows.values()] if row.pooled > 1]
    if pooled:
        notes.append(f"{len(pooled)} cases pooled from repeated runs (samples concatenated)")
    return Comparison(findings, baseline_name, current_name, notes)


def compare_paths(baseline: str | Path, current: str | Path, tolerances: Tolerances,
                  options: CompareOptions | None = None,
                  normalize_by: str | None = None) -> Comparison:
    """The whole `compare` command minus rendering: read, check schemas, normalise, compare."""
    base_side, cur_side = load_side(baseline), load_side(current)
    check_schemas(base_side, cur_side)
    base_rows, cur_rows = base_side.rows, cur_side.rows
    if normalize_by:
        base_rows, cur_rows = normalize_rows(base_rows, normalize_by), normalize_rows(
            cur_rows, normalize_by)
    comparison = compare_rows(base_rows, cur_rows, tolerances, options,
                              baseline_name=str(baseline), current_name=str(current))
    for side in (base_side, cur_side):
        if side.skipped:
            comparison.notes.append(f"{side.path}: skipped {len(side.skipped)} JSON files that "
                                    f"are not records")
    if normalize_by:
        comparison.notes.append(f"times are normalised by each record's {normalize_by} "
                                f"(unitless ratios)")
    return comparison


# ----------------------------------------------------------------------------------------------
# Rendering

TABLE_FORMATS = ("github", "plain", "csv")


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value if len(value) <= 16 else value[:12] + "…"
    if isinstance(value, (np.ndarray, LabelMaps)):
        return _short(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:.6g}"


def _format_delta(finding: Finding) -> tuple[str, str]:
    if finding.delta is None:
        return "", ""
    if isinstance(finding.delta, int) and finding.metric.endswith(("confusion_matrix",
                                                                    "label_maps")):
        delta = f"{finding.delta} px"
    else:
        delta = f"{finding.delta:+.4g}"
    pct = "" if finding.delta_pct is None else f"{finding.delta_pct:+.2f}%"
    return delta, pct


def _identity_columns(findings: Sequence[Finding]) -> tuple[list[str], dict[str, str]]:
    """Identity keys that vary between findings (columns) and those that do not (caption)."""
    values: dict[str, set[str]] = {}
    for finding in findings:
        present = dict(finding.identity)
        for key in IDENTITY_KEYS:
            values.setdefault(key, set()).add(present.get(key, ""))
    columns = [k for k in IDENTITY_KEYS if len(values.get(k, ())) > 1]
    constant = {k: next(iter(v)) for k, v in values.items() if len(v) == 1 and next(iter(v))}
    return columns, constant


def render(comparison: Comparison, fmt: str = "plain", *, title: str | None = None,
           failures_only: bool = False, summary: bool = True) -> str:
    """The delta table as GitHub markdown, plain text or CSV (CSV keeps every identity key).

    Identity shared by every row goes above the table; the varying part is one column per key,
    or, when that makes the table wider than TABLE_WIDTH, one letter per case and a legend."""
    if fmt not in TABLE_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(TABLE_FORMATS)}")
    findings = [f for f in comparison.findings
                if not failures_only or f.fails or f.verdict == INCONCLUSIVE]
    headers = ["metric", "baseline", "current", "delta", "delta %", "gate", "verdict", "note"]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*IDENTITY_KEYS, *headers])
        for f in findings:
            identity = dict(f.identity)
            writer.writerow([*(identity.get(k, "") for k in IDENTITY_KEYS), f.metric,
                             _csv_value(f.baseline), _csv_value(f.current),
                             "" if f.delta is None else f.delta,
                             "" if f.delta_pct is None else f"{f.delta_pct:.4f}",
                             f.gate, f.verdict, f.note])
        return buffer.getvalue()

    columns, constant = _identity_columns(findings)
    tablefmt = "github" if fmt == "github" else "simple"

    def build(cases: dict[tuple, str] | None) -> tuple[list[str], list[list[str]]]:
        """Rows with the varying identity as columns, or as one letter per case (`cases`)."""
        table = []
        for f in findings:
            identity = dict(f.identity)
            delta, pct = _format_delta(f)
            verdict = f"**{f.verdict}**" if fmt == "github" and f.fails else f.verdict
            who = ([cases[tuple(identity.get(k, "") for k in columns)]] if cases is not None
                   else [identity.get(k, "") for k in columns])
            table.append([*who, f.metric, format_value(f.baseline), format_value(f.current),
                          delta, pct, _gate_bound(f), verdict, f.note])
        return [*(["case"] if cases is not None else columns), *headers], table

    head, table = build(None)
    legend: list[str] = []
    if table and len(columns) > 1 and _widest(table, head, tablefmt) > TABLE_WIDTH:
        # Too wide: one letter per case in the table, spelled out in a legend under it.
        keys = list(dict.fromkeys(tuple(dict(f.identity).get(k, "") for k in columns)
                                  for f in findings))
        cases = dict(zip(keys, letters(len(keys)), strict=True))
        head, table = build(cases)
        legend = wrap_items("cases:", [f"{letter} = {'/'.join(v for v in key if v)}"
                                       for key, letter in cases.items()], TABLE_WIDTH)
        legend.insert(0, "")
    lines = []
    if title:
        lines.append(f"### {title}" if fmt == "github" else title)
        lines.append("")
    lines += [f"baseline: {comparison.baseline}", f"current:  {comparison.current}"]
    if constant:  # what every row shares, wrapped to the table width
        lines += wrap_items("every row:", [f"{k}={v}" for k, v in constant.items()],
                             TABLE_WIDTH)
    lines.append("")
    if table:
        lines.append(tabulate(table, headers=head, tablefmt=tablefmt, disable_numparse=True))
        lines += legend
    else:
        lines.append("(no rows to show)")
    lines.append("")
    if summary:
        lines += [f"note: {note}" for note in comparison.notes]
        lines.append(comparison.summary())
    return "\n".join(lines) + "\n"


TABLE_WIDTH = 120


def _widest(table: list[list[str]], headers: list[str], tablefmt: str) -> int:
    text = tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    return max(len(line) for line in text.splitlines())


def letters(count: int) -> list[str]:
    """A, B, ... Z, then A1, B1, ...: short labels for table cases explained in a legend."""
    return [chr(65 + i % 26) + (str(i // 26) if i >= 26 else "") for i in range(count)]


def _gate_bound(finding: Finding) -> str:
    """`+10%` for the gate `p50_ms:+10%` on the p50_ms line (the metric is in its own column)."""
    metric, _, bound = finding.gate.rpartition(":")
    return bound if metric == finding.metric else finding.gate


def wrap_items(prefix: str, items: Sequence[str], width: int) -> list[str]:
    """`prefix item, item, ...` over lines of at most `width`, never breaking inside an item."""
    lines, line = [], prefix
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if len(line) + 1 + len(piece) > width and line.strip():
            lines.append(line)
            line = " "
        line = f"{line} {piece}" if line.strip() else f"{line}{piece}"
    lines.append(line)
    return lines


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (np.ndarray, LabelMaps)):
        return _short(value)
    return value
