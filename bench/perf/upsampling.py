"""Cheaper exact forms of FCN's fixed bilinear upsampling, and when to use them.

With the reference's diagonal bilinear kernels (bench.model.init.bilinear_upsample_weight), class c
of an upsampled blob depends on class c of its input only, through the k x k kernel outer(r, r) of
the 1-D bilinear ramp r. So the full C x C deconvolution (C^2 k^2 products per input pixel, all
but C k^2 of them by zero) can run as
  "grouped":   one transposed convolution per class with the same k x k kernel: the same
               non-zero products, summed in another order;
  "separable": a k x 1 then a 1 x k per-class transposed convolution: 2k products, not k^2.
Which is fastest depends on the framework, the layer's kernel/stride, the device and the dtype,
so the choice is data (UPSAMPLE_FORMS); anything unlisted, and any weight that is not exactly the
diagonal bilinear kernel, stays "dense". Measurements and sources: docs/latency.md#upsampling.
"""

from __future__ import annotations

import numpy as np

from bench.model.init import bilinear_filter

FORMS = ("dense", "grouped", "separable")

# (framework, device type, "fp32" or "tensor-core" (half precision / TF32), kernel, stride) -> form.
# torch CPU fp32 (1 thread, CPU time): 64/32 and 16/8 dense 100-130 ms -> 30 ms; 4/2 2x grouped.
# torch CPU half: grouped/separable kernels slower than dense (not listed). H100 (torch 2.11):
# bf16 16/8 separable 144 us vs dense 514, 4/2 grouped 25-38 vs 68-101; fp32 16/8 dense is best.
# TensorFlow CPU fp32 (depthwise transposed convolutions): 16/8 30 -> 10 ms, 64/32 77 -> 6 ms,
# 4/2 0.56 -> 0.25 ms. TensorFlow on a GPU and in half precision: not measured, dense.
UPSAMPLE_FORMS: dict[tuple[str, str, str, int, int], str] = {
    ("torch", "cpu", "fp32", 64, 32): "separable", ("torch", "cpu", "fp32", 32, 16): "separable",
    ("torch", "cpu", "fp32", 16, 8): "separable", ("torch", "cpu", "fp32", 4, 2): "grouped",
    ("torch", "cuda", "fp32", 4, 2): "grouped",
    ("torch", "cuda", "tensor-core", 16, 8): "separable",
    ("torch", "cuda", "tensor-core", 4, 2): "grouped",
    ("tensorflow", "cpu", "fp32", 64, 32): "separable",
    ("tensorflow", "cpu", "fp32", 32, 16): "separable",
    ("tensorflow", "cpu", "fp32", 16, 8): "separable",
    ("tensorflow", "cpu", "fp32", 4, 2): "grouped",
}


def upsample_form(framework: str, device_type: str, tensor_cores: bool, kernel: int,
                  stride: int) -> str:
    """The form to execute one Upsample layer in; `tensor_cores`: half precision or TF32."""
    compute = "tensor-core" if tensor_cores else "fp32"
    return UPSAMPLE_FORMS.get((framework, device_type, compute, kernel, stride), "dense")


def is_diagonal_bilinear(weight: np.ndarray, kernel: int) -> bool:
    """Whether a [C, C, k, k] deconvolution weight (canonical layout) is exactly the reference's
    fixed kernel: zero off the channel diagonal and bilinear_filter(k) on it, value by value."""
    weight = np.asarray(weight)
    channels = weight.shape[0]
    if weight.shape != (channels, channels, kernel, kernel):
        return False
    index = np.arange(channels)
    diagonal = weight[index, index]
    off = weight.copy()
    off[index, index] = 0
    return bool(np.array_equal(diagonal, np.broadcast_to(bilinear_filter(kernel), diagonal.shape))
                and not off.any())


def bilinear_ramp(kernel: int) -> np.ndarray:
    """The 1-D ramp r with outer(r, r) == bilinear_filter(kernel), read off that filter (one
    formula, in bench/model/init.py): r = column j / sqrt(entry j, j) at the peak j. Its values are
    dyadic fractions such as 1/16 .. 15/16, so the square root, the division and the float32
    products are exact."""
    square = bilinear_filter(kernel).astype(np.float64)
    peak = int(np.argmax(np.diag(square)))
    ramp = square[:, peak] / np.sqrt(square[peak, peak])
    if not np.array_equal(np.outer(ramp, ramp).astype(np.float32), bilinear_filter(kernel)):
        raise AssertionError(f"bilinear_filter({kernel}) is not outer(r, r) of a float32 ramp")
    return ramp.astype(np.float32)
