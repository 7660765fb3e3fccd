"""The `reference` backend: the float64 numpy forward pass with Caffe's semantics (numpy only).

Its layers are public so that a plugin can build on them (docs/adding_a_backend.md); importing
this package imports no framework.
"""

from backends.reference.backend import ReferenceBackend, create_backend
from backends.reference.forward import (
    caffe_pooled_size,
    conv2d,
    deconv2d,
    forward_checked,
    grouped_conv2d,
    lrn_caffe,
    max_pool_caffe,
    reference_forward,
)

__all__ = ["ReferenceBackend", "caffe_pooled_size", "conv2d", "create_backend",
           "deconv2d", "forward_checked", "grouped_conv2d", "lrn_caffe", "max_pool_caffe",
           "reference_forward"]
