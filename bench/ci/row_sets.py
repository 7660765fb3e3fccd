"""Rows made ready to match: repeated runs pooled, times normalised by a calibration, schema
versions checked, and evaluate/reproduce records aligned as one "accuracy" kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from bench.ci.record_files import RecordError
from bench.ci.record_rows import IDENTITY_KEYS, Row, Side, is_number
from bench.ci.speed_stats import SAMPLE_STATISTICS
from bench.core.errors import UsageError


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
