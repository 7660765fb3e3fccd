"""Parameter initialisation from the spec: bilinear upsampling, fixed scales, random weights.

Framework-free (numpy). Used by `convert --random`, the latency default, tests and the training
surgery (VGG16 -> FCN), so every backend starts from the same numbers.
"""

from __future__ import annotations

import numpy as np

from bench.spec import Conv, FcnSpec, Scale, Upsample


def bilinear_filter(kernel: int) -> np.ndarray:
    """2-D bilinear interpolation kernel (Caffe surgery.upsample_filt): k4 -> [.25 .75 .75 .25]."""
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 == 1 else factor - 0.5
    ramp = 1 - np.abs(np.arange(kernel) - center) / factor
    return np.outer(ramp, ramp).astype(np.float32)


def bilinear_upsample_weight(channels: int, kernel: int) -> np.ndarray:
    """Deconv weight [C_in, C_out, k, k]: bilinear on the channel diagonal (no class mixing)."""
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
    kernels and the at-once scales (`fixed_params`).
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
