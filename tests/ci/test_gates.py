"""Tolerance gates: `METRIC:BOUND` expressions, their senses and units, sections per record kind
(bench/ci/gates.py). The command-line side is in tests/ci/test_compare.py."""

from __future__ import annotations

import pytest

from bench.ci.gates import Tolerances, load_tolerances, parse_gate
from bench.core.errors import UsageError


def test_parse_gate_senses_and_units():
    drop = parse_gate("mean_iou:-0.001")
    assert (drop.sense, drop.bound, drop.relative) == ("higher", 0.001, False)
    rise = parse_gate("p50_ms:+10%")
    assert (rise.sense, rise.relative) == ("lower", True)
    assert rise.limit(200.0) == pytest.approx(20.0)
    assert parse_gate("confusion_matrix:40").sense == "both"
    assert parse_gate("status:exact").bound == 0.0
    assert parse_gate("label_digest:info").sense == "info"
    assert parse_gate("per_class_iou.*:-0.01").matches("per_class_iou.cat")


@pytest.mark.parametrize("expression", ["mean_iou", "mean_iou:", ":0.1", "mean_iou:abc",
                                        "mean_iou:--1", "mean iou:-1", "p50_ms:+10%%"])
def test_bad_gate_is_a_usage_error(expression):
    with pytest.raises(UsageError, match="bad tolerance"):
        parse_gate(expression)


def test_last_matching_gate_wins_and_kind_sections_extend_default():
    tolerances = Tolerances({"default": [parse_gate("mean_iou:-0.001")],
                                 "golden": [parse_gate("mean_iou:info")]})
    assert tolerances.gate_for("evaluate", "mean_iou").text == "mean_iou:-0.001"
    assert tolerances.gate_for("golden", "mean_iou").sense == "info"
    override = tolerances.with_overrides(["mean_*:-0.01"])
    assert override.gate_for("golden", "mean_iou").bound == 0.01


def test_committed_tolerances_parse():
    tolerances = load_tolerances()
    assert tolerances.gate_for("latency", "p50_ms").text == "p50_ms:+10%"
    assert tolerances.gate_for("golden", "label_maps").relative
