"""Backends: the registry of every implementation of bench.core.contracts.Backend.

Built-ins (torch, tensorflow, the numpy `reference`) and plugins registered through the entry-point
group `fcn_bench.backends` (docs/adding_a_backend.md) are reached by name through the functions
below (backends/registry.py). Importing this package imports no framework.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from backends.registry import (
    ALIASES,
    BACKEND_NAMES,
    BUILTINS,
    BackendInfo,
    available_backends,
    blob_bytes_per_value,
    canonical_name,
    check_trains,
    create_backend,
    create_trainer,
    describe_backends,
    registered_backends,
    resolve_backend_choice,
    resolve_backend_choices,
    scalar_writer,
    trains,
    unavailable_reason,
)
from bench.core.contracts import Backend, RunOptions
from bench.core.errors import BackendUnavailable, UsageError, WeightsError

# The errors the registry raises are importable from here too.
__all__ = ["ALIASES", "BACKEND_NAMES", "BUILTINS", "Backend", "BackendInfo", "BackendUnavailable",
           "RunOptions", "UsageError",
           "available_backends", "blob_bytes_per_value", "canonical_name", "check_trains",
           "create_backend", "create_trainer", "describe_backends", "read_torch_state_dict",
           "registered_backends", "resolve_backend_choice", "resolve_backend_choices",
           "scalar_writer", "trains", "unavailable_reason"]


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A .pth state dict as numpy (backends/torch/pth.py, weights_only); torch imported now."""
    if unavailable_reason("torch"):
        raise WeightsError(path, "is a PyTorch file; reading it needs torch: pip install "
                                 "'fcn-bench[torch]'")
    return importlib.import_module("backends.torch.pth").read_state_dict(Path(path))
