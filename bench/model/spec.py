"""Every released FCN model described once, as data: VGG16/AlexNet trunks, heads, inputs, fusion.

Backends and the numpy reference walk `FcnSpec.layers` in order and build one op per entry;
nothing about an architecture is written anywhere else. Which model has which trunk, inputs,
heads and class counts is the catalogue in bench/model/zoo.py; the layer kinds are
bench/model/layers.py;
crop offsets are *derived* from the layer geometry (bench/model/geometry.py, Caffe's coord_map),
never typed in. Canonical layouts follow Caffe: NCHW blobs, conv weights OIHW, deconv weights
[C_in, C_out, kH, kW]. The facts behind every number are in docs/fidelity.md. Stdlib only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from bench.core.errors import UsageError
from bench.model.geometry import CoordMap, coord_maps, derive_crop_offsets, output_shape
from bench.model.layers import (
    DROPOUT_RATIO,
    LRN,
    Concat,
    Conv,
    Crop,
    Dropout,
    Input,
    Layer,
    MaxPool,
    ParamSpec,
    Scale,
    Sum,
    Upsample,
    layer_inputs,
    layer_params,
)
from bench.model.zoo import MODEL_ENTRIES, Head, ModelEntry

__all__ = [
    "ATONCE_SCALES", "CONV1_1_PAD", "DROPOUT_RATIO", "FC_CHANNELS", "LRN", "MODELS", "MODEL_NAMES",
    "NUM_CLASSES", "VARIANTS", "VGG16_STAGES", "Concat", "Conv", "CoordMap", "Crop", "Dropout",
    "FcnSpec", "Input", "Layer", "MaxPool", "ParamSpec", "Scale", "Sum", "UnknownVariantError",
    "Upsample", "build_spec", "coord_maps", "derive_crop_offsets", "get_spec", "layer_inputs",
    "resolve_model",
]

NUM_CLASSES = 21
# The four VOC VGG16 nets that default matrices (latency, golden) iterate over: keep it small.
VARIANTS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
# Every released model, by the reference repository's folder name (plus CSAIL's ADE20K FCN-8s).
MODELS = tuple(entry.name for entry in MODEL_ENTRIES)
# Every name `--variant` accepts: the folder names and the historical VOC aliases.
MODEL_NAMES = (*MODELS, *(alias for entry in MODEL_ENTRIES for alias in entry.aliases))
_BY_NAME = {name: entry for entry in MODEL_ENTRIES for name in (entry.name, entry.key,
                                                                 *entry.aliases)}

# VGG16 trunk (docs/fidelity.md "The VGG16 trunk"): (stage, convs in the stage, output
# channels). conv1_1 alone gets pad 100 so that every crop stays in bounds for any input size
# >= 1 (docs/fidelity.md "Why pad 100").
VGG16_STAGES = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
FC_CHANNELS = 4096
CONV1_1_PAD = 100
# CaffeNet trunk of FCN-AlexNet in forward order (docs/fidelity.md "FCN-AlexNet"):
# ("conv", name, out, kernel, stride, pad, group) | ("pool", name, kernel, stride) | ("lrn", name)
ALEXNET_LAYERS = (
    ("conv", "conv1", 96, 11, 4, 100, 1), ("pool", "pool1", 3, 2), ("lrn", "norm1"),
    ("conv", "conv2", 256, 5, 1, 2, 2), ("pool", "pool2", 3, 2), ("lrn", "norm2"),
    ("conv", "conv3", 384, 3, 1, 1, 1), ("conv", "conv4", 384, 3, 1, 1, 2),
    ("conv", "conv5", 256, 3, 1, 1, 2), ("pool", "pool5", 3, 2),
)
LRN_PARAMS = {"local_size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}
# fc6 kernel (the ImageNet classifier's input grid) and the 32x upsampling kernel of each trunk
# (docs/fidelity.md "The VGG16 trunk", "FCN-AlexNet", "Heads: FCN-32s, FCN-16s, FCN-8s").
FC6_KERNEL = {"vgg16": 7, "alexnet": 6}
UPSCORE32_KERNEL = {"vgg16": 64, "alexnet": 63}
# All-at-once FCN-8s scales the skip inputs before scoring them "to better condition
# optimization" (REF README; PAMI §4); these are fixed (lr_mult 0) Caffe Scale blobs
# (docs/fidelity.md "At-once FCN-8s").
ATONCE_SCALES = {"pool4": 0.01, "pool3": 0.0001}
# Late fusion averages the two score maps (Eltwise SUM, coeff 0.5 each; docs/fidelity.md "NYUDv2").
LATE_FUSION_COEFFS = (0.5, 0.5)


class UnknownVariantError(UsageError):
    pass


# ----------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class FcnSpec:
    """A whole FCN: inputs, ordered layers, output blobs, and facts derived from them."""

    variant: str
    num_classes: int  # classes of the first head (`output`)
    layers: tuple[Layer, ...]
    output: str = "score"  # the first (or only) output blob
    # Channel divisor of a narrow test-only network (1 = the real widths).
    width_divisor: int = 1
    inputs: tuple[Input, ...] = (Input("data", 3),)
    outputs: tuple[str, ...] = ()  # every output blob, in head order; () = (output,)
    _by_name: dict[str, Layer] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {layer.name: layer for layer in self.layers})
        if not self.outputs:
            object.__setattr__(self, "outputs", (self.output,))

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
    def input_names(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.inputs)

    @property
    def crop_offsets(self) -> dict[str, int]:
        return {layer.name: layer.offset for layer in self.layers if isinstance(layer, Crop)}

    def output_classes(self) -> dict[str, int]:
        """Classes (channels) of every output blob, e.g. {"score_sem": 33, "score_geo": 3}."""
        shapes = self.blob_shapes(1, 1)
        return {name: shapes[name][0] for name in self.outputs}

    # -- parameters ------------------------------------------------------------------------

    def parameters(self) -> tuple[ParamSpec, ...]:
        """Every tensor in canonical (Caffe) layout, in network order."""
        return tuple(param for layer in self.layers for param in layer_params(layer))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape for p in self.parameters()}

    def num_parameters(self) -> int:
        return sum(p.numel for p in self.parameters())

    # -- geometry --------------------------------------------------------------------------

    def blob_shapes(self, height: int, width: int) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of every blob for inputs of height x width (batch dimension omitted)."""
        if height < 1 or width < 1:
            raise UsageError(f"input size must be at least 1x1, got {height}x{width}")
        shapes = {item.name: (item.channels, height, width) for item in self.inputs}
        for layer in self.layers:
            shapes[layer.name] = output_shape(layer, shapes)
        return shapes

    def flops(self, height: int, width: int) -> int:
        """Floating-point operations of one forward pass (2 per multiply-add; convs and deconvs)."""
        shapes = self.blob_shapes(height, width)
        total = 0
        for layer in self.layers:
            if isinstance(layer, Conv):
                _, h, w = shapes[layer.name]
                total += (2 * layer.in_channels // layer.group * layer.kernel**2
                          * layer.out_channels * h * w)
            elif isinstance(layer, Upsample):
                _, h, w = shapes[layer.bottom]
                total += 2 * layer.channels * layer.kernel**2 * layer.channels * h * w
        return total


