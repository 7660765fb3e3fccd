"""The TensorFlow backend: `BACKEND_CLASS` for the registry and `FcnModule` (a tf.Module).

Importing this package imports tensorflow (the registry in backends/__init__.py does so on
demand). TF's C++ INFO/WARNING chatter is silenced before that import unless the user chose a
level; errors (level 2 still shows ERROR and FATAL) are never hidden.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from backends.tensorflow.backend import TensorflowBackend
from backends.tensorflow.model import FcnModule

BACKEND_CLASS = TensorflowBackend

__all__ = ["BACKEND_CLASS", "FcnModule", "TensorflowBackend"]
