"""The TensorFlow backend: `create_backend` (the registry's factory) and `FcnModule` (a tf.Module).

Importing this package imports tensorflow (the registry in backends/__init__.py does so on
demand). TF's C++ INFO/WARNING chatter is silenced before that import unless the user chose a
level; errors (level 2 still shows ERROR and FATAL) are never hidden. TF 2.21 logs its oneDNN
notice through absl before absl's log level is set, once per shared library that links the
check (so twice), whatever TF_CPP_MIN_LOG_LEVEL says: the import runs with the process's stderr
(file descriptor 2) captured, and everything except that notice is written back.
"""

import os

from backends.native_stderr import without_lines

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Lines TF prints on every import that tell the user nothing they can act on here (the oneDNN
# setting is recorded in every record's environment as `onednn_opts`; README Known limits).
IMPORT_NOTICES = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I\d{4} [\d:.]+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\..*",
)

with without_lines(IMPORT_NOTICES):
    import tensorflow  # noqa: F401  (imported here, under the filter, before the modules below)

from backends.tensorflow.backend import TensorflowBackend  # noqa: E402
from backends.tensorflow.model import FcnModule  # noqa: E402
from bench.core.contracts import RunOptions  # noqa: E402
from bench.model.spec import FcnSpec  # noqa: E402


def create_backend(spec: FcnSpec, options: RunOptions | None = None) -> TensorflowBackend:
    """The registry's factory (the signature every backend factory has, plugins included)."""
    return TensorflowBackend(spec, options)


__all__ = ["FcnModule", "TensorflowBackend", "create_backend"]
