"""Weights in other formats -> the neutral archive (bench.weights.archive): the entry points.

Sources, recognised from their CONTENT (never the file name):
  * an fcn-bench archive or a safetensors file with the canonical names (re-validated),
  * an official FCN caffemodel (fcn32s/16s/8s-heavy-pascal, fcn8s-atonce-pascal),
  * VGG16 ImageNet weights -> an FCN *init* archive exactly as the reference surgery builds it
    (REF surgery.transplant + interp; docs/fidelity.md "Initialisation from ImageNet"): the
    Caffe VGG_ILSVRC_16_layers.caffemodel, torchvision's vgg16-397923af.pth (input convention
    folded into conv1_1) or the Keras vgg16_weights_tf_dim_ordering_tf_kernels.h5,
  * a .pth state dict with the canonical FCN names (e.g. wkentaro/pytorch-fcn's converted models),
  * or nothing: `convert_random` writes `bench.model.init.random_params`.
A .pth needs torch to read, so callers pass `read_pth` (the convert command
passes `backends.read_torch_state_dict`, which imports torch only for a torch file).

Each source format is read in bench/weights/source_formats.py, ImageNet trunks go through
bench/weights/surgery.py; memory and class-count limits are bench/weights/limits.py.
"""


from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import __version__
from bench.core.errors import UsageError, WeightsError
from bench.core.outputs import check_writable
from bench.model.init import random_params
from bench.model.spec import UnknownVariantError, build_spec, resolve_model
from bench.weights.archive import (
    BACKBONE,
    archive_metadata,
    reading_weights_file,
    save_archive,
    sha256_file,
)
from bench.weights.keras_h5 import read_keras_vgg16
from bench.weights.limits import check_memory, check_num_classes
from bench.weights.progress import Progress, byte_progress, offset_progress
from bench.weights.sniff import not_weights_problem, sniff
from bench.weights.source_formats import (
    from_archive,
    from_named_layers,
    from_state_dict,
    read_caffe_layers,
)
from bench.weights.surgery import trunk_init_archive

CONVERTER_VERSION = __version__


PTH_CONVENTIONS = ("torchvision", "caffe")


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
    check_output(output, force)
    variant, init_for = model_key(variant, "--variant"), model_key(init_for, "--init-for")
    if pth_convention not in PTH_CONVENTIONS:
        raise UsageError(f"unknown .pth convention {pth_convention!r}; choose from "
                         f"{', '.join(PTH_CONVENTIONS)}")
    source_format = detect_format(source)
    size = source.stat().st_size
    source_sha = sha256_file(source, byte_progress(progress, "sha256", size))

    if source_format == "safetensors":
        params, metadata = from_archive(source, variant, init_for, source_sha)
    elif source_format == "caffemodel":
        layers = read_caffe_layers(source, offset_progress(progress, "read", size))
        params, metadata = from_named_layers(source, layers, "caffe", variant, init_for,
                                              num_classes, source_sha)
    elif source_format == "torch":
        if read_pth is None:
            raise WeightsError(source, "is a PyTorch file; this caller cannot read .pth files "
                                       "(use `python cli.py convert`)")
        state = read_pth(source)
        params, metadata = from_state_dict(source, state, variant, init_for, pth_convention,
                                            num_classes, source_sha)
    else:  # hdf5
        trunk = read_keras_vgg16(source)
        params, metadata = trunk_init_archive(source, trunk, BACKBONE, "keras", variant, init_for,
                                          num_classes, source_sha, fold=None)
    if source_format != "safetensors":  # an archive keeps its metadata exactly
        metadata.update(source_name=source.name, source_format=source_format)
    save_archive(output, params, metadata)
    return conversion_result(output, params, metadata, source_format, size, started)


def convert_random(output: str | Path, variant: str, seed: int = 0, *,
                   num_classes: int | None = None, width_divisor: int = 1,
                   force: bool = False) -> Conversion:
    """An archive of `bench.model.init.random_params` (deterministic for a seed; no source file).
    `num_classes` None = the model's released class count(s)."""
    started = time.perf_counter()
    output = Path(output)
    check_output(output, force)
    spec = build_spec(model_key(variant, "--variant") or "", check_num_classes(num_classes),
                      width_divisor)
    check_memory(spec, output)
    params = random_params(spec, seed)
    metadata = archive_metadata(spec, kind="random", origin=f"random:seed={seed}")
    save_archive(output, params, metadata)
    return conversion_result(output, params, metadata, "random", 0, started)


def model_key(name: str | None, option: str) -> str | None:
    """The catalogue key of a model name or alias given to `option` (None stays None)."""
    if name is None:
        return None
    try:
        return resolve_model(name).key
    except UnknownVariantError as error:
        raise UsageError(f"{option}: {error}") from None


def check_output(output: Path, force: bool) -> None:
    """Refuse a bad OUTPUT before reading a 500 MB source, not after."""
    if output.suffix != ".safetensors":
        raise UsageError(f"output {output} must end in .safetensors (the archive format)")
    if output.is_dir():
        raise UsageError(f"output {output} is a directory")
    if output.exists() and not force:
        raise UsageError(f"output {output} exists; pass --force to replace it (atomically)")
    check_writable(output, what="weights archive")


def conversion_result(output: Path, params: Mapping[str, np.ndarray], metadata: Mapping[str, str],
            source_format: str, size: int, started: float) -> Conversion:
    return Conversion(output=output, variant=metadata["variant"], kind=metadata["kind"],
                      origin=metadata["origin"], source_format=source_format,
                      tensors=len(params), parameters=sum(v.size for v in params.values()),
                      source_sha256=metadata["source_sha256"],
                      archive_sha256=sha256_file(output), source_bytes=size,
                      seconds=time.perf_counter() - started)
