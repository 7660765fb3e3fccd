"""FCN weights in other formats -> archive params and metadata, each source read by its layer or
tensor names: an existing (or foreign canonical-name) safetensors file, a Caffe model of any
released FCN, a PyTorch state dict (pytorch-fcn's canonical names or torchvision's VGG16). An
ImageNet trunk goes on to the surgery (bench/weights/surgery.py). Blob layouts: docs/fidelity.md
"Weight layouts"; which model the tensors belong to: "Telling the models apart".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import UsageError, WeightsError
from bench.model.init import fixed_params
from bench.model.spec import build_spec
from bench.weights.archive import (
    BACKBONE,
    BACKBONES,
    archive_metadata,
    check_metadata,
    check_params,
    infer_spec,
    open_archive,
    preview_names,
    variant_from_keys,
)
from bench.weights.caffe import read_caffemodel
from bench.weights.limits import MAX_NUM_CLASSES
from bench.weights.provenance import origin_of, refuse_other_variant, variant_source
from bench.weights.surgery import (
    BACKBONE_LAYERS,
    TORCHVISION_NAMES,
    Trunk,
    fold_torchvision_conv1_1,
    trunk_init_archive,
)

# ----------------------------------------------------------------------------------------------
# Existing archives / canonical-name tensors


def from_archive(path: Path, variant: str | None, init_for: str | None,
                  source_sha: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Re-validate an archive strictly; its metadata is preserved (origin, source hash...)."""
    archive = open_archive(path)  # the header, read once; `variant` only breaks ties here
    if variant_from_keys(set(archive.entries)) in BACKBONES:
        raise WeightsError(path, "holds a bare ImageNet trunk in safetensors; fcn-bench converts "
                           "VGG16 from its Caffe, torchvision or Keras files and AlexNet from "
                           "the Caffe bvlc_reference_caffenet.caffemodel")
    spec = infer_spec(archive.entries, archive.metadata, path, variant)
    params, metadata = archive.read_tensors(spec), archive.metadata
    found = spec.variant
    if init_for is not None:
        raise UsageError(f"{path} already holds {found} weights; --init-for is for VGG16 "
                         "ImageNet weights")
    refuse_other_variant(path, found, variant)
    if "format" in metadata:  # an fcn-bench archive: copied as is, so it must be complete
        check_metadata(metadata, path)
    else:  # a foreign safetensors file with the canonical names
        metadata = archive_metadata(spec, kind="trained", origin=origin_of("safetensors", path),
                                    source_sha256=source_sha, source_name=path.name,
                                    source_format="safetensors",
                                    variant_source=variant_source(variant))
    return params, dict(metadata)


