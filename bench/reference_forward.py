"""Ground truth: a framework-free numpy forward pass of an `FcnSpec`, with Caffe's semantics.

Deliberately naive and independent of both backends (im2col + tensordot convolution, pooling
windows clipped exactly as Caffe's pooling_layer.cpp does, transposed convolution as a literal
scatter-add, top-left crops), so "both backends equal the reference" means something. Computes in
float64 by default; meant for narrow nets and small inputs. Also holds the image contract every
backend checks (`check_images`). Imports numpy only, never a framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from bench.errors import UsageError
from bench.spec import Conv, Crop, Dropout, FcnSpec, MaxPool, Scale, Sum, Upsample
from bench.weights import check_params

# im2col matrices are built in row bands of at most this many elements (bounded memory).
_IM2COL_BUDGET = 8_000_000


# ----------------------------------------------------------------------------------------------
# The image contract shared by the reference and both backends


def check_images(images: np.ndarray) -> np.ndarray:
    """The backend input contract: (N, 3, H, W) float (returned as C-contiguous float32)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3 or min(images.shape) < 1:
        raise UsageError(f"images must be (N, 3, H, W) with N, H, W >= 1, got shape "
                         f"{images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise UsageError(f"images must be float32 (BGR, mean-subtracted), got {images.dtype}")
    return np.ascontiguousarray(images, dtype=np.float32)


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


def caffe_pooled_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """Caffe pooling_layer.cpp: ceil((size + 2 pad - kernel) / stride) + 1, then the last window
    must start inside the image (only matters with padding)."""
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
    weighted kernel at (stride*i, stride*j). weight [C_in, C_out, k, k]; out (n-1)*s + k."""
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

    images: (N, 3, H, W) BGR mean-subtracted; params: canonical (Caffe) layouts. Dropout is the
    identity (inference). Blobs come back in `dtype` (float64 unless told otherwise).
    """
    check_params(params, spec)
    weights = {name: np.asarray(value, dtype=dtype) for name, value in params.items()}
    blobs: dict[str, np.ndarray] = {"data": check_images(images).astype(dtype)}
    for layer in spec.layers:
        if isinstance(layer, Sum):
            first, second = (blobs[name] for name in layer.bottoms)
            blobs[layer.name] = first + second
            continue
        x = blobs[layer.bottom]
        if isinstance(layer, Conv):
            y = conv2d(x, weights[f"{layer.name}.weight"], weights[f"{layer.name}.bias"],
                       layer.stride, layer.pad)
            blobs[layer.name] = np.maximum(y, 0) if layer.relu else y
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
            # Top-left crop at the derived offset (Caffe Crop, axis 2), never centred.
            blobs[layer.name] = x[:, :, offset:offset + ref_h, offset:offset + ref_w]
        else:
            raise TypeError(f"unsupported layer {layer!r}")
    wanted = list(blobs) if names is None else list(names)
    unknown = [name for name in wanted if name not in blobs]
    if unknown:
        raise KeyError(f"{spec.variant} has no blob(s) {', '.join(unknown)}")
    return {name: blobs[name] for name in wanted}
