"""JSON text: nesting depth counted before parsing, deep documents refused."""

from __future__ import annotations

import pytest

from bench.core.json_text import JsonTooDeep, json_depth, loads_bounded


def test_json_depth_counts_brackets_outside_strings_only():
    assert json_depth("{}") == 1 and json_depth("1") == 0 and json_depth("") == 0
    assert json_depth('[{"a": [1, {"b": "]]]["}]}]') == 4
    assert json_depth('["\\"[[[[", [[]]]') == 3  # an escaped quote does not end the string
    assert json_depth("[" * 5000, limit=64) > 64


def test_loads_bounded_refuses_deep_documents_before_parsing():
    assert loads_bounded("[" * 64 + "]" * 64) is not None
    with pytest.raises(JsonTooDeep, match="nested more than 64 levels deep"):
        loads_bounded("[" * 65 + "]" * 65)
    with pytest.raises(ValueError):  # beyond Python's int digit limit: ValueError, not a crash
        loads_bounded("9" * 5000)
