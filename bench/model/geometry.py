"""Geometry of an FCN spec: blob shapes with Caffe's rounding, and coordinate maps -> crop offsets.

The rounding: docs/fidelity.md "Ceil pooling" and "Blob sizes".

Stdlib only. Crop offsets are *derived* here from the layer geometry, the way
Caffe's python/caffe/coord_map.py does, never typed in (docs/fidelity.md "Crop offsets").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

from bench.model.layers import Concat, Conv, Crop, Layer, MaxPool, Sum, Upsample, layer_inputs

Shape = tuple[int, int, int]  # (C, H, W), batch omitted


def ceil_pool_size(size: int, kernel: int, stride: int) -> int:
    # Caffe: ceil((size + 2*pad - kernel) / stride) + 1 with pad 0 (no clipping needed);
    # docs/fidelity.md "Ceil pooling".
    return max(0, math.ceil((size - kernel) / stride)) + 1


def output_shape(layer: Layer, shapes: Mapping[str, Shape]) -> Shape:
    """(C, H, W) of a layer's output blob given the shapes of the blobs it reads."""
    if isinstance(layer, Sum):
        a, b = (shapes[name] for name in layer.bottoms)
        if a != b:
            raise ValueError(f"{layer.name}: cannot sum {layer.bottoms[0]}{a} and "
                             f"{layer.bottoms[1]}{b}")
        return a
    if isinstance(layer, Concat):
        parts = [shapes[name] for name in layer.bottoms]
        if len({part[1:] for part in parts}) != 1:
            raise ValueError(f"{layer.name}: cannot concatenate blobs of different sizes "
                             f"{[part[1:] for part in parts]}")
        return (sum(part[0] for part in parts), parts[0][1], parts[0][2])
    c, h, w = shapes[layer.bottom]
    if isinstance(layer, Conv):
        out = [(s + 2 * layer.pad - layer.kernel) // layer.stride + 1 for s in (h, w)]
        if min(out) < 1:
            raise ValueError(f"{layer.name}: input {h}x{w} is smaller than its {layer.kernel}x"
                             f"{layer.kernel} kernel")
        return (layer.out_channels, out[0], out[1])
    if isinstance(layer, MaxPool):
        return (c, ceil_pool_size(h, layer.kernel, layer.stride),
                ceil_pool_size(w, layer.kernel, layer.stride))
    if isinstance(layer, Upsample):
        return (layer.channels, (h - 1) * layer.stride + layer.kernel,
                (w - 1) * layer.stride + layer.kernel)
    if isinstance(layer, Crop):
        _, rh, rw = shapes[layer.reference]
        offset = layer.offset or 0
        if offset + rh > h or offset + rw > w:
            raise ValueError(f"{layer.name}: crop [{offset}:{offset}+{rh}, {offset}:{offset}+{rw}]"
                             f" leaves {layer.bottom} ({h}x{w})")
        return (c, rh, rw)
    return (c, h, w)  # Dropout, Scale, LRN keep the shape


# ----------------------------------------------------------------------------------------------
# Coordinate mapping (Caffe python/caffe/coord_map.py): each blob's cell index u maps to the
# input-image coordinate a*u + b. Exact rational arithmetic, so offsets come out as integers.


@dataclass(frozen=True)
class CoordMap:
    scale: Fraction
    shift: Fraction

    def compose_forward(self, stride: int, kernel: int, pad: int) -> CoordMap:
        """Output of a conv/pool: x_in = stride*x_out + (kernel-1)/2 - pad."""
        return CoordMap(self.scale * stride,
                        self.scale * (Fraction(kernel - 1, 2) - pad) + self.shift)

    def compose_deconv(self, stride: int, kernel: int, pad: int = 0) -> CoordMap:
        """Output of a deconv inverts the conv map: x_in = (x_out - (kernel-1)/2 + pad)/stride."""
        return CoordMap(self.scale / stride,
                        self.scale * (pad - Fraction(kernel - 1, 2)) / stride + self.shift)


IDENTITY = CoordMap(Fraction(1), Fraction(0))


def _aligned(layer: Layer, maps: Mapping[str, CoordMap]) -> CoordMap:
    """The common map of blobs fused element-wise or by channel (they must coincide)."""
    found = [maps[name] for name in layer_inputs(layer)]
    if any(other != found[0] for other in found[1:]):
        raise ValueError(f"{layer.name}: fused blobs are misaligned ({found})")
    return found[0]


def coord_maps(layers: tuple[Layer, ...]) -> dict[str, CoordMap]:
    """Input-image coordinate map of every blob; network inputs (blobs read but never produced,
    e.g. "data", or "color" and "hha") are the identity."""
    produced = {layer.name for layer in layers}
    maps = {name: IDENTITY for layer in layers for name in layer_inputs(layer)
            if name not in produced}
    for layer in layers:
        if isinstance(layer, Conv):
            maps[layer.name] = maps[layer.bottom].compose_forward(layer.stride, layer.kernel,
                                                                  layer.pad)
        elif isinstance(layer, MaxPool):
            maps[layer.name] = maps[layer.bottom].compose_forward(layer.stride, layer.kernel, 0)
        elif isinstance(layer, Upsample):
            maps[layer.name] = maps[layer.bottom].compose_deconv(layer.stride, layer.kernel)
        elif isinstance(layer, Crop):
            # Cropped cell u is bottom cell u + offset; by construction it aligns with reference.
            maps[layer.name] = maps[layer.reference]
        elif isinstance(layer, Sum | Concat):
            maps[layer.name] = _aligned(layer, maps)
        else:  # Dropout, Scale, LRN: element-wise or across channels only
            maps[layer.name] = maps[layer.bottom]
    return maps


def derive_crop_offsets(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Fill every Crop's offset so that bottom[u + offset] lands on reference[u] in image space."""
    resolved: list[Layer] = []
    for layer in layers:
        if isinstance(layer, Crop):
            maps = coord_maps((*resolved,))
            bottom, reference = maps[layer.bottom], maps[layer.reference]
            if bottom.scale != reference.scale:
                raise ValueError(f"{layer.name}: {layer.bottom} and {layer.reference} have "
                                 f"different strides ({bottom.scale} vs {reference.scale})")
            offset = (reference.shift - bottom.shift) / bottom.scale
            if offset.denominator != 1 or offset < 0:
                raise ValueError(f"{layer.name}: no integral non-negative crop aligns "
                                 f"{layer.bottom} with {layer.reference} (offset {offset})")
            layer = replace(layer, offset=int(offset))
        resolved.append(layer)
    return tuple(resolved)
