"""FCN-32s / 16s / 8s / 8s-at-once on VGG16, described once, as data (stdlib only).

Backends walk `FcnSpec.layers` in order and build one op per entry; nothing about the architecture
is written anywhere else. Crop offsets are *derived* from the layer geometry (Caffe's coord_map),
never typed in. Canonical layouts follow Caffe: NCHW blobs, conv weights OIHW, deconv weights
[C_in, C_out, kH, kW].
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction

from bench.errors import UsageError

NUM_CLASSES = 21
VARIANTS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")

# VGG16 trunk: (stage, convs in the stage, output channels). conv1_1 alone gets pad 100 so that
# every crop stays in bounds for any input size >= 1 (README FAQ "Why pad the input?").
VGG16_STAGES = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
FC_CHANNELS = 4096
CONV1_1_PAD = 100
DROPOUT_RATIO = 0.5
# All-at-once FCN-8s scales the skip inputs before scoring them "to better condition
# optimization" (PAMI); these are fixed (lr_mult 0) Caffe Scale blobs.
ATONCE_SCALES = {"pool4": 0.01, "pool3": 0.0001}


class UnknownVariantError(UsageError):
    pass


# ----------------------------------------------------------------------------------------------
# Layer kinds. Each layer has one output blob, named after the layer (Caffe's top == name);
# `bottom` names its input blob ("data" is the network input).


@dataclass(frozen=True)
class Conv:
    """Convolution (+ optional ReLU). Weight OIHW [out, in, k, k]; bias [out]."""

    name: str
    bottom: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    pad: int = 0
    relu: bool = True
    # Score layers are new in FCN and start at zero (Caffe's default constant filler).
    zero_init: bool = False


@dataclass(frozen=True)
class MaxPool:
    """2x2/2 max pooling that rounds the output size *up* (Caffe's default), no padding."""

    name: str
    bottom: str
    kernel: int = 2
    stride: int = 2


@dataclass(frozen=True)
class Dropout:
    """Element-wise inverted dropout (not channel-wise Dropout2d); identity at inference."""

    name: str
    bottom: str
    ratio: float = DROPOUT_RATIO


@dataclass(frozen=True)
class Scale:
    """Per-channel constant multiplier (at-once FCN-8s). Blob [C], fixed (lr_mult 0)."""

    name: str
    bottom: str
    channels: int
    value: float


@dataclass(frozen=True)
class Upsample:
    """Caffe Deconvolution: stride `stride`, kernel `kernel`, no padding, no bias.

    Weight [C_in, C_out, k, k] initialised bilinear on the channel diagonal and kept fixed.
    """

    name: str
    bottom: str
    channels: int
    kernel: int
    stride: int


@dataclass(frozen=True)
class Crop:
    """Take [offset, offset + size(reference)) from the *top-left* of `bottom` on H and W."""

    name: str
    bottom: str
    reference: str
    offset: int | None = None  # filled in by derive_crop_offsets()


@dataclass(frozen=True)
class Sum:
    """Element-wise sum fusion of two blobs of identical shape."""

    name: str
    bottoms: tuple[str, str]


Layer = Conv | MaxPool | Dropout | Scale | Upsample | Crop | Sum


def layer_inputs(layer: Layer) -> tuple[str, ...]:
    """Names of the blobs a layer reads (crop reads its reference's *size* only)."""
    if isinstance(layer, Sum):
        return layer.bottoms
    if isinstance(layer, Crop):
        return (layer.bottom, layer.reference)
    return (layer.bottom,)


# ----------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class ParamSpec:
    """One named tensor of the neutral weight archive (keys are the Caffe layer names)."""

    name: str  # e.g. "conv1_1.weight", "upscore2.weight", "scale_pool4.weight"
    layer: str
    shape: tuple[int, ...]
    layout: str  # "OIHW", "IOHW" (Caffe deconv), "C"
    role: str  # "weight", "bias", "upsample", "scale"
    lr_mult: float  # Caffe param multipliers: weights 1, biases 2, fixed layers 0
    decay_mult: float

    @property
    def trainable(self) -> bool:
        return self.lr_mult > 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# ----------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class FcnSpec:
    """A whole FCN variant: ordered layers, the output blob, and derived facts about them."""

    variant: str
    num_classes: int
    layers: tuple[Layer, ...]
    output: str = "score"
    # Channel divisor of a narrow test-only network (1 = the real VGG16 widths).
    width_divisor: int = 1
    _by_name: dict[str, Layer] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {layer.name: layer for layer in self.layers})

    def layer(self, name: str) -> Layer:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.variant} has no layer {name!r}") from None

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    @property
    def blob_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def crop_offsets(self) -> dict[str, int]:
        return {layer.name: layer.offset for layer in self.layers if isinstance(layer, Crop)}

    # -- parameters ------------------------------------------------------------------------

    def parameters(self) -> tuple[ParamSpec, ...]:
        """Every tensor in canonical (Caffe) layout, in network order."""
        params: list[ParamSpec] = []
        for layer in self.layers:
            if isinstance(layer, Conv):
                k = layer.kernel
                params.append(ParamSpec(f"{layer.name}.weight", layer.name,
                                        (layer.out_channels, layer.in_channels, k, k), "OIHW",
                                        "weight", 1.0, 1.0))
                params.append(ParamSpec(f"{layer.name}.bias", layer.name, (layer.out_channels,),
                                        "C", "bias", 2.0, 0.0))
            elif isinstance(layer, Upsample):
                k = layer.kernel
                params.append(ParamSpec(f"{layer.name}.weight", layer.name,
                                        (layer.channels, layer.channels, k, k), "IOHW",
                                        "upsample", 0.0, 1.0))
            elif isinstance(layer, Scale):
                params.append(ParamSpec(f"{layer.name}.weight", layer.name, (layer.channels,),
                                        "C", "scale", 0.0, 0.0))
        return tuple(params)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape for p in self.parameters()}

    def num_parameters(self) -> int:
        return sum(p.numel for p in self.parameters())

    # -- geometry --------------------------------------------------------------------------

    def blob_shapes(self, height: int, width: int) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of every blob for an input of height x width (batch dimension omitted)."""
        if height < 1 or width < 1:
            raise UsageError(f"input size must be at least 1x1, got {height}x{width}")
        shapes: dict[str, tuple[int, int, int]] = {"data": (3, height, width)}
        for layer in self.layers:
            shapes[layer.name] = _output_shape(layer, shapes)
        return shapes

    def flops(self, height: int, width: int) -> int:
        """Floating-point operations of one forward pass (2 per multiply-add; convs and deconvs)."""
        shapes = self.blob_shapes(height, width)
        total = 0
        for layer in self.layers:
            if isinstance(layer, Conv):
                _, h, w = shapes[layer.name]
                total += 2 * layer.in_channels * layer.kernel**2 * layer.out_channels * h * w
            elif isinstance(layer, Upsample):
                _, h, w = shapes[layer.bottom]
                total += 2 * layer.channels * layer.kernel**2 * layer.channels * h * w
        return total


def _ceil_pool_size(size: int, kernel: int, stride: int) -> int:
    # Caffe: ceil((size + 2*pad - kernel) / stride) + 1 with pad 0 (no clipping needed).
    return max(0, math.ceil((size - kernel) / stride)) + 1


def _output_shape(layer: Layer, shapes: dict[str, tuple[int, int, int]]) -> tuple[int, int, int]:
    if isinstance(layer, Sum):
        a, b = (shapes[name] for name in layer.bottoms)
        if a != b:
            raise ValueError(f"{layer.name}: cannot sum {layer.bottoms[0]}{a} and "
                             f"{layer.bottoms[1]}{b}")
        return a
    c, h, w = shapes[layer.bottom]
    if isinstance(layer, Conv):
        out = [(s + 2 * layer.pad - layer.kernel) // layer.stride + 1 for s in (h, w)]
        if min(out) < 1:
            raise ValueError(f"{layer.name}: input {h}x{w} is smaller than its {layer.kernel}x"
                             f"{layer.kernel} kernel")
        return (layer.out_channels, out[0], out[1])
    if isinstance(layer, MaxPool):
        return (c, _ceil_pool_size(h, layer.kernel, layer.stride),
                _ceil_pool_size(w, layer.kernel, layer.stride))
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
    return (c, h, w)  # Dropout, Scale keep the shape


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


def coord_maps(layers: tuple[Layer, ...]) -> dict[str, CoordMap]:
    """Input-image coordinate map of every blob, from "data" (identity) forward."""
    maps = {"data": CoordMap(Fraction(1), Fraction(0))}
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
        elif isinstance(layer, Sum):
            first, second = (maps[name] for name in layer.bottoms)
            if first != second:
                raise ValueError(f"{layer.name}: fused blobs are misaligned ({first} vs {second})")
            maps[layer.name] = first
        else:
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


# ----------------------------------------------------------------------------------------------
# Building the variants: one trunk, three small heads.


def _trunk(width_divisor: int) -> list[Layer]:
    """VGG16 conv1_1..pool5, fc6/fc7 as convolutions (7x7 valid, 1x1) with dropout."""
    layers: list[Layer] = []
    bottom, in_channels = "data", 3
    for stage, num_convs, channels in VGG16_STAGES:
        channels = max(1, channels // width_divisor)
        for index in range(1, num_convs + 1):
            name = f"conv{stage}_{index}"
            pad = CONV1_1_PAD if name == "conv1_1" else 1
            layers.append(Conv(name, bottom, in_channels, channels, kernel=3, pad=pad))
            bottom, in_channels = name, channels
        layers.append(MaxPool(f"pool{stage}", bottom))
        bottom = f"pool{stage}"
    fc = max(1, FC_CHANNELS // width_divisor)
    layers += [
        Conv("fc6", "pool5", in_channels, fc, kernel=7),  # VALID: pad 0, not SAME
        Dropout("drop6", "fc6"),
        Conv("fc7", "drop6", fc, fc, kernel=1),
        Dropout("drop7", "fc7"),
    ]
    return layers


def _skip(pool: str, in_channels: int, upscored: str, num_classes: int, scale: float | None,
          fuse: str) -> list[Layer]:
    """Score a pooling layer (optionally pre-scaled), crop it onto `upscored` and sum."""
    layers: list[Layer] = []
    bottom = pool
    if scale is not None:
        layers.append(Scale(f"scale_{pool}", pool, in_channels, scale))
        bottom = f"scale_{pool}"
    layers += [
        Conv(f"score_{pool}", bottom, in_channels, num_classes, kernel=1, relu=False,
             zero_init=True),
        Crop(f"score_{pool}c", f"score_{pool}", reference=upscored),
        Sum(fuse, (upscored, f"score_{pool}c")),
    ]
    return layers


def build_spec(variant: str, num_classes: int = NUM_CLASSES, width_divisor: int = 1) -> FcnSpec:
    """The FcnSpec of a variant. `width_divisor` > 1 gives a narrow test-only network."""
    if variant not in VARIANTS:
        raise UnknownVariantError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if num_classes < 1 or width_divisor < 1:
        raise UsageError("num_classes and width_divisor must be positive")
    layers = _trunk(width_divisor)
    fc = layers[-2].out_channels  # fc7
    pool4_ch = max(1, 512 // width_divisor)
    pool3_ch = max(1, 256 // width_divisor)
    n = num_classes
    layers.append(Conv("score_fr", "drop7", fc, n, kernel=1, relu=False, zero_init=True))
    atonce = variant == "fcn8s-atonce"

    if variant == "fcn32s":
        layers.append(Upsample("upscore", "score_fr", n, kernel=64, stride=32))
        final = "upscore"
    else:
        layers.append(Upsample("upscore2", "score_fr", n, kernel=4, stride=2))
        layers += _skip("pool4", pool4_ch, "upscore2", n,
                        ATONCE_SCALES["pool4"] if atonce else None, "fuse_pool4")
        if variant == "fcn16s":
            layers.append(Upsample("upscore16", "fuse_pool4", n, kernel=32, stride=16))
            final = "upscore16"
        else:
            layers.append(Upsample("upscore_pool4", "fuse_pool4", n, kernel=4, stride=2))
            layers += _skip("pool3", pool3_ch, "upscore_pool4", n,
                            ATONCE_SCALES["pool3"] if atonce else None, "fuse_pool3")
            layers.append(Upsample("upscore8", "fuse_pool3", n, kernel=16, stride=8))
            final = "upscore8"
    layers.append(Crop("score", final, reference="data"))
    return FcnSpec(variant, num_classes, derive_crop_offsets(tuple(layers)),
                   width_divisor=width_divisor)


def get_spec(variant: str) -> FcnSpec:
    """The full-width, 21-class spec of a variant (clear error listing the choices if unknown)."""
    return build_spec(variant)
