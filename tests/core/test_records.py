"""Records: provenance fields, strict JSON, atomic writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.core import records


def test_make_record_has_envelope_and_provenance():
    record = records.make_record("evaluate", split="val")
    assert record["schema_version"] == records.SCHEMA_VERSION
    assert record["kind"] == "evaluate" and record["split"] == "val"
    prov = record["provenance"]
    assert prov["utc_time"].endswith("Z")
    assert set(prov["git"]) == {"commit", "dirty"}
    assert "numpy" in prov["packages"]


def test_json_is_strict_and_converts_numpy(tmp_path):
    path = tmp_path / "out" / "r.json"
    records.write_json(path, {"a": np.float32(0.5), "b": np.int64(3), "c": math.nan,
                              "d": np.arange(3), "e": [np.float64("nan")]})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": 3, "c": None, "d": [0, 1, 2],
                                            "e": [None]}


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        records.write_json(path, {"x": object()})
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_json_depth_counts_brackets_outside_strings_only():
    from bench.core.records import json_depth

    assert json_depth("{}") == 1 and json_depth("1") == 0 and json_depth("") == 0
    assert json_depth('[{"a": [1, {"b": "]]]["}]}]') == 4
    assert json_depth('["\\"[[[[", [[]]]') == 3  # an escaped quote does not end the string
    assert json_depth("[" * 5000, limit=64) > 64


def test_loads_bounded_refuses_deep_documents_before_parsing():
    from bench.core.records import JsonTooDeep, loads_bounded

    assert loads_bounded("[" * 64 + "]" * 64) is not None
    with pytest.raises(JsonTooDeep, match="nested more than 64 levels deep"):
        loads_bounded("[" * 65 + "]" * 65)
    with pytest.raises(ValueError):  # beyond Python's int digit limit: ValueError, not a crash
        loads_bounded("9" * 5000)
