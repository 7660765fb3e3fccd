"""The layer kinds an FCN spec is made of, as frozen dataclasses (stdlib only).

Each layer has one output blob named after the layer (Caffe's top == name) and reads the blobs
named in `bottom`/`bottoms`; network inputs are `Input`s. Caffe semantics of every kind are
written down in docs/fidelity.md; backends and the numpy reference implement exactly those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DROPOUT_RATIO = 0.5


@dataclass(frozen=True)
class Input:
    """A named network input (Caffe data-layer top), NCHW with `channels` channels."""

    name: str
    channels: int


@dataclass(frozen=True)
class Conv:
    """Convolution (+ optional ReLU). Weight OIHW [out, in / group, k, k]; bias [out].

    `group` > 1 is Caffe's grouped convolution: output group j sees only input group j
    (FCN-AlexNet conv2/4/5, docs/fidelity.md "FCN-AlexNet").
    """

    name: str
    bottom: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    pad: int = 0
    relu: bool = True
    # Score layers are new in FCN and start at zero (Caffe's default constant filler;
    # docs/fidelity.md "Heads: FCN-32s, FCN-16s, FCN-8s").
    zero_init: bool = False
    group: int = 1

    def __post_init__(self) -> None:
        if self.in_channels % self.group or self.out_channels % self.group:
            raise ValueError(f"{self.name}: {self.in_channels} -> {self.out_channels} channels "
                             f"do not split into {self.group} groups")


@dataclass(frozen=True)
class MaxPool:
    """k x k / s max pooling that rounds the output size *up* (Caffe's only mode), no padding
    (docs/fidelity.md "Ceil pooling")."""

    name: str
    bottom: str
    kernel: int = 2
    stride: int = 2


@dataclass(frozen=True)
class LRN:
    """Caffe LRN, ACROSS_CHANNELS: y = x / (k + alpha / n * sum of x^2 over n channels)^beta.

    The window is centred on the channel and zero-padded at the ends, and the sum is divided by
    n (not by the number of channels inside the window) -- docs/fidelity.md "Layer semantics".
    """

    name: str
    bottom: str
    local_size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    def __post_init__(self) -> None:
        if self.local_size % 2 != 1:
            raise ValueError(f"{self.name}: Caffe LRN needs an odd local_size")


@dataclass(frozen=True)
class Dropout:
    """Element-wise inverted dropout (not channel-wise Dropout2d); identity at inference."""

    name: str
    bottom: str
    ratio: float = DROPOUT_RATIO


@dataclass(frozen=True)
class Scale:
    """Per-channel constant multiplier (docs/fidelity.md "At-once FCN-8s"). Blob [C], fixed
    (lr_mult 0)."""

    name: str
    bottom: str
    channels: int
    value: float


@dataclass(frozen=True)
class Upsample:
    """Caffe Deconvolution: stride `stride`, kernel `kernel`, no padding, no bias.

    Weight [C_in, C_out, k, k] initialised bilinear on the channel diagonal and kept fixed
    (docs/fidelity.md "Heads: FCN-32s, FCN-16s, FCN-8s").
    """

    name: str
    bottom: str
    channels: int
    kernel: int
    stride: int


@dataclass(frozen=True)
class Crop:
    """Take [offset, offset + size(reference)) from the *top-left* of `bottom` on H and W
    (docs/fidelity.md "Crop offsets")."""

    name: str
    bottom: str
    reference: str
    offset: int | None = None  # filled in by bench.model.geometry.derive_crop_offsets()


@dataclass(frozen=True)
class Sum:
    """Caffe Eltwise SUM of two blobs of identical shape, optionally weighted (`coeffs`).

    Without coefficients it is a plain a + b (the skip fusions); late fusion of NYUD colour and
    HHA scores uses (0.5, 0.5), i.e. an average (docs/fidelity.md "NYUDv2").
    """

    name: str
    bottoms: tuple[str, str]
    coeffs: tuple[float, float] | None = None


@dataclass(frozen=True)
class Concat:
    """Caffe Concat on the channel axis (early fusion: colour + log-depth = B, G, R, logD)."""

    name: str
    bottoms: tuple[str, ...]


Layer = Conv | MaxPool | LRN | Dropout | Scale | Upsample | Crop | Sum | Concat


def layer_inputs(layer: Layer) -> tuple[str, ...]:
    """Names of the blobs a layer reads (crop reads its reference's *size* only)."""
    if isinstance(layer, Sum | Concat):
        return layer.bottoms
    if isinstance(layer, Crop):
        return (layer.bottom, layer.reference)
    return (layer.bottom,)


@dataclass(frozen=True)
class ParamSpec:
    """One named tensor of the neutral weight archive (keys are the Caffe layer names)."""

    name: str  # e.g. "conv1_1.weight", "upscore2.weight", "scale_pool4.weight"
    layer: str
    shape: tuple[int, ...]
    layout: str  # "OIHW", "IOHW" (Caffe deconv), "C" (docs/fidelity.md "Weight layouts")
    role: str  # "weight", "bias", "upsample", "scale"
    # Caffe param multipliers: weights 1, biases 2, fixed layers 0 (docs/fidelity.md
    # "Heads: FCN-32s, FCN-16s, FCN-8s").
    lr_mult: float
    decay_mult: float

    @property
    def trainable(self) -> bool:
        return self.lr_mult > 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def layer_params(layer: Layer) -> list[ParamSpec]:
    """The tensors of one layer in Caffe blob order (weight, then bias), canonical layouts."""
    if isinstance(layer, Conv):
        k = layer.kernel
        return [ParamSpec(f"{layer.name}.weight", layer.name,
                          (layer.out_channels, layer.in_channels // layer.group, k, k), "OIHW",
                          "weight", 1.0, 1.0),
                ParamSpec(f"{layer.name}.bias", layer.name, (layer.out_channels,), "C", "bias",
                          2.0, 0.0)]
    if isinstance(layer, Upsample):
        k = layer.kernel
        return [ParamSpec(f"{layer.name}.weight", layer.name,
                          (layer.channels, layer.channels, k, k), "IOHW", "upsample", 0.0, 1.0)]
    if isinstance(layer, Scale):
        return [ParamSpec(f"{layer.name}.weight", layer.name, (layer.channels,), "C", "scale",
                          0.0, 0.0)]
    return []
