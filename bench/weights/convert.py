"""Weights in other formats -> the neutral archive (bench.weights.archive). Never imports
torch/tensorflow.

Sources, recognised from their CONTENT (never the file name):
  * an fcn-bench archive or a safetensors file with the canonical names (re-validated),
  * an official FCN caffemodel (fcn32s/16s/8s-heavy-pascal, fcn8s-atonce-pascal),
  * VGG16 ImageNet weights -> an FCN *init* archive exactly as the reference surgery builds it
    (REF surgery.transplant + interp): the Caffe VGG_ILSVRC_16_layers.caffemodel, torchvision's
    vgg16-397923af.pth (input convention folded into conv1_1) or the Keras
    vgg16_weights_tf_dim_ordering_tf_kernels.h5,
  * a .pth state dict with the canonical FCN names (e.g. wkentaro/pytorch-fcn's converted models),
  * or nothing: `convert_random` writes `bench.model.init.random_params`.
A .pth needs torch to read; bench never imports it: callers pass `read_pth` (the convert command
passes `backends.read_torch_state_dict`, which imports torch only for a torch file).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import __version__
from bench.core.errors import UsageError, WeightsError
from bench.core.inputs import MEAN_BGR
from bench.core.outputs import check_writable
from bench.model.init import fixed_params, imagenet_init_params, random_params
from bench.model.spec import (
    VGG16_STAGES,
    Conv,
    FcnSpec,
    UnknownVariantError,
    build_spec,
    resolve_model,
)
from bench.weights.archive import (
    ALEXNET,
    BACKBONE,
    BACKBONES,
    archive_metadata,
    check_metadata,
    check_params,
    infer_spec,
    load_archive,
    preview_names,
    read_header,
    reading_weights_file,
    save_archive,
    sha256_file,
    spec_from_archive,
    variant_from_keys,
    width_divisor_of,
)
from bench.weights.caffe import read_caffemodel
from bench.weights.keras_h5 import KERAS_NAMES as KERAS_NAMES  # re-exported: tests, callers
from bench.weights.keras_h5 import read_keras_vgg16
from bench.weights.sniff import not_weights_problem, sniff

CONVERTER_VERSION = __version__

# `progress(phase, bytes_done, bytes_total)`, phases "sha256" and "read".
Progress = Callable[[str, int, int], Any]


# torchvision VGG16 input convention (pytorch/vision#223): RGB in [0, 1], then (x - mean) / std.
TORCHVISION_MEAN_RGB = np.array((0.485, 0.456, 0.406))
TORCHVISION_STD_RGB = np.array((0.229, 0.224, 0.225))
PTH_CONVENTIONS = ("torchvision", "caffe")



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
# [4096, 25088] flattened C,H,W (Caffe InnerProduct, torch Linear) or already [4096, 512, 7, 7].
Trunk = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Conversion:
    """What a conversion wrote (the command prints it as one line)."""

    output: Path
    variant: str
    kind: str
    origin: str
    source_format: str
    tensors: int
    parameters: int
    source_sha256: str
    archive_sha256: str
    source_bytes: int
    seconds: float

    def summary(self) -> str:
        return (f"{self.output}: {self.variant} ({self.kind}, {self.origin}), {self.tensors} "
                f"tensors, {self.parameters:,} parameters, sha256 {self.archive_sha256}")


# ----------------------------------------------------------------------------------------------
# Format detection


def detect_format(path: str | Path) -> str:
    """"safetensors", "hdf5", "torch" or "caffemodel", from the content (bench.weights.sniff).

    Anything else (a JPEG, an HTML error page, a pickle, random bytes) is a WeightsError that
    says what the file looks like, before any parser sees it.
    """
    path = Path(path)
    with reading_weights_file(path, "a weights file"):
        kind = sniff(path)
    if not kind.convertible:
        raise WeightsError(path, not_weights_problem(path, kind))
    return kind.kind


# ----------------------------------------------------------------------------------------------
# Public entry points


def convert(source: str | Path, output: str | Path, *, variant: str | None = None,
            init_for: str | None = None, pth_convention: str = "torchvision",
            num_classes: int | None = None, force: bool = False,
            progress: Progress | None = None,
            read_pth: Callable[[Path], Mapping[str, np.ndarray]] | None = None) -> Conversion:
    """Convert `source` into an archive at `output` (written atomically, complete or absent).

    `variant` is needed only where the content cannot tell (e.g. pytorch-fcn's at-once model,
    whose scales are constants in code); if given it must agree with what the file holds.
    `init_for` (VGG16 sources only) picks the FCN variant to initialise (default fcn32s).
    `pth_convention` says which input convention a VGG16 .pth expects: "torchvision" (RGB,
    0-1, std-normalised: folded into conv1_1) or "caffe" (e.g. pytorch-fcn's vgg16_from_caffe).
    `read_pth(path)` reads a PyTorch file into numpy arrays (framework code, so it is injected).
    """
    started = time.perf_counter()
    source, output = Path(source), Path(output)
    _check_output(output, force)
    variant, init_for = model_key(variant, "--variant"), model_key(init_for, "--init-for")
    if pth_convention not in PTH_CONVENTIONS:
        raise UsageError(f"unknown .pth convention {pth_convention!r}; choose from "
                         f"{', '.join(PTH_CONVENTIONS)}")
    source_format = detect_format(source)
    size = source.stat().st_size
    source_sha = sha256_file(source, _absolute(progress, "sha256", size))

    if source_format == "safetensors":
        params, metadata = _from_archive(source, variant, init_for, source_sha)
    elif source_format == "caffemodel":
        layers = _read_caffe_layers(source, _absolute_offsets(progress, "read", size))
        params, metadata = _from_named_layers(source, layers, "caffe", variant, init_for,
                                              num_classes, source_sha)
    elif source_format == "torch":
        if read_pth is None:
            raise WeightsError(source, "is a PyTorch file; this caller cannot read .pth files "
                                       "(use `python cli.py convert`)")
        state = read_pth(source)
        params, metadata = _from_state_dict(source, state, variant, init_for, pth_convention,
                                            num_classes, source_sha)
    else:  # hdf5
        trunk = read_keras_vgg16(source)
        params, metadata = _trunk_archive(source, trunk, BACKBONE, "keras", variant, init_for,
                                          num_classes, source_sha, fold=None)
    if source_format != "safetensors":  # an archive keeps its metadata exactly
        metadata.update(source_name=source.name, source_format=source_format)
    save_archive(output, params, metadata)
    return _result(output, params, metadata, source_format, size, started)


def convert_random(output: str | Path, variant: str, seed: int = 0, *,
                   num_classes: int | None = None, width_divisor: int = 1,
                   force: bool = False) -> Conversion:
    """An archive of `bench.model.init.random_params` (deterministic for a seed; no source file).
    `num_classes` None = the model's released class count(s)."""
    started = time.perf_counter()
    output = Path(output)
    _check_output(output, force)
    spec = build_spec(model_key(variant, "--variant") or "", check_num_classes(num_classes),
                      width_divisor)
    check_memory(spec, output)
    params = random_params(spec, seed)
    metadata = archive_metadata(spec, kind="random", origin=f"random:seed={seed}")
    save_archive(output, params, metadata)
    return _result(output, params, metadata, "random", 0, started)


# Classes an archive may have: semantic segmentation sets have 19-200 (VOC 21, Context 60,
# ADE20K 150, COCO-Stuff 182). The upsampling kernels grow with the square of it: 1000 classes
# already make a 256 MB fcn32s `upscore` (docs/security.md).
MAX_NUM_CLASSES = 1000
# Copies of the parameters alive at the peak of a conversion: the generated arrays, their
# float32 copies in save_archive, and safetensors' serialised buffer.
_PEAK_COPIES = 3


def model_key(name: str | None, option: str) -> str | None:
    """The catalogue key of a model name or alias given to `option` (None stays None)."""
    if name is None:
        return None
    try:
        return resolve_model(name).key
    except UnknownVariantError as error:
        raise UsageError(f"{option}: {error}") from None


def check_num_classes(num_classes: int | None) -> int | None:
    """Refuse a class count outside 1..MAX_NUM_CLASSES (one line naming the option)."""
    if num_classes is not None and not 1 <= num_classes <= MAX_NUM_CLASSES:
        raise UsageError(f"--num-classes {num_classes} is outside 1..{MAX_NUM_CLASSES}")
    return num_classes


def conversion_bytes(spec: FcnSpec) -> int:
    """Estimated peak memory of writing an archive for `spec`, from its parameter shapes."""
    return _PEAK_COPIES * 4 * spec.num_parameters()


def available_memory() -> int | None:
    """Bytes this process can still get: the host's MemAvailable (else its physical memory),
    capped by an address-space limit (ulimit -v) if one is set; None if unknown."""
    free = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            free = None
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            free = soft if free is None else min(free, soft)
    except (ImportError, OSError, ValueError):
        pass
    return free


def check_memory(spec: FcnSpec, what: str | Path, available: int | None = None) -> None:
    """Refuse, before allocating, a conversion whose estimated peak exceeds the free memory."""
    need = conversion_bytes(spec)
    free = available if available is not None else available_memory()
    if free is not None and need > free:
        raise UsageError(f"{what}: a {spec.variant} archive with {spec.num_classes} classes "
                         f"needs about {need / 2**30:.1f} GiB of memory to build, but only "
                         f"{free / 2**30:.1f} GiB is available")


def _check_output(output: Path, force: bool) -> None:
    """Refuse a bad OUTPUT before reading a 500 MB source, not after."""
    if output.suffix != ".safetensors":
        raise UsageError(f"output {output} must end in .safetensors (the archive format)")
    if output.is_dir():
        raise UsageError(f"output {output} is a directory")
    if output.exists() and not force:
        raise UsageError(f"output {output} exists; pass --force to replace it (atomically)")
    check_writable(output, what="weights archive")


def _result(output: Path, params: Mapping[str, np.ndarray], metadata: Mapping[str, str],
            source_format: str, size: int, started: float) -> Conversion:
    return Conversion(output=output, variant=metadata["variant"], kind=metadata["kind"],
                      origin=metadata["origin"], source_format=source_format,
                      tensors=len(params), parameters=sum(v.size for v in params.values()),
                      source_sha256=metadata["source_sha256"],
                      archive_sha256=sha256_file(output), source_bytes=size,
                      seconds=time.perf_counter() - started)


class ProgressBars:
    """A `Progress` callback drawing one tqdm byte bar per phase on stderr (the `convert` and
    `download weights` commands). `enabled=None` shows them only when stderr is a terminal."""

    def __init__(self, enabled: bool | None = None, prefix: str = "") -> None:
        self.enabled = enabled
        self.prefix = prefix
        self.bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(phase)
        if bar is None:
            bar = self.bars[phase] = tqdm(
                total=total, desc=f"{self.prefix}{phase}", unit="B", unit_scale=True,
                unit_divisor=1024, leave=False, file=sys.stderr,
                disable=None if self.enabled is None else not self.enabled)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _absolute(progress: Progress | None, phase: str, total: int) -> Callable[[int], Any] | None:
    """Adapt chunk-size callbacks (sha256_file) to progress(phase, done, total)."""
    if progress is None:
        return None
    done = 0

    def step(chunk: int) -> None:
        nonlocal done
        done += chunk
        progress(phase, done, total)

    return step


def _absolute_offsets(progress: Progress | None, phase: str,
                      total: int) -> Callable[[int], Any] | None:
    if progress is None:
        return None
    return lambda offset: progress(phase, offset, total)


def _resolve_variant(path: Path, found: str, requested: str | None) -> str:
    if requested is not None and requested != found:
        raise WeightsError(path, f"holds {found} weights (detected from the file's layers, not "
                           f"guessed from its name) but --variant {requested} was given; drop "
                           f"--variant or convert the {requested} weights")
    return found


def _origin(label: str, path: Path) -> str:
    return f"{label}:{path.stem}"


# ----------------------------------------------------------------------------------------------
# Existing archives / canonical-name tensors


def _from_archive(path: Path, variant: str | None, init_for: str | None,
                  source_sha: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Re-validate an archive strictly; its metadata is preserved (origin, source hash...)."""
    header = read_header(path)
    keys = {key for key in header if key != "__metadata__"}
    if variant_from_keys(keys) in BACKBONES:
        raise WeightsError(path, "holds a bare ImageNet trunk in safetensors; fcn-bench converts "
                           "VGG16 from its Caffe, torchvision or Keras files and AlexNet from "
                           "the Caffe bvlc_reference_caffenet.caffemodel")
    spec = spec_from_archive(path, variant)
    params, metadata = load_archive(path, spec)
    found = spec.variant
    if init_for is not None:
        raise UsageError(f"{path} already holds {found} weights; --init-for is for VGG16 "
                         "ImageNet weights")
    _resolve_variant(path, found, variant)
    if "format" in metadata:  # an fcn-bench archive: copied as is, so it must be complete
        check_metadata(metadata, path)
    else:  # a foreign safetensors file with the canonical names
        metadata = archive_metadata(spec, kind="trained", origin=_origin("safetensors", path),
                                    source_sha256=source_sha, source_name=path.name,
                                    source_format="safetensors",
                                    variant_source=_variant_source(variant))
    return params, dict(metadata)


def _variant_source(requested: str | None) -> str:
    """How an archive's `variant` was decided (metadata `variant_source`)."""
    return ("--variant, checked against the tensors" if requested is not None
            else "detected from the tensors")


def _from_canonical(path: Path, arrays: Mapping[str, np.ndarray], label: str,
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
    _resolve_variant(path, spec.variant, variant)
    params = {p.name: params[p.name] for p in spec.parameters() if p.name in params} | {
        k: v for k, v in params.items() if k not in spec.param_shapes()}
    check_params(params, spec, path)
    return params, archive_metadata(spec, kind="trained", origin=_origin(label, path),
                                    source_sha256=source_sha,
                                    variant_source=_variant_source(variant))


# ----------------------------------------------------------------------------------------------
# Caffe


def _read_caffe_layers(path: Path, progress: Callable[[int], Any] | None
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


def _from_named_layers(path: Path, layers: Mapping[str, tuple[str, list[np.ndarray]]],
                       label: str, variant: str | None, init_for: str | None, num_classes: int,
                       source_sha: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Caffe layers -> archive: an FCN caffemodel of any released model, or an ImageNet trunk
    (VGG16, CaffeNet) -> init via the surgery. The model is detected from the blobs (names,
    then class count); `variant` is needed only where they cannot tell (NYUD colour vs HHA)."""
    tensors = {f"{name}.{'weight' if index == 0 else 'bias'}": blob
               for name, (_, blobs) in layers.items() for index, blob in enumerate(blobs[:2])}
    found = variant_from_keys(tensors)
    if found in BACKBONES:
        trunk = _caffe_trunk(path, layers, found)
        return _trunk_archive(path, trunk, found, label, variant, init_for, num_classes,
                              source_sha, fold=None)
    if found is None:
        raise WeightsError(path, "no FCN, VGG16 or AlexNet layers in this Caffe model (layers "
                           f"with weights: {preview_names(layers)}); expected conv1_1 ... fc7, "
                           "score_fr, upscore*")
    if init_for is not None:
        raise UsageError(f"{path} already holds {found} weights; --init-for is for ImageNet "
                         "weights (VGG16, CaffeNet)")
    spec = infer_spec(tensors, {}, path, variant)
    variant = _resolve_variant(path, spec.variant, variant)
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
    return params, archive_metadata(spec, kind="trained", origin=_origin(label, path),
                                    source_sha256=source_sha,
                                    variant_source=_variant_source(requested))


def _caffe_trunk(path: Path, layers: Mapping[str, tuple[str, list[np.ndarray]]],
                 backbone: str = BACKBONE) -> Trunk:
    """conv1_1 .. fc7 of a Caffe VGG16, or conv1 .. fc7 of CaffeNet (weights already BGR 0-255
    mean-subtracted: as is)."""
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


def _from_state_dict(path: Path, state: Mapping[str, np.ndarray], variant: str | None,
                     init_for: str | None, convention: str, num_classes: int,
                     source_sha: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if "conv1_1.weight" in state:  # canonical names: an FCN (pytorch-fcn layout)
        if init_for is not None and variant_from_keys(state) not in (None, BACKBONE):
            raise UsageError(f"{path} already holds FCN weights; --init-for is for VGG16 "
                             "ImageNet weights")
        return _from_canonical(path, state, "pth", variant, source_sha)
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
    return _trunk_archive(path, trunk, BACKBONE, label, variant, init_for, num_classes,
                          source_sha, fold)


# ----------------------------------------------------------------------------------------------
# VGG16 -> FCN init (REF surgery), and the torchvision input fold


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


def _trunk_archive(path: Path, trunk: Trunk, backbone: str, label: str, variant: str | None,
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
    return params, archive_metadata(spec, kind="init", origin=_origin(label, path),
                                    source_sha256=source_sha, **extra)
