"""Atomic writes: strict JSON on disk, the old file kept on failure, no temporary left behind."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.core import atomic


def test_json_is_strict_and_converts_numpy(tmp_path):
    path = tmp_path / "out" / "r.json"
    atomic.write_json(path, {"a": np.float32(0.5), "b": np.int64(3), "c": math.nan,
                             "d": np.arange(3), "e": [np.float64("nan")]})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": 3, "c": None, "d": [0, 1, 2],
                                            "e": [None]}


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        atomic.write_json(path, {"x": object()})
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind
