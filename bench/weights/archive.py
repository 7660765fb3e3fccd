"""The neutral weight archive: one safetensors file per weight set, strict loading (numpy only).

Numpy arrays in the canonical layouts; backends convert them into their own.

Archive format ("fcn-bench-weights", format_version 1)
------------------------------------------------------
A standard safetensors file (https://github.com/huggingface/safetensors), written with
`safetensors.numpy`, readable by any safetensors client.

* Tensor keys are the Caffe layer names of the spec plus ".weight" / ".bias":
  `conv1_1.weight` ... `conv5_3.bias`, `fc6.weight`, `fc7.bias`, `score_fr.weight`,
  `score_pool4.weight`, `score_pool3.bias`, `upscore.weight`, `upscore2.weight`,
  `upscore16.weight`, `upscore_pool4.weight`, `upscore8.weight`, `scale_pool4.weight`,
  `scale_pool3.weight`. Exactly the keys of `FcnSpec.parameters()` of the variant.
* Layouts are Caffe's, untouched (docs/fidelity.md "Weight layouts"):
  convolution weight OIHW `[C_out, C_in, kH, kW]` (fc6 is `[4096, 512, 7, 7]`, fc7
  `[4096, 4096, 1, 1]`); deconvolution (upsampling) weight `[C_in, C_out, kH, kW]` (Caffe's
  Deconvolution blob = torch `ConvTranspose2d.weight`); bias and Scale blobs `[C]`.
* Every tensor is float32, little-endian, C order, finite.
* The weights expect the Caffe input convention: NCHW, BGR, 0-255, minus the per-channel mean
  B 104.00698793, G 116.66876762, R 122.67891434 for the VOC nets (whatever the source framework
  was; docs/fidelity.md "Means per data set"); the other models' inputs are prepared as in
  docs/fidelity.md "Inputs per model".
* `__metadata__` (string -> string):
    format            "fcn-bench-weights"
    format_version    "1"
    variant           the model's catalogue key (bench/model/zoo.py): fcn32s | fcn16s | fcn8s |
                      fcn8s-atonce (the VOC nets) | voc-fcn-alexnet | nyud-fcn32s-color | ...
                      | ade20k-fcn8s; recorded because NYUD colour and HHA tensors are identical
    variant_source    how it was decided: "detected from the tensors" or "--variant, checked
                      against the tensors" (convert of a caffemodel or foreign file)
    num_classes       "21" (the first head's classes)
    width_divisor     "1" (> 1 only for the narrow test-only networks)
    kind              "trained" (e.g. the official caffemodels) | "init" (VGG16 surgery for
                      training) | "random" (bench.model.init.random_params)
    origin            where the numbers come from, e.g. "caffe:fcn8s-heavy-pascal",
                      "torchvision:vgg16", "keras:vgg16", "random:seed=3"
    converter_version the fcn-bench version that wrote the file
    source_sha256     SHA-256 of the converted source file ("none" for generated weights)
    created_utc       ISO 8601 UTC time of writing
    layouts           JSON object documenting the layouts above (`LAYOUTS`)
  Writers may add further keys (e.g. `source_name`); readers ignore keys they do not know.

Reading goes through `open_archive`: the header is read once (bench/weights/header.py), the spec
it implies is inferred from the content, and the tensors are read strictly on demand: every
missing, unexpected, mis-shaped, non-float32 or non-finite tensor is listed in ONE WeightsError
naming the file (bench/weights/validation.py); a truncated or foreign file is a WeightsError too.
"""


from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bench import __version__
from bench.core.atomic import atomic_path
from bench.core.errors import UsageError, WeightsError
from bench.core.outputs import writing
from bench.core.records import utc_now
from bench.model.spec import FcnSpec, UnknownVariantError, build_spec, resolve_model
from bench.weights.detect import (
    ALEXNET as ALEXNET,  # re-exported: callers import detection from here
)
from bench.weights.detect import BACKBONE as BACKBONE
from bench.weights.detect import BACKBONES as BACKBONES
from bench.weights.detect import classes_of, model_from_tensors, width_divisor_of
from bench.weights.detect import preview_names as preview_names
from bench.weights.detect import same_structure as same_structure
from bench.weights.detect import variant_from_keys as variant_from_keys
from bench.weights.header import read_header, sha256_file
from bench.weights.header import reading_weights_file as reading_weights_file
from bench.weights.validation import KINDS as KINDS
from bench.weights.validation import REQUIRED_METADATA as REQUIRED_METADATA
from bench.weights.validation import (
    check_metadata,
    check_params,
    count_nonfinite,
    problems_error,
    shape_problems,
)

FORMAT = "fcn-bench-weights"
FORMAT_VERSION = "1"
LAYOUTS = json.dumps({
    "conv": "OIHW [C_out, C_in, kH, kW] (Caffe Convolution blob 0)",
    "deconv": "[C_in, C_out, kH, kW] (Caffe Deconvolution blob 0 = torch ConvTranspose2d)",
    "bias": "[C_out] (Caffe blob 1)",
    "scale": "[C] (Caffe Scale blob 0)",
    "dtype": "float32 little-endian, C order",
    "input": "NCHW BGR 0-255 minus mean B 104.00698793 G 116.66876762 R 122.67891434",
}, sort_keys=True)

