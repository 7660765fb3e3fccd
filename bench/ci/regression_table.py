"""The regression table: a comparison's findings rendered as GitHub markdown, plain text or CSV,
with the shared identity above the table and a legend of cases when it would be too wide.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tabulate import tabulate

from bench.ci.judge import INCONCLUSIVE, Comparison, Finding, short_value
from bench.ci.label_maps import LabelMaps
from bench.ci.record_rows import IDENTITY_KEYS
from bench.core.errors import UsageError

TABLE_FORMATS = ("github", "plain", "csv")


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value if len(value) <= 16 else value[:12] + "…"
    if isinstance(value, (np.ndarray, LabelMaps)):
        return short_value(value)
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
        return short_value(value)
    return value