def from_canonical(path: Path, arrays: Mapping[str, np.ndarray], label: str,
                    variant: str | None, source_sha: str
                    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors already named like the archive (pytorch-fcn's FCN state dicts).

    pytorch-fcn's FCN8sAtOnce multiplies by 0.01 / 1e-4 in code, so its file looks like fcn8s:
    with --variant fcn8s-atonce the fixed scale blobs are added from the spec.
    """
    params = {k: np.asarray(v) for k, v in arrays.items() if k.endswith((".weight", ".bias"))}
    found = variant_from_keys(params)
    if found == "fcn8s" and variant == "fcn8s-atonce":
        spec = infer_spec(params, {"variant": "fcn8s"}, path)
        spec = build_spec("fcn8s-atonce", spec.num_classes, spec.width_divisor)
        params.update({k: v for k, v in fixed_params(spec).items() if k not in params})
    if found is None or found in BACKBONES:
        raise WeightsError(path, "cannot tell the FCN variant from its tensor names")
    spec = infer_spec(params, {}, path, variant)
    refuse_other_variant(path, spec.variant, variant)
    params = {p.name: params[p.name] for p in spec.parameters() if p.name in params} | {
        k: v for k, v in params.items() if k not in spec.param_shapes()}
    check_params(params, spec, path)
    return params, archive_metadata(spec, kind="trained", origin=origin_of(label, path),
                                    source_sha256=source_sha,
                                    variant_source=variant_source(variant))


# ----------------------------------------------------------------------------------------------
# Caffe


def read_caffe_layers(path: Path, progress: Callable[[int], Any] | None
                       ) -> dict[str, tuple[str, list[np.ndarray]]]:
    """name -> (type, blobs) of the layers that have blobs (data, ReLU, loss... are ignored)."""
    layers: dict[str, tuple[str, list[np.ndarray]]] = {}
    seen = 0
    for layer in read_caffemodel(path, progress):
        seen += 1
        if not layer.blobs:
            continue
        if layer.name in layers:
            raise WeightsError(path, f"two layers named {layer.name!r} carry blobs")
        layers[layer.name] = (layer.type, layer.blobs)
    if not layers:
        raise WeightsError(path, f"not a Caffe model with weights ({seen} layers, none with "
                           "blobs); is this a .caffemodel?")
    return layers


def from_named_layers(path: Path, layers: Mapping[str, tuple[str, list[np.ndarray]]],
                       label: str, variant: str | None, init_for: str | None, num_classes: int,
                       source_sha: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Caffe layers -> archive: an FCN caffemodel of any released model, or an ImageNet trunk
    (VGG16, CaffeNet) -> init via the surgery. The model is detected from the blobs (names,
    then class count); `variant` is needed only where they cannot tell (NYUD colour vs HHA)."""
    tensors = {f"{name}.{'weight' if index == 0 else 'bias'}": blob
               for name, (_, blobs) in layers.items() for index, blob in enumerate(blobs[:2])}
    found = variant_from_keys(tensors)
    if found in BACKBONES:
        trunk = caffe_trunk(path, layers, found)
        return trunk_init_archive(path, trunk, found, label, variant, init_for, num_classes,
                              source_sha, fold=None)
    if found is None:
        raise WeightsError(path, "no FCN, VGG16 or AlexNet layers in this Caffe model (layers "
                           f"with weights: {preview_names(layers)}); expected conv1_1 ... fc7, "
                           "score_fr, upscore*")
    if init_for is not None:
        raise UsageError(f"{path} already holds {found} weights; --init-for is for ImageNet "
                         "weights (VGG16, CaffeNet)")
    spec = infer_spec(tensors, {}, path, variant)
    variant = refuse_other_variant(path, spec.variant, variant)
    if max(spec.output_classes().values()) > MAX_NUM_CLASSES:
        raise WeightsError(path, f"has {spec.num_classes:,} classes; fcn-bench supports at "
                           f"most {MAX_NUM_CLASSES:,}")
    requested = variant if variant != found else None
    params, problems = {}, []
    expected_blobs = {p.layer: [] for p in spec.parameters()}
    for param in spec.parameters():
        expected_blobs[param.layer].append(param)
    for layer_name, param_specs in expected_blobs.items():
        if layer_name not in layers:
            problems.append(f"missing layer {layer_name}")
            continue
        blobs = layers[layer_name][1]
        if len(blobs) != len(param_specs):
            problems.append(f"layer {layer_name} has {len(blobs)} blobs, expected "
                            f"{len(param_specs)} ({', '.join(p.name for p in param_specs)})")
            continue
        for param, blob in zip(param_specs, blobs, strict=True):
            fitted = _fit_shape(blob, param.shape)
            if fitted is None:
                problems.append(f"{param.name} has shape {list(blob.shape)}, {variant} expects "
                                f"{list(param.shape)}")
            else:
                params[param.name] = fitted
    problems += [f"unexpected layer {name} with {len(blobs)} blobs"
                 for name, (_, blobs) in layers.items() if name not in expected_blobs]
    if problems:
        raise WeightsError(path, f"not a valid {variant} Caffe model: " + "; ".join(problems))
    return params, archive_metadata(spec, kind="trained", origin=origin_of(label, path),
                                    source_sha256=source_sha,
                                    variant_source=variant_source(requested))


def caffe_trunk(path: Path, layers: Mapping[str, tuple[str, list[np.ndarray]]],
                 backbone: str = BACKBONE) -> Trunk:
    """conv1_1 .. fc7 of a Caffe VGG16, or conv1 .. fc7 of CaffeNet (weights already BGR 0-255
    mean-subtracted: as is; fc layers [out, in] flattened C,H,W, docs/fidelity.md "Weight
    layouts")."""
    trunk: Trunk = {}
    problems = []
    for name in BACKBONE_LAYERS[backbone]:
        blobs = layers.get(name, ("", []))[1]
        if len(blobs) != 2:
            problems.append(f"layer {name} " + ("is missing" if name not in layers else
                                                f"has {len(blobs)} blobs, expected 2"))
            continue
        weight, bias = blobs
        # Legacy 4-D dims: fc weights come as 1x1x4096x25088, biases as 1x1x1xC.
        if name.startswith("fc"):
            weight = _strip_leading_ones(weight, 2)
        trunk[name] = (weight, _strip_leading_ones(bias, 1))
    if problems:
        what = "VGG16" if backbone == BACKBONE else "CaffeNet (AlexNet)"
        raise WeightsError(path, f"not a complete {what} Caffe model: " + "; ".join(problems))
    return trunk


def _fit_shape(blob: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """`blob` as `shape` if it is that shape, possibly with legacy leading 1-dims; else None."""
    if blob.shape == shape:
        return blob
    if blob.size == math.prod(shape) and _drop_ones(blob.shape) == _drop_ones(shape):
        return blob.reshape(shape)
    return None


def _drop_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    index = 0
    while index < len(shape) - 1 and shape[index] == 1:
        index += 1
    return shape[index:]


def _strip_leading_ones(blob: np.ndarray, ndim: int) -> np.ndarray:
    """Drop leading size-1 dims down to `ndim` dims ([1, 1, 1, 64] -> [64])."""
    shape = blob.shape
    while len(shape) > ndim and shape[0] == 1:
        shape = shape[1:]
    return blob.reshape(shape)


# ----------------------------------------------------------------------------------------------
# PyTorch state dicts (read by the injected `read_pth`)


def from_state_dict(path: Path, state: Mapping[str, np.ndarray], variant: str | None,
                     init_for: str | None, convention: str, num_classes: int,
                     source_sha: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if "conv1_1.weight" in state:  # canonical names: an FCN (pytorch-fcn layout)
        if init_for is not None and variant_from_keys(state) not in (None, BACKBONE):
            raise UsageError(f"{path} already holds FCN weights; --init-for is for VGG16 "
                             "ImageNet weights")
        return from_canonical(path, state, "pth", variant, source_sha)
    if f"{TORCHVISION_NAMES['conv1_1']}.weight" not in state:
        raise WeightsError(path, "not a VGG16 or FCN state dict (no features.0.weight or "
                           f"conv1_1.weight; keys: {preview_names(sorted(state))})")
    trunk: Trunk = {}
    problems = []
    for name, module in TORCHVISION_NAMES.items():
        try:
            trunk[name] = (state[f"{module}.weight"], state[f"{module}.bias"])
        except KeyError:
            problems.append(f"missing {module}.weight/bias ({name})")
    if problems:
        raise WeightsError(path, "not a complete torchvision VGG16 state dict: "
                           + "; ".join(problems))
    label = "torchvision" if convention == "torchvision" else "pth"
    fold = fold_torchvision_conv1_1 if convention == "torchvision" else None
    return trunk_init_archive(path, trunk, BACKBONE, label, variant, init_for, num_classes,
                          source_sha, fold)
