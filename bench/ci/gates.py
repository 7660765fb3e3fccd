"""Tolerance gates: how much each metric may move, kept as data (`METRIC:BOUND` expressions in
reference_results/ci/tolerances.json and on the command line).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path

from bench.ci.record_files import RecordError, read_json
from bench.core.errors import UsageError
from bench.core.records import REPO_ROOT

DEFAULT_TOLERANCES = REPO_ROOT / "reference_results" / "ci" / "tolerances.json"

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
