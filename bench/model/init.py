"""Parameter initialisation from the spec: bilinear upsampling, fixed scales, random weights,
and the ImageNet -> FCN surgery (VGG16 / CaffeNet, colour-D and late-fusion streams).

Numpy only. Used by `convert --random`, `convert --init-for`, the latency default,
tests and training, so every backend starts from the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import WeightsError
from bench.model.spec import Conv, FcnSpec, Scale, Upsample


def bilinear_filter(kernel: int) -> np.ndarray:
    """2-D bilinear interpolation kernel (REF surgery.upsample_filt): k4 -> [.25 .75 .75 .25].

    docs/fidelity.md "Heads: FCN-32s, FCN-16s, FCN-8s".
    """
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 == 1 else factor - 0.5
    ramp = 1 - np.abs(np.arange(kernel) - center) / factor
    return np.outer(ramp, ramp).astype(np.float32)


def bilinear_upsample_weight(channels: int, kernel: int) -> np.ndarray:
    """Deconv weight [C_in, C_out, k, k]: bilinear on the channel diagonal (no class mixing;
    docs/fidelity.md "Heads: FCN-32s, FCN-16s, FCN-8s")."""
    weight = np.zeros((channels, channels, kernel, kernel), dtype=np.float32)
    weight[np.arange(channels), np.arange(channels)] = bilinear_filter(kernel)
    return weight


def fixed_params(spec: FcnSpec) -> dict[str, np.ndarray]:
    """The tensors that are never learned: bilinear upsampling kernels and at-once scales."""
    params: dict[str, np.ndarray] = {}
    for layer in spec.layers:
        if isinstance(layer, Upsample):
            params[f"{layer.name}.weight"] = bilinear_upsample_weight(layer.channels, layer.kernel)
        elif isinstance(layer, Scale):
            params[f"{layer.name}.weight"] = np.full(layer.channels, layer.value, np.float32)
    return params


def new_layer_params(spec: FcnSpec) -> dict[str, np.ndarray]:
    """What the reference surgery writes on a fresh net, beside the copied trunk.

    Score layers zero (no filler in the prototxts = Caffe's constant 0), bilinear upsampling
    kernels and the at-once scales (`fixed_params`); docs/fidelity.md "Heads: FCN-32s, FCN-16s,
    FCN-8s".
    """
    params = fixed_params(spec)
    for layer in spec.layers:
        if isinstance(layer, Conv) and layer.zero_init:
            params[f"{layer.name}.weight"] = np.zeros(
                (layer.out_channels, layer.in_channels // layer.group, layer.kernel,
                 layer.kernel), np.float32)
            params[f"{layer.name}.bias"] = np.zeros(layer.out_channels, np.float32)
    return params


def placeholder_params(spec: FcnSpec) -> dict[str, np.ndarray]:
    """A freshly built module before weights are loaded: zero trunk + `new_layer_params`.

    The same in every backend, so two fresh modules compute the same (trivial) function.
    """
    params = {p.name: np.zeros(p.shape, np.float32) for p in spec.parameters()}
    params.update(new_layer_params(spec))
    return params


# How records name `random_params`: the identifier recorded since the first release, when it
# lived in bench/init.py. Records and the golden baseline keep it, so that they stay comparable
# across the move into bench/model/ (docs/records.md "Stable identifiers").
RANDOM_PARAMS_ID = "bench.init.random_params"


def random_params(spec: FcnSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random weights for every tensor of `spec` (same seed -> same bytes anywhere).

    Convolutions are He-scaled (std sqrt(2 / fan_in)) so activations stay finite through the
    ReLU layers (fan-in counts one group of a grouped convolution); biases are small;
    upsampling and scales keep their fixed values. Score layers are random too (not zero), so
    the outputs of a random net are informative for parity.
    Each tensor draws from its own stream keyed by name, so adding a layer changes no other tensor.
    """
    params = fixed_params(spec)
    for layer in spec.layers:
        if not isinstance(layer, Conv):
            continue
        rng = np.random.default_rng([seed, *layer.name.encode()])
        fan_in = layer.in_channels // layer.group * layer.kernel * layer.kernel
        shape = (layer.out_channels, layer.in_channels // layer.group, layer.kernel,
                 layer.kernel)
        params[f"{layer.name}.weight"] = (rng.standard_normal(shape, dtype=np.float32)
                                          * np.float32(np.sqrt(2.0 / fan_in)))
        params[f"{layer.name}.bias"] = rng.uniform(-0.01, 0.01, layer.out_channels).astype(
            np.float32)
    return {p.name: params[p.name] for p in spec.parameters()}


def _base_layer(name: str, spec: FcnSpec, trunk: Mapping[str, Any]) -> str | None:
    """The ImageNet layer a trunk layer of `spec` starts from: the same name, conv1_1 for
    early fusion's conv1_1_bgrd, or the name without the input suffix of a late-fusion stream
    (conv1_1color -> conv1_1)."""
    if name in trunk:
        return name
    first = next(iter(trunk))
    if name == f"{first}_bgrd":
        return first
    for item in spec.inputs:
        if name.endswith(item.name) and name[:-len(item.name)] in trunk:
            return name[:-len(item.name)]
    return None


def imagenet_init_params(trunk: Mapping[str, tuple[np.ndarray, np.ndarray]], spec: FcnSpec,
                         path: str | Path = "<imagenet>") -> dict[str, np.ndarray]:
    """The FCN init the reference builds from an ImageNet trunk (REF surgery.transplant + interp).

    Every trunk layer copied (VGG16 conv1_1..fc7 or CaffeNet conv1..fc7; into both streams of
    a late-fusion net); fc6/fc7 reshaped into convolutions ([4096, 25088] -> [4096, 512, 7, 7]
    in C,H,W order, as Caffe and torch flatten; CaffeNet [4096, 9216] -> [4096, 256, 6, 6]);
    fc8 dropped; an early-fusion first layer (conv1_1_bgrd) gets conv1_1 on B, G, R and the
    mean of conv1_1 over its input channels on each extra channel (REF
    nyud-fcn32s-color-d/solve.py); score layers zero (Caffe's default filler for the new
    layers); upsampling kernels bilinear and at-once scales 0.01 / 1e-4
    (bench.model.init.fixed_params). Every shape is checked against `spec`. docs/fidelity.md
    "Initialisation from ImageNet" and "Weight layouts" (the fc6 reshape).
    """
    params: dict[str, np.ndarray] = {}
    problems = []
    shapes = spec.param_shapes()
    for layer in spec.layers:
        if not isinstance(layer, Conv) or layer.zero_init:
            continue
        base = _base_layer(layer.name, spec, trunk)
        if base is None:
            problems.append(f"no ImageNet layer for {layer.name}")
            continue
        weight, bias = (np.asarray(a, dtype=np.float32) for a in trunk[base])
        shape = shapes[f"{layer.name}.weight"]
        if weight.ndim == 2 and weight.size == math.prod(shape):
            weight = weight.reshape(shape)  # fully connected -> conv, C,H,W flatten order
        extra = shape[1] - weight.shape[1] if weight.ndim == 4 else 0
        if base != layer.name and extra > 0:  # early fusion: depth channel(s) = mean of B,G,R
            mean = weight.mean(axis=1, keepdims=True)
            weight = np.concatenate([weight] + [mean] * extra, axis=1)
        for key, value in ((f"{layer.name}.weight", weight), (f"{layer.name}.bias", bias)):
            if value.shape != shapes[key]:
                problems.append(f"{key} has shape {list(value.shape)}, expected "
                                f"{list(shapes[key])}")
            params[key] = value
    if problems:
        raise WeightsError(path, "ImageNet weights do not fit the FCN trunk: "
                           + "; ".join(problems))
    params.update(new_layer_params(spec))
    return {p.name: params[p.name] for p in spec.parameters()}