# ----------------------------------------------------------------------------------------------
# Building a model from its catalogue entry: trunk(s), then one head per output.


def resolve_model(name: str) -> ModelEntry:
    """The catalogue entry of a model name or alias (clear error listing the choices)."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise UnknownVariantError(f"unknown variant {name!r}; choose from "
                                  f"{', '.join(MODEL_NAMES)}") from None


def _narrow(channels: int, divisor: int, group: int = 1) -> int:
    """Channels of a narrow test network: divided, at least one per group, divisible by group."""
    return max(group, channels // divisor // group * group)


def _vgg16(bottom: str, in_channels: int, divisor: int, suffix: str = "",
           first: str = "conv1_1") -> list[Layer]:
    """VGG16 conv1_1..pool5, fc6/fc7 as convolutions (7x7 valid, 1x1) with dropout.

    `suffix` is appended to every name without a separator (late fusion: conv1_1color, fc7hha);
    `first` renames conv1_1 (early fusion: conv1_1_bgrd).
    """
    layers: list[Layer] = []
    for stage, num_convs, channels in VGG16_STAGES:
        channels = _narrow(channels, divisor)
        for index in range(1, num_convs + 1):
            name = f"conv{stage}_{index}"
            pad = CONV1_1_PAD if name == "conv1_1" else 1
            name = first if name == "conv1_1" else name
            layers.append(Conv(f"{name}{suffix}", bottom, in_channels, channels, kernel=3,
                               pad=pad))
            bottom, in_channels = f"{name}{suffix}", channels
        layers.append(MaxPool(f"pool{stage}{suffix}", bottom))
        bottom = f"pool{stage}{suffix}"
    return layers + _fc(bottom, in_channels, FC6_KERNEL["vgg16"], divisor, suffix)


def _alexnet(bottom: str, in_channels: int, divisor: int, suffix: str = "",
             first: str = "conv1") -> list[Layer]:
    """CaffeNet conv1..pool5 (grouped convs, LRN after pooling), fc6 6x6 and fc7."""
    layers: list[Layer] = []
    for position, (kind, name, *args) in enumerate(ALEXNET_LAYERS):
        name = f"{first if name == 'conv1' else name}{suffix}"
        if kind == "conv":
            out, kernel, stride, pad, group = args
            # A narrow net must still split into the groups of this conv and of the next one.
            consumer = next((later[-1] for later in ALEXNET_LAYERS[position + 1:]
                             if later[0] == "conv"), 1)
            out = _narrow(out, divisor, math.lcm(group, consumer))
            layers.append(Conv(name, bottom, in_channels, out, kernel, stride, pad, group=group))
            in_channels = out
        elif kind == "pool":
            layers.append(MaxPool(name, bottom, kernel=args[0], stride=args[1]))
        else:
            layers.append(LRN(name, bottom, **LRN_PARAMS))
        bottom = name
    return layers + _fc(bottom, in_channels, FC6_KERNEL["alexnet"], divisor, suffix)


def _fc(bottom: str, in_channels: int, kernel: int, divisor: int, suffix: str) -> list[Layer]:
    fc = _narrow(FC_CHANNELS, divisor)
    return [
        Conv(f"fc6{suffix}", bottom, in_channels, fc, kernel=kernel),  # VALID: pad 0, not SAME
        Dropout(f"drop6{suffix}", f"fc6{suffix}"),
        Conv(f"fc7{suffix}", f"drop6{suffix}", fc, fc, kernel=1),
        Dropout(f"drop7{suffix}", f"fc7{suffix}"),
    ]


_TRUNKS = {"vgg16": _vgg16, "alexnet": _alexnet}


def _skip(pool: str, channels: int, upscored: str, classes: int, atonce: bool,
          suffix: str) -> list[Layer]:
    """Score a pooling layer (scaled first in at-once nets), crop it onto `upscored` and sum."""
    layers: list[Layer] = []
    bottom = pool
    if atonce:
        layers.append(Scale(f"scale_{pool}{suffix}", pool, channels, ATONCE_SCALES[pool]))
        bottom = f"scale_{pool}{suffix}"
    score = f"score_{pool}{suffix}"
    layers += [
        Conv(score, bottom, channels, classes, kernel=1, relu=False, zero_init=True),
        Crop(f"{score}c", score, reference=upscored),
        Sum(f"fuse_{pool}{suffix}", (upscored, f"{score}c")),
    ]
    return layers


def _head(entry: ModelEntry, head: Head, scores: str, classes: int, pool_channels: dict[str, int],
          reference: str) -> list[Layer]:
    """From the coarse scores to the full-resolution output blob: 32s, 16s or 8s."""
    sfx = head.suffix
    if entry.stride == 32:
        kernel = UPSCORE32_KERNEL[entry.trunk]
        return [Upsample(f"upscore{sfx}", scores, classes, kernel=kernel, stride=32),
                Crop(head.output, f"upscore{sfx}", reference=reference)]
    layers: list[Layer] = [Upsample(f"upscore2{sfx}", scores, classes, kernel=4, stride=2)]
    layers += _skip("pool4", pool_channels["pool4"], f"upscore2{sfx}", classes, entry.atonce, sfx)
    if entry.stride == 16:
        final = f"upscore16{sfx}"
        layers.append(Upsample(final, f"fuse_pool4{sfx}", classes, kernel=32, stride=16))
    else:
        layers.append(Upsample(f"upscore_pool4{sfx}", f"fuse_pool4{sfx}", classes, kernel=4,
                               stride=2))
        layers += _skip("pool3", pool_channels["pool3"], f"upscore_pool4{sfx}", classes,
                        entry.atonce, sfx)
        final = f"upscore8{sfx}"
        layers.append(Upsample(final, f"fuse_pool3{sfx}", classes, kernel=16, stride=8))
    return [*layers, Crop(head.output, final, reference=reference)]


def _streams(entry: ModelEntry, divisor: int, classes: int
             ) -> tuple[list[Layer], str | None, str]:
    """The trunk(s): (layers, the fused coarse scores of a late-fusion net or None, the blob
    the final crops refer to)."""
    trunk = _TRUNKS[entry.trunk]
    inputs = entry.inputs
    if entry.fusion == "late":
        # One full trunk per input, names suffixed by the input (conv1_1color ... score_frhha);
        # the coarse scores are averaged before one upsampling.
        layers: list[Layer] = []
        for item in inputs:
            layers += trunk(item.name, item.channels, divisor, suffix=item.name)
            layers.append(Conv(f"score_fr{item.name}", f"drop7{item.name}",
                               _narrow(FC_CHANNELS, divisor), classes, kernel=1, relu=False,
                               zero_init=True))
        layers.append(Sum("score_fused", tuple(f"score_fr{item.name}" for item in inputs),
                          coeffs=LATE_FUSION_COEFFS))
        return layers, "score_fused", inputs[0].name
    if entry.fusion == "early":
        # Concat(colour, depth) = "data" (B, G, R, logD) feeds a 4-channel conv1_1_bgrd.
        channels = sum(item.channels for item in inputs)
        concat = Concat("data", tuple(item.name for item in inputs))
        return [concat, *trunk("data", channels, divisor, first="conv1_1_bgrd")], None, "data"
    (item,) = inputs
    return trunk(item.name, item.channels, divisor), None, item.name


def build_spec(variant: str, num_classes: int | None = None, width_divisor: int = 1) -> FcnSpec:
    """The FcnSpec of any model name or alias. `width_divisor` > 1 gives a narrow test-only
    network; `num_classes` overrides the class count of a single-head model."""
    entry = resolve_model(variant)
    heads = entry.heads
    if num_classes is not None and num_classes != heads[0].classes:
        if len(heads) > 1:
            raise UsageError(f"{entry.name} has {len(heads)} heads; its class counts are fixed")
        heads = (replace(heads[0], classes=num_classes),)
    if min(head.classes for head in heads) < 1 or width_divisor < 1:
        raise UsageError("num_classes and width_divisor must be positive")
    if entry.fusion == "late" and (entry.stride != 32 or len(heads) != 1):
        raise ValueError(f"{entry.name}: late fusion is only defined for one 32s head")
    layers, fused, reference = _streams(entry, width_divisor, heads[0].classes)
    # Skip branches score VGG16's pool3 and pool4 (only VGG16 nets have skips).
    pool_channels = {f"pool{stage}": _narrow(channels, width_divisor)
                     for stage, _, channels in VGG16_STAGES}
    fc7 = _narrow(FC_CHANNELS, width_divisor)
    for head in heads:
        scores = fused
        if scores is None:  # one trunk: every head scores drop7 itself (SIFT Flow: _sem, _geo)
            scores = f"score_fr{head.suffix}"
            layers.append(Conv(scores, "drop7", fc7, head.classes, kernel=1, relu=False,
                               zero_init=True))
        layers += _head(entry, head, scores, head.classes, pool_channels, reference)
    return FcnSpec(entry.key, heads[0].classes, derive_crop_offsets(tuple(layers)),
                   output=heads[0].output, width_divisor=width_divisor,
                   inputs=tuple(Input(item.name, item.channels) for item in entry.inputs),
                   outputs=tuple(head.output for head in heads))


def get_spec(variant: str) -> FcnSpec:
    """The full-width spec of a model with its released class counts (clear error if unknown)."""
    return build_spec(variant)
