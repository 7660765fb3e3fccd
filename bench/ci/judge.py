"""Judging: every matched pair of rows becomes findings (metric, values, delta, gate, verdict);
`compare_paths` is the whole `compare` command minus the rendering (bench/ci/regression_table.py).

Speed gates are noise-aware: with raw samples on both sides a seeded bootstrap interval of the
difference decides between REGRESSION and inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.ci.gates import Gate, Tolerances
from bench.ci.label_maps import LabelMaps
from bench.ci.record_rows import Row, is_number, load_side
from bench.ci.row_sets import align_kinds, check_schemas, normalize_rows, pool_rows
from bench.ci.speed_stats import (
    MIN_SAMPLES,
    bootstrap_delta_interval,
    check_confidence,
    sample_statistic,
)

OK, IMPROVED, REGRESSION, INCONCLUSIVE, MISSING, INFO = (
    "ok", "improved", "REGRESSION", "inconclusive", "missing", "info")
VERDICTS = (REGRESSION, MISSING, INCONCLUSIVE, IMPROVED, INFO, OK)


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
            findings.append(Finding(identity, name, short_value(b), short_value(c), None, None,
                                    REGRESSION, gate.text if gate else "", "value changed type",
                                    True))
    return findings


def short_value(value: Any) -> str:
    """A matrix or label maps as its size (the table shows no arrays), anything else as text."""
    if isinstance(value, np.ndarray):
        return f"matrix{value.shape}"
    if isinstance(value, LabelMaps):
        return f"{value.pixels.size} px"
    return str(value)


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