# A header entry: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}.
HeaderEntry = Mapping[str, Any]


# ----------------------------------------------------------------------------------------------
# Reading: one open_archive


@dataclass(frozen=True)
class OpenArchive:
    """A weights archive whose header was read once: what every reader needs of it.

    `metadata` and `entries` come from the header; `spec` (the model, classes and width the
    tensors were made for) is inferred from them on first use, `requested` breaking ties between
    models with identical tensors (NYUD colour and HHA); the tensor data is read only by
    `read_tensors`, and the file's SHA-256 only when `sha256` is asked for.
    """

    path: Path
    metadata: dict[str, str]
    entries: dict[str, HeaderEntry]
    requested: str | None = None

    @cached_property
    def spec(self) -> FcnSpec:
        return infer_spec(self.entries, self.metadata, self.path, self.requested)

    @property
    def model_name(self) -> str:
        """The model's catalogue key (bench/model/zoo.py), e.g. "fcn8s"."""
        return self.spec.variant

    @property
    def detected_model(self) -> str:
        """The model of the tensors, a bare ImageNet trunk ("vgg16", "alexnet") included."""
        return model_from_tensors(self.path, self.entries, self.metadata, self.requested)

    @cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of the file (hashed on first use: it reads the whole file)."""
        return sha256_file(self.path)

    def read_tensors(self, spec: FcnSpec | None = None) -> dict[str, np.ndarray]:
        """The tensors, strictly: exactly the parameters of `spec` (default: the inferred one)
        with its shapes, float32 and finite, in spec order; every problem in one WeightsError.
        An archive of another model than `spec`'s is refused by name."""
        if spec is None:
            spec = self.spec
        else:
            found = model_from_tensors(self.path, self.entries, self.metadata, spec.variant)
            if found != spec.variant:
                raise wrong_model(self.path, found, spec.variant)
        return _read_tensors(self.path, self.entries, spec)


def open_archive(path: str | Path, variant: str | None = None) -> OpenArchive:
    """Open an archive: its header read once and checked (format, version, kind).

    `variant` (a command's --variant, any name or alias) is what the caller expects: it breaks
    ties between models with identical tensors, and an archive of another model is refused in
    one line naming both. Classes and width always come from the archive's content.
    """
    if variant is not None:
        try:
            variant = resolve_model(variant).key
        except UnknownVariantError as error:
            raise WeightsError(path, str(error)) from None
    path = Path(path)
    metadata, entries = _header_parts(path)
    if metadata.get("format", FORMAT) != FORMAT:
        raise WeightsError(path, f"metadata format {metadata['format']!r} is not {FORMAT!r}")
    check_metadata(metadata, path, required=())
    if metadata.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise WeightsError(path, f"archive format_version {metadata['format_version']} is not "
                           f"supported (this fcn-bench reads {FORMAT_VERSION}); upgrade fcn-bench")
    archive = OpenArchive(path, metadata, entries, variant)
    if variant is not None and archive.model_name != variant:
        raise wrong_model(path, archive.model_name, variant)
    return archive


