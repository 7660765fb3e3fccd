"""Ground truth: a framework-free numpy forward pass of an `FcnSpec`, with Caffe's semantics.

Deliberately naive and independent of both backends (im2col + tensordot convolution, pooling
windows clipped exactly as Caffe's pooling_layer.cpp does, transposed convolution as a literal
scatter-add, grouped convolution as a loop over groups, Caffe's LRN as a literal window sum,
top-left crops), so "both backends equal the reference" means something. Computes in float64 by
default; meant for narrow nets and small inputs. The `reference` backend (backend.py) wraps it,
and plugins may reuse its layers (docs/adding_a_backend.md). Imports numpy only, never a
framework. The Caffe semantics of each layer are in docs/fidelity.md ("Layer semantics",
"Ceil pooling", "Crop offsets", "Heads: FCN-32s, FCN-16s, FCN-8s").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from bench.core.contracts import check_inputs
from bench.model.spec import (
    LRN,
    Concat,
    Conv,
    Crop,
    Dropout,
    FcnSpec,
    MaxPool,
    Scale,
    Sum,
    Upsample,
)
from bench.weights.archive import check_params

# im2col matrices are built in row bands of at most this many elements (bounded memory).
_IM2COL_BUDGET = 8_000_000


# ----------------------------------------------------------------------------------------------
# Caffe layers in numpy (NCHW)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int,
           pad: int) -> np.ndarray:
    """Cross-correlation, zero padding `pad` on every side: (N, C, H, W) x [O, C, k, k] -> NCHW."""
    out_channels, _, kernel, _ = weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, channels, height, width = x.shape
    out_h = (height - kernel) // stride + 1
    out_w = (width - kernel) // stride + 1
    # (N, C, out_h, out_w, k, k) strided view; each band is materialised once (im2col).
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride][:, :, :out_h, :out_w]
    band = max(1, _IM2COL_BUDGET // max(1, n * channels * kernel * kernel * out_w))
    out = np.empty((n, out_channels, out_h, out_w), dtype=x.dtype)
    for top in range(0, out_h, band):
        cols = windows[:, :, top:top + band]  # (N, C, b, out_w, k, k)
        # sum over C, kh, kw -> (N, b, out_w, O)
        block = np.tensordot(cols, weight, axes=([1, 4, 5], [1, 2, 3]))
        out[:, :, top:top + band] = block.transpose(0, 3, 1, 2)
    return out + bias.reshape(1, -1, 1, 1)


def grouped_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int,
                   group: int) -> np.ndarray:
    """Caffe grouped convolution: output group j = conv(input group j, weight group j)
    (docs/fidelity.md "Layer semantics")."""
    if group == 1:
        return conv2d(x, weight, bias, stride, pad)
    ins, outs = x.shape[1] // group, weight.shape[0] // group
    return np.concatenate([conv2d(x[:, j * ins:(j + 1) * ins], weight[j * outs:(j + 1) * outs],
                                  bias[j * outs:(j + 1) * outs], stride, pad)
                           for j in range(group)], axis=1)


def lrn_caffe(x: np.ndarray, local_size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """Caffe LRN ACROSS_CHANNELS: x / (k + alpha / n * sum of x^2 over the n channels centred on
    c, zero beyond the ends) ** beta (lrn_layer.cpp CrossChannelForward_cpu; docs/fidelity.md
    "Layer semantics")."""
    half = (local_size - 1) // 2
    squares = np.pad(x * x, ((0, 0), (half, half), (0, 0), (0, 0)))
    channels = x.shape[1]
    window = np.zeros_like(x)
    for shift in range(local_size):
        window += squares[:, shift:shift + channels]
    return x * (k + alpha / local_size * window) ** -beta


def caffe_pooled_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """Caffe pooling_layer.cpp: ceil((size + 2 pad - kernel) / stride) + 1, then the last window
    must start inside the image (only matters with padding). docs/fidelity.md "Ceil pooling"."""
    pooled = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return max(pooled, 1)


def max_pool_caffe(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Max pooling with Caffe's windows: [p*stride, min(p*stride + kernel, size)) (pad 0)."""
    n, channels, height, width = x.shape
    out_h = caffe_pooled_size(height, kernel, stride)
    out_w = caffe_pooled_size(width, kernel, stride)
    out = np.empty((n, channels, out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        rows = slice(i * stride, min(i * stride + kernel, height))  # last one may be shorter
        row_max = x[:, :, rows].max(axis=2)  # (N, C, W)
        for j in range(out_w):
            cols = slice(j * stride, min(j * stride + kernel, width))
            out[:, :, i, j] = row_max[:, :, cols].max(axis=2)
    return out


def deconv2d(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """Caffe Deconvolution (pad 0, no bias) as a scatter-add: every input cell adds its
    weighted kernel at (stride*i, stride*j). weight [C_in, C_out, k, k]; out (n-1)*s + k
    (docs/fidelity.md "Heads: FCN-32s, FCN-16s, FCN-8s")."""
    n, _, height, width = x.shape
    _, out_channels, kernel, _ = weight.shape
    out = np.zeros((n, out_channels, (height - 1) * stride + kernel,
                    (width - 1) * stride + kernel), dtype=x.dtype)
    for i in range(height):
        for j in range(width):
            # (N, C_in) x (C_in, C_out, k, k) -> (N, C_out, k, k)
            patch = np.tensordot(x[:, :, i, j], weight, axes=([1], [0]))
            out[:, :, i * stride:i * stride + kernel, j * stride:j * stride + kernel] += patch
    return out


# ----------------------------------------------------------------------------------------------
# The network


def reference_forward(spec: FcnSpec, params: Mapping[str, np.ndarray], images: np.ndarray,
                      names: Sequence[str] | None = None,
                      dtype: type = np.float64) -> dict[str, np.ndarray]:
    """Inference-mode forward pass; returns the named blobs (all of them when `names` is None).

    images: (N, C, H, W) mean-subtracted, or a dict of them for a multi-input model
    (`check_inputs`); params: canonical (Caffe) layouts. Dropout is the identity (inference).
    Blobs come back in `dtype` (float64 unless told otherwise).
    """
    check_params(params, spec)
    weights = {name: np.asarray(value, dtype=dtype) for name, value in params.items()}
    return forward_checked(spec, weights, images, names, dtype)


def forward_checked(spec: FcnSpec, weights: Mapping[str, np.ndarray], images: np.ndarray,
                    names: Sequence[str] | None = None,
                    dtype: type = np.float64) -> dict[str, np.ndarray]:
    """`reference_forward` on weights already checked (check_params) and held in `dtype`: what
    a backend that keeps its weights converted calls on every forward pass."""
    blobs: dict[str, np.ndarray] = {name: value.astype(dtype)
                                    for name, value in check_inputs(spec, images).items()}
    for layer in spec.layers:
        if isinstance(layer, Sum):
            first, second = (blobs[name] for name in layer.bottoms)
            if layer.coeffs is None:
                blobs[layer.name] = first + second
            else:  # Caffe Eltwise SUM: sum of coeff_i * bottom_i (fidelity.md "Layer semantics")
                blobs[layer.name] = layer.coeffs[0] * first + layer.coeffs[1] * second
            continue
        if isinstance(layer, Concat):
            blobs[layer.name] = np.concatenate([blobs[name] for name in layer.bottoms], axis=1)
            continue
        x = blobs[layer.bottom]
        if isinstance(layer, Conv):
            y = grouped_conv2d(x, weights[f"{layer.name}.weight"],
                               weights[f"{layer.name}.bias"], layer.stride, layer.pad,
                               layer.group)
            blobs[layer.name] = np.maximum(y, 0) if layer.relu else y
        elif isinstance(layer, LRN):
            blobs[layer.name] = lrn_caffe(x, layer.local_size, layer.alpha, layer.beta, layer.k)
        elif isinstance(layer, MaxPool):
            blobs[layer.name] = max_pool_caffe(x, layer.kernel, layer.stride)
        elif isinstance(layer, Dropout):
            blobs[layer.name] = x
        elif isinstance(layer, Scale):
            blobs[layer.name] = x * weights[f"{layer.name}.weight"].reshape(1, -1, 1, 1)
        elif isinstance(layer, Upsample):
            blobs[layer.name] = deconv2d(x, weights[f"{layer.name}.weight"], layer.stride)
        elif isinstance(layer, Crop):
            ref_h, ref_w = blobs[layer.reference].shape[2:]
            offset = layer.offset
            if offset + ref_h > x.shape[2] or offset + ref_w > x.shape[3]:
                raise ValueError(f"{layer.name}: crop at {offset} to {ref_h}x{ref_w} leaves "
                                 f"{layer.bottom} {x.shape[2:]}")
            # Top-left crop at the derived offset (Caffe Crop, axis 2), never centred
            # (docs/fidelity.md "Crop offsets").
            blobs[layer.name] = x[:, :, offset:offset + ref_h, offset:offset + ref_w]
        else:
            raise TypeError(f"unsupported layer {layer!r}")
    wanted = list(blobs) if names is None else list(names)
    unknown = [name for name in wanted if name not in blobs]
    if unknown:
        raise KeyError(f"{spec.variant} has no blob(s) {', '.join(unknown)}")
    return {name: blobs[name] for name in wanted}
