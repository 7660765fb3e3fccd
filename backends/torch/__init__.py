"""The PyTorch backend: `create_backend` (the registry's factory) and `FcnModule` for training.

Importing this package imports torch (the registry in backends/__init__.py does so on demand).
"""

from backends.torch.backend import TorchBackend
from backends.torch.model import FcnModule
from bench.core.contracts import RunOptions
from bench.model.spec import FcnSpec


def create_backend(spec: FcnSpec, options: RunOptions | None = None) -> TorchBackend:
    """The registry's factory (the signature every backend factory has, plugins included)."""
    return TorchBackend(spec, options)


__all__ = ["FcnModule", "TorchBackend", "create_backend"]