def load_archive(path: str | Path, spec: FcnSpec | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(params in spec order, metadata) of an archive, read strictly against `spec` (default:
    the spec its content implies). Weights of another model are refused by name."""
    archive = open_archive(path)
    return archive.read_tensors(spec), archive.metadata


def load_weights(path: str | Path, variant: str | None = None
                 ) -> tuple[FcnSpec, dict[str, np.ndarray], dict[str, str]]:
    """(spec, params, metadata) of an archive: `open_archive` then its tensors."""
    archive = open_archive(path, variant)
    return archive.spec, archive.read_tensors(), archive.metadata


def detect_variant(source: str | Path | Mapping[str, Any]) -> str:
    """The model of an archive (path) or a params dict, detected from its content.

    The tensors decide (names, then class count); the `variant` metadata is used where they
    cannot tell, and a metadata entry that contradicts them is an error. Never guessed from
    the file name. Header only: a bare ImageNet trunk is named ("vgg16", "alexnet").
    """
    if isinstance(source, Mapping):
        return model_from_tensors("<params>", source)
    path = Path(source)
    metadata, entries = _header_parts(path)
    return model_from_tensors(path, entries, metadata)


def _header_parts(path: Path) -> tuple[dict[str, str], dict[str, HeaderEntry]]:
    """(metadata as strings, tensor entries) of the header, read once."""
    header = read_header(path)
    metadata = {str(k): str(v) for k, v in (header.get("__metadata__") or {}).items()}
    return metadata, {key: value for key, value in header.items() if key != "__metadata__"}


def _read_tensors(path: Path, entries: Mapping[str, HeaderEntry], spec: FcnSpec
                  ) -> dict[str, np.ndarray]:
    """The tensor data, checked against `spec`; all problems gathered into one WeightsError."""
    from safetensors import SafetensorError, safe_open

    expected = spec.param_shapes()
    problems = shape_problems(spec, {k: tuple(v["shape"]) for k, v in entries.items()})
    problems += [f"{key} is {entry['dtype']}, expected F32" for key, entry in entries.items()
                 if entry["dtype"] != "F32"]
    # Read the well-formed tensors even when others are wrong, so that NaNs are reported in
    # the same single error as the missing or mis-shaped ones.
    readable = [name for name, shape in expected.items() if name in entries
                and entries[name]["dtype"] == "F32" and tuple(entries[name]["shape"]) == shape]
    params: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="np") as handle:
            for name in readable:
                value = np.ascontiguousarray(handle.get_tensor(name))
                if bad := count_nonfinite(value):
                    problems.append(f"{name} has {bad} non-finite values (NaN/inf)")
                params[name] = value
    except SafetensorError as error:
        raise WeightsError(path, f"not a readable safetensors file ({error})") from None
    if problems:
        raise problems_error(path, problems)
    return {name: params[name] for name in expected}


# ----------------------------------------------------------------------------------------------
# What a set of weights implies


def infer_spec(params: Mapping[str, Any], metadata: Mapping[str, str] | None = None,
               path: str | Path = "<params>", requested: str | None = None) -> FcnSpec:
    """The FcnSpec that a set of weights was made for (model, classes, width), from content.

    `params` values only need a `.shape` (arrays, or shapes read from a header).
    """
    metadata = metadata or {}
    variant = model_from_tensors(path, params, metadata, requested)
    if variant in BACKBONES:
        raise WeightsError(path, f"holds a bare {variant} trunk, not an FCN: convert it with "
                           "`cli.py convert --init-for MODEL` first")
    num_classes = _int_meta(path, metadata, "num_classes")
    if num_classes is None:
        num_classes = classes_of(variant, params)
    if len(resolve_model(variant).heads) > 1:
        num_classes = None  # fixed per head; the strict shape check compares them
    width_divisor = _int_meta(path, metadata, "width_divisor")
    if width_divisor is None:
        width_divisor = width_divisor_of(variant, params, path)
    try:
        return build_spec(variant, num_classes, width_divisor or 1)
    except UsageError as error:
        raise WeightsError(path, str(error)) from None


def _int_meta(path: str | Path, metadata: Mapping[str, str], key: str) -> int | None:
    if key not in metadata:
        return None
    try:
        return int(metadata[key])
    except ValueError:
        raise WeightsError(path, f"metadata {key}={metadata[key]!r} is not an integer") from None


def wrong_model(path: str | Path, found: str, requested: str) -> WeightsError:
    """The one line for an archive of another model than the one asked for."""
    return WeightsError(path, f"holds {found} weights (detected from the archive, not guessed "
                        f"from the file name) but {requested} was requested; use --variant "
                        f"{found} or pick the {requested} weights")


# ----------------------------------------------------------------------------------------------
# Writing


def archive_metadata(spec: FcnSpec, *, kind: str, origin: str, source_sha256: str = "none",
                     **extra: str) -> dict[str, str]:
    """The full metadata block of an archive for `spec` (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "variant": spec.variant,
        "num_classes": str(spec.num_classes),
        "width_divisor": str(spec.width_divisor),
        "kind": kind,
        "origin": origin,
        "converter_version": __version__,
        "source_sha256": source_sha256,
        "created_utc": utc_now(),
        "layouts": LAYOUTS,
        **{key: str(value) for key, value in extra.items()},
    }


def save_archive(path: str | Path, params: Mapping[str, np.ndarray],
                 metadata: Mapping[str, str]) -> Path:
    """Validate `params` against the spec they describe and write the archive atomically.

    Missing standard metadata (format, variant, num_classes, layouts, created_utc...) is filled
    in from the content; `origin` is required. Floating arrays are stored as float32; the file
    appears under `path` only once it is complete (temp file + fsync + rename).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = {}
    for name, value in params.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating):
            raise WeightsError(path, f"refusing to write {name}: dtype {value.dtype} is not float")
        # safetensors reads the raw buffer: it must be contiguous float32.
        tensors[name] = np.ascontiguousarray(value, dtype=np.float32)
    if "origin" not in metadata:
        raise ValueError("save_archive needs metadata['origin'] (where the weights come from)")
    check_metadata(metadata, path, required=())
    spec = infer_spec(tensors, metadata, path)
    check_params(tensors, spec, path)
    full = archive_metadata(spec, kind=str(metadata.get("kind", "trained")),
                            origin=str(metadata["origin"]))
    full.update({str(k): str(v) for k, v in metadata.items()})
    full["format"], full["format_version"] = FORMAT, FORMAT_VERSION

    with writing(path, "weights archive"), atomic_path(path) as tmp:
        try:
            save_file(tensors, tmp, metadata=full)
        except SafetensorError as error:
            # safetensors reports a full disk or a vanished folder as its own error type, not
            # an OSError: give it the same one line as any other failed write.
            raise OSError(None, f"{error}".strip() or "write failed", str(path)) from None
    return path


