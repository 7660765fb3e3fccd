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


def test_reference_is_registered_but_runs_only_when_named():
    assert backends.registered_backends()[:3] == ["torch", "tensorflow", "reference"]
    assert backends.unavailable_reason("reference") is None  # numpy only: always available
    assert "reference" not in backends.available_backends()
    assert "reference" not in backends.resolve_backend_choices(())
    assert "reference" not in backends.resolve_backend_choices(["all"])
    assert backends.resolve_backend_choices(["reference"]) == ["reference"]
    assert backends.BACKEND_NAMES == ("torch", "tensorflow")  # what `all` and golden hold


def test_trainers_come_from_the_registry():
    assert backends.trains("torch") and backends.trains("tf")
    assert not backends.trains("reference")
    with pytest.raises(UsageError, match="backend 'reference' has no trainer; train with torch "
                                         "or tensorflow"):
        backends.check_trains("reference")


def test_float64_blobs_are_declared_by_the_backend_for_the_memory_check():
    assert backends.blob_bytes_per_value("reference") == 8


def test_reference_refuses_what_it_cannot_do_in_one_line():
    from bench.model.spec import build_spec

    spec = build_spec("fcn32s", width_divisor=16)
    with pytest.raises(UsageError, match="computes in float64 and takes precision fp32 only, "
                                         "not 'bf16'"):
        backends.create_backend("reference", spec, backends.RunOptions(precision="bf16"))
    with pytest.raises(UsageError, match="nothing to compile"):
        backends.create_backend("reference", spec, backends.RunOptions(compile="default"))
    with pytest.raises(BackendUnavailable, match="runs on the host only"):
        backends.create_backend("reference", spec, backends.RunOptions(device="cuda"))


def test_backends_command_lists_every_built_in():
    from click.testing import CliRunner

    from bench.cli.app import cli

    result = CliRunner().invoke(cli, ["backends"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[2:]}
    assert rows["reference"] == ["built-in", "yes", "no", "no", "(name", "it)"]
    assert set(rows) >= {"torch", "tensorflow", "reference"}
