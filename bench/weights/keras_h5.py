"""Reading Keras VGG16 weights (HDF5) for `bench.weights.convert`, refusing files that reach outside
themselves. Moved out of bench/weights/convert.py unchanged; h5py is
imported only when a file is read. Limits: docs/security.md, "Keras HDF5".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.core.errors import WeightsError
from bench.model.spec import VGG16_STAGES, build_spec
from bench.weights.archive import preview_names

if TYPE_CHECKING:
    from bench.weights.surgery import Trunk


def _keras_names() -> dict[str, str]:
    """Caffe name -> Keras applications.VGG16 layer name (block1_conv1 .. fc1, fc2)."""
    names = {f"conv{stage}_{conv}": f"block{stage}_conv{conv}"
             for stage, num_convs, _ in VGG16_STAGES for conv in range(1, num_convs + 1)}
    names.update(fc6="fc1", fc7="fc2")
    return names


KERAS_NAMES = _keras_names()


def read_keras_vgg16(path: str | Path) -> Trunk:
    """conv1_1 .. fc7 from a Keras VGG16 weights h5, in Caffe layouts.

    Keras 2 `save_weights` layout: root attr `layer_names`; per layer group an attr
    `weight_names` (kernel first, then bias) naming datasets relative to the group, either
    `block1_conv1/kernel:0` (Keras >= 2.1) or `block1_conv1_W_1:0` (Keras 1 / early 2);
    a whole-model save nests it all under `model_weights`. The attrs may be chunked
    (`weight_names0`, `weight_names1`...) when they exceed the HDF5 header limit.
    Kernels are [kH, kW, in, out] -> OIHW; `fc1` is [25088, 4096] flattened H,W,C (Keras
    Flatten on NHWC) -> [7, 7, 512, 4096] -> OIHW (the canonical layouts: docs/fidelity.md
    "Weight layouts"). The weights are Caffe's (Keras' "caffe" preprocessing feeds BGR 0-255 minus
    the VGG mean), so conv1_1 already expects BGR: no channel reversal.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(path, f"not a readable HDF5 file: {error}") from None
    with handle:
        check_h5_self_contained(handle, path)
        group = handle.get("model_weights", handle)
        available = _h5_attr_list(group, "layer_names") or list(group.keys())
        missing = [keras for keras in KERAS_NAMES.values() if keras not in group]
        if missing:
            raise WeightsError(path, f"not a Keras VGG16 weights file: no layer(s) "
                               f"{preview_names(missing)} (its layers: "
                               f"{preview_names(available)})")
        trunk: Trunk = {}
        for name, keras in KERAS_NAMES.items():
            layer = group[keras]
            weight_names = _h5_attr_list(layer, "weight_names")
            try:
                values = [_read_h5_dataset(path, layer, weight) for weight in weight_names]
            except (KeyError, OSError, ValueError, TypeError) as error:
                raise WeightsError(path, f"layer {keras}: cannot read its weights "
                                   f"({error})") from None
            kernels = [v for v in values if v.ndim >= 2]
            biases = [v for v in values if v.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise WeightsError(path, f"layer {keras} has weights {weight_names} with "
                                   f"shapes {[list(v.shape) for v in values]}; expected one "
                                   "kernel and one bias")
            trunk[name] = (_keras_kernel_to_caffe(path, name, kernels[0], trunk), biases[0])
    return trunk


# The largest VGG16 tensor is fc6: 25088 x 4096 floats. A dataset declaring more is not VGG16
# and is refused before it is read (a few KB of gzip can declare gigabytes).
_MAX_H5_ELEMENTS = max(math.prod(shape) for shape in build_spec("fcn32s").param_shapes().values())
_MAX_H5_OBJECTS = 100_000


def check_h5_self_contained(handle: Any, path: Path) -> None:
    """Refuse an HDF5 file that reaches outside itself (docs/security.md): external links,
    soft links, datasets with external raw storage (`/etc/passwd` read as weights) or virtual
    datasets (data mapped from other files). Walked iteratively over hard links only."""
    import h5py

    stack = [("", handle)]
    seen: set[int] = set()
    while stack:
        prefix, group = stack.pop()
        for name in group:
            where = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
                target = getattr(link, "filename", None) or getattr(link, "path", "")
                kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
                raise WeightsError(path, f"{where} is {kind} (to {target!s:.80}); fcn-bench reads "
                                   "only self-contained HDF5 files")
            item = group[name]
            key = hash(item.id)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > _MAX_H5_OBJECTS:
                raise WeightsError(path, f"more than {_MAX_H5_OBJECTS:,} HDF5 objects; not a "
                                   "Keras weights file")
            if isinstance(item, h5py.Group):
                stack.append((where, item))
            elif isinstance(item, h5py.Dataset):
                if item.external:
                    raise WeightsError(path, f"dataset {where} keeps its data in another file "
                                       f"({item.external[0][0]!s:.80}); refusing external "
                                       "storage")
                if item.is_virtual:
                    raise WeightsError(path, f"dataset {where} is a virtual dataset (data from "
                                       "other files); refusing it")


def _read_h5_dataset(path: Path, layer: Any, name: str) -> np.ndarray:
    """One weight dataset as float32, its declared size and type checked before reading."""
    dataset = layer[name]
    if not hasattr(dataset, "dtype") or dataset.dtype.kind not in "fiu":
        raise WeightsError(path, f"{layer.name}/{name} is not a numeric dataset")
    if dataset.size > _MAX_H5_ELEMENTS:
        raise WeightsError(path, f"{layer.name}/{name} declares {dataset.size:,} values, more "
                           f"than any VGG16 tensor ({_MAX_H5_ELEMENTS:,}); refusing to read it")
    return np.asarray(dataset, dtype=np.float32)


def _h5_attr_list(group: Any, name: str) -> list[str]:
    """A list-of-strings attr, joined across Keras' chunks (name0, name1, ...)."""
    if name in group.attrs:
        raw = list(group.attrs[name])
    else:
        raw, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            raw += list(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [item.decode("utf8") if isinstance(item, bytes) else str(item) for item in raw]


def _keras_kernel_to_caffe(path: Path, name: str, kernel: np.ndarray, trunk: Trunk
                           ) -> np.ndarray:
    if kernel.ndim == 4:  # [kH, kW, in, out] -> [out, in, kH, kW]
        return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
    if name == "fc6":
        # [H*W*C, out], flattened H,W,C: un-flatten in that order, then to OIHW.
        channels = trunk["conv5_3"][0].shape[0]
        side = math.isqrt(kernel.shape[0] // max(1, channels))
        if side * side * channels != kernel.shape[0]:
            raise WeightsError(path, f"fc1 kernel {list(kernel.shape)} does not flatten a "
                               f"square map of {channels} channels")
        return np.ascontiguousarray(
            kernel.reshape(side, side, channels, kernel.shape[1]).transpose(3, 2, 0, 1))
    return np.ascontiguousarray(kernel.T)  # Dense [in, out] -> [out, in]
