"""Backend registry: names -> lazily imported implementations, and why one is unavailable.

Importing this package imports no framework; `get_backend` imports one on demand.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench.core.contracts import Backend, RunOptions
from bench.core.errors import BackendUnavailable, UsageError, WeightsError

# name -> (module implementing `BACKEND_CLASS`, framework import name, pip extra)
_REGISTRY = {
    "torch": ("backends.torch", "torch", "torch"),
    "tensorflow": ("backends.tensorflow", "tensorflow", "tensorflow"),
}
ALIASES = {"tf": "tensorflow", "pytorch": "torch"}
BACKEND_NAMES = tuple(_REGISTRY)

__all__ = ["BACKEND_NAMES", "Backend", "RunOptions", "available_backends", "canonical_name",
           "create_backend", "get_backend", "read_torch_state_dict", "resolve_backend_choice",
           "resolve_backend_choices", "unavailable_reason"]


def canonical_name(name: str) -> str:
    """Resolve aliases ("tf" -> "tensorflow"); unknown names get an error listing the choices."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        choices = ", ".join([*BACKEND_NAMES, *ALIASES])
        raise UsageError(f"unknown backend {name!r}; choose from {choices}")
    return key


def unavailable_reason(name: str) -> str | None:
    """None if the backend's framework is importable, else a one-line reason with the fix."""
    key = canonical_name(name)
    _, framework, extra = _REGISTRY[key]
    if importlib.util.find_spec(framework) is None:
        return (f"backend {key!r} is unavailable: {framework} is not installed "
                f"(pip install 'fcn-bench[{extra}]')")
    return None


def available_backends() -> list[str]:
    return [name for name in BACKEND_NAMES if unavailable_reason(name) is None]


def resolve_backend_choice(choice: str) -> list[str]:
    """Backend names to run for a `--backend` choice: one (aliases resolved, refused with the
    reason when not installed) or every available one for "all"."""
    if choice == "all":
        names = available_backends()
        if not names:
            raise BackendUnavailable("no backend is installed; pip install 'fcn-bench[torch]' "
                                     "and/or 'fcn-bench[tensorflow]'")
        return names
    name = canonical_name(choice)
    reason = unavailable_reason(name)
    if reason:
        raise BackendUnavailable(reason)
    return [name]


def resolve_backend_choices(choices: Iterable[str]) -> list[str]:
    """Canonical backend names for several `--backend` values (none = every available one),
    in order, without repeats; each must be installed."""
    names = (name for choice in (tuple(choices) or ("all",))
             for name in resolve_backend_choice(choice))
    return list(dict.fromkeys(names))


def get_backend(name: str) -> type[Backend]:
    """The Backend class for `name`, importing its framework now."""
    key = canonical_name(name)
    reason = unavailable_reason(key)
    if reason:
        raise BackendUnavailable(reason)
    module = importlib.import_module(_REGISTRY[key][0])
    return module.BACKEND_CLASS


def create_backend(name: str, spec, options: RunOptions | None = None) -> Backend:
    return get_backend(name)(spec, options)


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A .pth state dict as numpy (backends/torch/pth.py, weights_only); torch imported now."""
    if unavailable_reason("torch"):
        raise WeightsError(path, "is a PyTorch file; reading it needs torch: pip install "
                                 "'fcn-bench[torch]'")
    return importlib.import_module("backends.torch.pth").read_state_dict(Path(path))
