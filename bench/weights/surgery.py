"""ImageNet trunks -> the training init of an FCN, exactly as the reference surgery builds it
(REF surgery.transplant + interp; docs/fidelity.md "Initialisation from ImageNet"), and the
torchvision input fold.

A trunk comes from a Caffe VGG16 or CaffeNet model, torchvision's VGG16 (its RGB [0, 1] mean/std
input convention folded into conv1_1) or Keras' VGG16 (bench/weights/keras_h5.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.core.errors import UsageError
from bench.core.means import MEAN_BGR
from bench.model.init import imagenet_init_params
from bench.model.spec import VGG16_STAGES, Conv, build_spec, resolve_model
from bench.weights.archive import ALEXNET, BACKBONE, archive_metadata, width_divisor_of
from bench.weights.limits import check_memory, check_num_classes
from bench.weights.provenance import origin_of

# torchvision VGG16 input convention (pytorch/vision#223): RGB in [0, 1], then (x - mean) / std.
TORCHVISION_MEAN_RGB = np.array((0.485, 0.456, 0.406))


TORCHVISION_STD_RGB = np.array((0.229, 0.224, 0.225))


def _trunk_layers(model: str) -> tuple[str, ...]:
    """The ImageNet layers an FCN inherits: every non-score convolution of its spec."""
    return tuple(layer.name for layer in build_spec(model).layers
                 if isinstance(layer, Conv) and not layer.zero_init)


# VGG16 conv1_1 .. fc7, and CaffeNet conv1 .. fc7 (FCN-AlexNet's trunk).
TRUNK_LAYERS = _trunk_layers("fcn32s")


BACKBONE_LAYERS = {BACKBONE: TRUNK_LAYERS, ALEXNET: _trunk_layers("voc-fcn-alexnet")}


# The ImageNet trunk each catalogue trunk name is initialised from.
_TRUNK_BACKBONE = {"vgg16": BACKBONE, "alexnet": ALEXNET}


def _torchvision_names() -> dict[str, str]:
    """Caffe name -> torchvision module: features.N counts Conv, ReLU (2 modules per conv) and
    one MaxPool per stage; classifier = Linear(fc6), ReLU, Dropout, Linear(fc7), ReLU, ..."""
    names, index = {}, 0
    for stage, num_convs, _ in VGG16_STAGES:
        for conv in range(1, num_convs + 1):
            names[f"conv{stage}_{conv}"] = f"features.{index}"
            index += 2
        index += 1
    names.update(fc6="classifier.0", fc7="classifier.3")
    return names


TORCHVISION_NAMES = _torchvision_names()


# A VGG16 trunk in Caffe conventions: name -> (weight, bias). Conv weights OIHW; fc6 may be
# [4096, 25088] flattened C,H,W (Caffe InnerProduct, torch Linear) or already [4096, 512, 7, 7]
# (docs/fidelity.md "Weight layouts").
Trunk = dict[str, tuple[np.ndarray, np.ndarray]]


def fold_torchvision_conv1_1(weight: np.ndarray, bias: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray]:
    """conv1_1 of torchvision VGG16 rewritten for the Caffe/FCN input convention.

    torchvision feeds x_tv[c] = (rgb[c] / 255 - m[c]) / s[c] (RGB, c = R, G, B); the FCN
    feeds x[c'] = bgr[c'] - MEAN_BGR[c'] (BGR 0-255). With rgb[c] = x[2 - c] + MEAN_RGB[c]:
        x_tv[c] = x[2 - c] / (255 s[c]) + (MEAN_RGB[c] / 255 - m[c]) / s[c]
    so   W'[o, 2 - c] = W[o, c] / (255 s[c])
         b'[o]        = b[o] + sum_{c,kh,kw} W[o, c, kh, kw] (MEAN_RGB[c] / 255 - m[c]) / s[c].
    Exact wherever the 3x3 window sees image pixels. Caveat: conv1_1 zero-pads by 100, and a
    padded zero is the FCN mean colour (x = 0) here but torchvision's ImageNet mean (x_tv = 0)
    in the original, so at border windows the folded layer equals torchvision's conv of an
    image padded with the FCN mean, not with torchvision's zeros. Computed in float64.
    """
    weight64 = np.asarray(weight, np.float64)  # [out, 3 (R, G, B), kH, kW]
    mean_rgb = np.asarray(MEAN_BGR, np.float64)[::-1]
    scale = 1.0 / (255.0 * TORCHVISION_STD_RGB)  # per RGB input channel
    shift = (mean_rgb / 255.0 - TORCHVISION_MEAN_RGB) / TORCHVISION_STD_RGB
    folded = (weight64 * scale[None, :, None, None])[:, ::-1]  # RGB -> BGR input channels
    new_bias = np.asarray(bias, np.float64) + np.einsum("ochw,c->o", weight64, shift)
    return np.ascontiguousarray(folded, np.float32), new_bias.astype(np.float32)


def trunk_init_archive(path: Path, trunk: Trunk, backbone: str, label: str, variant: str | None,
                   init_for: str | None, num_classes: int | None, source_sha: str,
                   fold: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None
                   ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """ImageNet trunk -> the training init of `init_for` (default: the backbone's 32s FCN)."""
    what = "VGG16" if backbone == BACKBONE else "AlexNet (CaffeNet)"
    if variant is not None:
        raise UsageError(f"{path} holds {what} ImageNet weights, which have no FCN variant; "
                         f"use --init-for {variant} to build an init for it")
    target = init_for or ("fcn32s" if backbone == BACKBONE else "voc-fcn-alexnet")
    entry = resolve_model(target)
    if _TRUNK_BACKBONE[entry.trunk] != backbone:
        needs = ("VGG16" if entry.trunk == "vgg16"
                 else "AlexNet (CaffeNet: bvlc_reference_caffenet.caffemodel)")
        raise UsageError(f"{path} holds {what} ImageNet weights but --init-for {target} is "
                         f"built on {needs}; give those weights")
    if fold is not None:
        trunk = {**trunk, "conv1_1": fold(*trunk["conv1_1"])}
    first = BACKBONE_LAYERS[backbone][0]
    width = width_divisor_of("fcn32s" if backbone == BACKBONE else "voc-fcn-alexnet",
                             {f"{first}.weight": trunk[first][0]}, path)
    spec = build_spec(target, check_num_classes(num_classes), width)
    check_memory(spec, path)  # before the new layers are allocated
    params = imagenet_init_params(trunk, spec, path)
    extra = {"init_surgery": f"{what} trunk copied (fc6/fc7 as convolutions), fc8 dropped, "
                             "score layers zero, upsampling bilinear"}
    if entry.fusion == "early":
        extra["init_surgery"] += (f"; {spec.layers[1].name}: channels B,G,R = {first}, the "
                                  f"others = the mean of {first} over its input channels")
    elif entry.fusion == "late":
        extra["init_surgery"] += ("; every stream from the same ImageNet trunk (the reference "
                                  "fuses two single-stream FCNs instead: convert --fuse)")
    if fold is not None:
        extra["input_fold"] = ("torchvision RGB [0,1] mean/std input convention folded into "
                               "conv1_1 for BGR 0-255 minus MEAN_BGR (exact off the pad border)")
    return params, archive_metadata(spec, kind="init", origin=origin_of(label, path),
                                    source_sha256=source_sha, **extra)
