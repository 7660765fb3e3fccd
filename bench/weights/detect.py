"""Which model a set of tensors was made for, from their names and shapes (never a file name).

Names give the structure, the class count picks among models that share it, and where even
shapes are identical (NYUD colour vs HHA) the archive's metadata or --variant must say which
(docs/fidelity.md "Telling the models apart"). Shapes only: works on arrays, safetensors header
entries and caffemodel blobs alike. Stdlib + the spec; no tensor data is read here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import WeightsError
from bench.model.spec import UnknownVariantError, build_spec, resolve_model
from bench.model.zoo import MODEL_ENTRIES

# A VGG16 trunk without FCN heads (conv1_1 .. fc7): what `detect_variant` calls a backbone;
# a CaffeNet trunk (conv1 .. fc7) is FCN-AlexNet's ImageNet init.
BACKBONE = "vgg16"
ALEXNET = "alexnet"
BACKBONES = (BACKBONE, ALEXNET)


def _layers(keys: Iterable[str]) -> set[str]:
    return {key.rsplit(".", 1)[0] for key in keys}


def variant_from_keys(keys: set[str] | Mapping[str, Any]) -> str | None:
    """The model whose distinctive layers appear in `keys` ("vgg16"/"alexnet" for a bare
    ImageNet trunk), or None. Names only: where several models share every name (VOC, Context
    and NYUD 32s) this is the first of them in the catalogue; `model_from_tensors` then picks
    by class count (docs/fidelity.md "Telling the models apart")."""
    layers = _layers(keys)
    if "conv1_1color" in layers or "conv1_1hha" in layers:
        return "nyud-fcn32s-color-hha"
    if "conv1_1_bgrd" in layers:
        return "nyud-fcn32s-color-d"
    if any(layer.endswith(("_sem", "_geo")) for layer in layers):  # SIFT Flow's two heads
        for final, model in (("upscore8", "siftflow-fcn8s"), ("upscore16", "siftflow-fcn16s"),
                             ("upscore", "siftflow-fcn32s")):
            if {f"{final}_sem", f"{final}_geo"} & layers:
                return model
        return None
    if "conv1" in layers and "conv1_1" not in layers:  # CaffeNet trunk
        if "upscore" in layers:
            return "voc-fcn-alexnet"
        if "fc7" in layers and "score_fr" not in layers:
            return ALEXNET
        return None
    if {"scale_pool4", "scale_pool3"} & layers:
        return "fcn8s-atonce"  # Scale layers: at-once (VOC; ADE20K by class count)
    if "upscore8" in layers:
        return "fcn8s"
    if "upscore16" in layers:
        return "fcn16s"
    if "upscore" in layers:
        return "fcn32s"
    if "fc7" in layers and not {"score_fr", "upscore2"} & layers:
        return BACKBONE
    return None


@functools.cache
def _param_names(model: str) -> frozenset[str]:
    return frozenset(build_spec(model).param_shapes())


def same_structure(model: str) -> tuple[str, ...]:
    """Every model whose tensors have the same names as `model`'s (differing at most in shape:
    class count or input channels), in catalogue order."""
    names = _param_names(model)
    return tuple(entry.key for entry in MODEL_ENTRIES if _param_names(entry.key) == names)


def _released_classes(model: str) -> int:
    return resolve_model(model).heads[0].classes


def classes_of(model: str, shapes: Mapping[str, Any]) -> int | None:
    """Classes of a single-head model's tensors: channels of its final upsampling kernel."""
    if len(resolve_model(model).heads) > 1:
        return None
    final = [name for name in build_spec(model).param_shapes() if name.startswith("upscore")]
    if not final or final[-1] not in shapes:
        return None
    shape = _shape(shapes[final[-1]])
    return int(shape[0]) if shape else None


def model_from_tensors(path: str | Path, shapes: Mapping[str, Any] | set[str],
                       metadata: Mapping[str, str] | None = None,
                       requested: str | None = None) -> str:
    """The model (catalogue key) a set of tensors was made for, from their names and shapes.

    Names decide the structure; where several models share it (VOC/Context/NYUD 32s, VOC/ADE20K
    at-once), the class count decides; NYUD colour and HHA have identical shapes, so the
    archive's `variant` metadata or `requested` (--variant) must say which. A `variant` in the
    metadata of another structure is refused in one line.
    """
    metadata = metadata or {}
    from_keys = variant_from_keys(shapes)
    known = canonical_model(path, metadata.get("variant"), "metadata variant")
    wanted = canonical_model(path, requested, "--variant")
    if from_keys is None:
        if known is None:
            raise WeightsError(path, "cannot tell the FCN model: no 'variant' metadata and no "
                               f"distinctive layer among its tensors "
                               f"({preview_names(sorted(shapes))})")
        return known
    if from_keys in BACKBONES:
        if known not in (None, from_keys):
            raise WeightsError(path, f"metadata says variant {known!r} but the tensors are a "
                               f"bare {from_keys} trunk; the file is inconsistent")
        return from_keys
    siblings = same_structure(from_keys)
    if known is not None:
        if known not in siblings:
            raise WeightsError(path, f"metadata says variant {known!r} but the tensors are "
                               f"those of {' or '.join(siblings)}; the file is inconsistent, "
                               "re-convert it")
        return known
    if len(siblings) == 1:
        return from_keys
    classes = classes_of(from_keys, shapes) if isinstance(shapes, Mapping) else None
    fits = [model for model in siblings if _released_classes(model) == classes]
    if wanted in fits:
        return wanted
    if len(fits) == 1:
        return fits[0]
    if not fits:  # a class count no released model has: the VOC structure, fine-tuned
        return from_keys
    raise WeightsError(path, f"the tensors fit {' and '.join(fits)} equally (identical names "
                       "and shapes); pass --variant with the one it is (it is recorded in the "
                       "archive)")


def canonical_model(path: str | Path, name: str | None, what: str) -> str | None:
    if name is None:
        return None
    if name in BACKBONES:
        return name
    try:
        return resolve_model(name).key
    except UnknownVariantError as error:
        raise WeightsError(path, f"{what}: {error}") from None


def width_divisor_of(model: str, shapes: Mapping[str, Any], path: str | Path = "<params>") -> int:
    """1 for the released widths; > 1 for a narrow test-only net (from the first convolution)."""
    name, full = next(iter(build_spec(model).param_shapes().items()))
    if name not in shapes:
        return 1
    shape = _shape(shapes[name])
    channels = int(shape[0]) if shape else 0
    if channels < 1 or full[0] % channels:
        raise WeightsError(path, f"{name} has {channels} filters; {model} has {full[0]}")
    return full[0] // channels


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, Mapping):  # a safetensors header entry
        return tuple(value["shape"])
    return tuple(np.shape(value))


def preview_names(names: Iterable[str], limit: int = 6) -> str:
    """'a, b, c, ... (40 in all)' for error messages; 'none' for an empty list."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") or "none"
