"""Backend registry: names, aliases, and unavailable frameworks reported with the fix."""

from __future__ import annotations

import importlib.util

import pytest

import backends
from bench.core.errors import BackendUnavailable, UsageError


def test_aliases_resolve():
    assert backends.canonical_name("tf") == "tensorflow"
    assert backends.canonical_name("PyTorch") == "torch"


def test_unknown_backend_lists_choices():
    with pytest.raises(UsageError, match="unknown backend 'jax'; choose from torch, tensorflow"):
        backends.canonical_name("jax")


def test_missing_framework_is_reported_with_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert "pip install 'fcn-bench[tensorflow]'" in backends.unavailable_reason("tf")
    assert "tensorflow" not in backends.available_backends()
    with pytest.raises(BackendUnavailable, match="tensorflow is not installed"):
        backends.create_backend("tensorflow", None)
