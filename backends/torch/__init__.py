"""The PyTorch backend: `BACKEND_CLASS` for the registry and `FcnModule` for training.

Importing this package imports torch (the registry in backends/__init__.py does so on demand).
"""

from backends.torch.backend import TorchBackend
from backends.torch.model import FcnModule

BACKEND_CLASS = TorchBackend

__all__ = ["BACKEND_CLASS", "FcnModule", "TorchBackend"]
