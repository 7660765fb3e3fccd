"""The neutral weight archive: one safetensors file per weight set, strict loading (numpy only).

Never imports torch or tensorflow: backends convert the numpy arrays into their own layouts.

Archive format ("fcn-bench-weights", format_version 1)
------------------------------------------------------
A standard safetensors file (https://github.com/huggingface/safetensors), written with
`safetensors.numpy`, readable by any safetensors client.

* Tensor keys are the Caffe layer names of the spec plus ".weight" / ".bias":
  `conv1_1.weight` ... `conv5_3.bias`, `fc6.weight`, `fc7.bias`, `score_fr.weight`,
  `score_pool4.weight`, `score_pool3.bias`, `upscore.weight`, `upscore2.weight`,
  `upscore16.weight`, `upscore_pool4.weight`, `upscore8.weight`, `scale_pool4.weight`,
  `scale_pool3.weight`. Exactly the keys of `FcnSpec.parameters()` of the variant.
* Layouts are Caffe's, untouched:
  convolution weight OIHW `[C_out, C_in, kH, kW]` (fc6 is `[4096, 512, 7, 7]`, fc7
  `[4096, 4096, 1, 1]`); deconvolution (upsampling) weight `[C_in, C_out, kH, kW]` (Caffe's
  Deconvolution blob = torch `ConvTranspose2d.weight`); bias and Scale blobs `[C]`.
* Every tensor is float32, little-endian, C order, finite.
* The weights expect the Caffe input convention: NCHW, BGR, 0-255, minus the per-channel mean
  B 104.00698793, G 116.66876762, R 122.67891434 for the VOC nets (whatever the source framework
  was); the other models' inputs are prepared as in docs/fidelity.md "Inputs per model".
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

Loading is strict: every missing, unexpected, mis-shaped, non-float32 or non-finite tensor is
listed in ONE WeightsError naming the file; a truncated or foreign file is a WeightsError too.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench import __version__
from bench.core.atomic import atomic_path
from bench.core.errors import UsageError, WeightsError
from bench.core.json_text import JsonTooDeep, loads_bounded
from bench.core.outputs import writing
from bench.core.records import utc_now
from bench.downloads.cache import default_weights_path, file_digests
from bench.model.spec import FcnSpec, UnknownVariantError, build_spec, resolve_model
from bench.weights.detect import (
    ALEXNET as ALEXNET,  # re-exported: callers import detection from here
)
from bench.weights.detect import BACKBONE as BACKBONE
from bench.weights.detect import BACKBONES as BACKBONES
from bench.weights.detect import canonical_model, classes_of, model_from_tensors, width_divisor_of
from bench.weights.detect import preview_names as preview_names
from bench.weights.detect import same_structure as same_structure
from bench.weights.detect import variant_from_keys as variant_from_keys
from bench.weights.sniff import FileKind, convert_hint, sniff

FORMAT = "fcn-bench-weights"
FORMAT_VERSION = "1"
KINDS = ("trained", "init", "random")
LAYOUTS = json.dumps({
    "conv": "OIHW [C_out, C_in, kH, kW] (Caffe Convolution blob 0)",
    "deconv": "[C_in, C_out, kH, kW] (Caffe Deconvolution blob 0 = torch ConvTranspose2d)",
    "bias": "[C_out] (Caffe blob 1)",
    "scale": "[C] (Caffe Scale blob 0)",
    "dtype": "float32 little-endian, C order",
    "input": "NCHW BGR 0-255 minus mean B 104.00698793 G 116.66876762 R 122.67891434",
}, sort_keys=True)

# An archive's header is a few KB (about 40 tensors); safetensors itself allows 100 MB, whose
# parse tree alone could take gigabytes. Tensor entries are 2 levels deep, metadata 2.
_HEADER_LIMIT = 16 * 2**20
_HEADER_DEPTH = 8


def sha256_file(path: str | Path, progress: Callable[[int], Any] | None = None) -> str:
    """Hex SHA-256 of a weights file (`progress(n_bytes)` after each 1 MiB chunk)."""
    with reading_weights_file(path, "a weights file"):
        return file_digests(path, ("sha256",), progress)["sha256"]


@contextmanager
def reading_weights_file(path: str | Path, expected: str) -> Iterator[None]:
    """OSErrors while reading a weights file (any format) -> one WeightsError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise WeightsError(path, "no such file") from None
    except IsADirectoryError:
        raise WeightsError(path, f"is a directory, expected {expected}") from None
    except OSError as error:
        raise WeightsError(path, f"cannot read: {error.strerror or error}") from None


# ----------------------------------------------------------------------------------------------
# Model detection (bench/weights/detect.py), cross-checked with the metadata.


def detect_variant(source: str | Path | Mapping[str, Any]) -> str:
    """The model of an archive (path) or a params dict, detected from its content.

    The tensors decide (names, then class count); the `variant` metadata is used where they
    cannot tell, and a metadata entry that contradicts them is an error. Never guessed from
    the file name.
    """
    if isinstance(source, Mapping):
        return model_from_tensors("<params>", source)
    path = Path(source)
    header = read_header(path)
    tensors = {key: value for key, value in header.items() if key != "__metadata__"}
    metadata = header.get("__metadata__") or {}
    return model_from_tensors(path, tensors, metadata)


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


def spec_from_archive(path: str | Path, requested: str | None = None) -> FcnSpec:
    """The spec of an archive on disk, read from its header only (no tensor data)."""
    header = read_header(path)
    tensors = {key: value for key, value in header.items() if key != "__metadata__"}
    return infer_spec(tensors, header.get("__metadata__") or {}, path, requested)


def _int_meta(path: str | Path, metadata: Mapping[str, str], key: str) -> int | None:
    if key not in metadata:
        return None
    try:
        return int(metadata[key])
    except ValueError:
        raise WeightsError(path, f"metadata {key}={metadata[key]!r} is not an integer") from None


# ----------------------------------------------------------------------------------------------
# Reading


def read_header(path: str | Path) -> dict[str, Any]:
    """The parsed safetensors JSON header, after checking the file is complete.

    Parsed by hand so that a foreign or truncated file gets a precise one-line error (the
    safetensors library reports both as an opaque "Error while deserializing header"); a file
    of another kind (a caffemodel, a .pth, a JPEG) is named by its content, with the `convert`
    command to run. The header's size and JSON nesting depth are bounded (docs/security.md).
    """
    path = Path(path)
    with reading_weights_file(path, "a .safetensors file"):
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise _not_an_archive(path, f"{size} bytes, too short")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > size - 8:
                raise _not_an_archive(path, "no valid header length in the first 8 bytes")
            if header_len > _HEADER_LIMIT:
                raise WeightsError(path, f"safetensors header of {header_len:,} bytes is over "
                                   f"the {_HEADER_LIMIT // 2**20} MiB an fcn-bench archive "
                                   "could need; refusing to parse it")
            raw = handle.read(header_len)
    try:
        header = loads_bounded(raw.decode("utf-8"), _HEADER_DEPTH)
    except JsonTooDeep as error:
        raise WeightsError(path, f"not a safetensors file (header JSON {error})") from None
    except (UnicodeDecodeError, ValueError):
        raise _not_an_archive(path, "header is not JSON") from None
    if not isinstance(header, dict):
        raise WeightsError(path, "not a safetensors file (header is not a JSON object)")
    data_len = size - 8 - header_len
    needed = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            _begin, end = (int(offset) for offset in entry["data_offsets"])
            _ = str(entry["dtype"]), [int(dim) for dim in entry["shape"]]
        except (TypeError, KeyError, ValueError):
            raise WeightsError(path, f"not a safetensors file (bad header entry {key!r})") from None
        needed = max(needed, end)
    if needed > data_len:
        raise WeightsError(path, f"truncated: the header describes {8 + header_len + needed} "
                           f"bytes but the file has {size}; download or convert it again")
    metadata = header.get("__metadata__")
    if metadata is not None and not isinstance(metadata, dict):
        raise WeightsError(path, "not a safetensors file (__metadata__ is not an object)")
    return header


def _not_an_archive(path: Path, why: str) -> WeightsError:
    """A file that is not a safetensors archive: say what it is instead (by content) and, for
    weights in another format, the `convert` command that makes an archive of it."""
    kind = sniff_path(path)
    if kind.kind in ("safetensors", "unknown", "empty"):
        return WeightsError(path, f"not a safetensors file ({why})")
    return WeightsError(path, f"is {kind.description}, not an fcn-bench weights archive "
                              f"(.safetensors); {convert_hint(path, kind)}")


def sniff_path(path: Path) -> FileKind:
    try:
        return sniff(path)
    except OSError:
        return FileKind("unknown", "an unreadable file")


# Metadata every fcn-bench archive carries; `convert` refuses an archive lacking one before
# writing anything (an archive written without them would break every later reader).
REQUIRED_METADATA = ("variant", "kind", "origin", "source_sha256")


def check_metadata(metadata: Mapping[str, str], path: str | Path,
                   required: Iterable[str] = REQUIRED_METADATA) -> None:
    """WeightsError naming every missing required key and an unknown `kind`."""
    problems = [f"no {key!r}" for key in required if key not in metadata]
    if "kind" in metadata and metadata["kind"] not in KINDS:
        problems.append(f"kind {str(metadata['kind'])[:40]!r} is not one of {', '.join(KINDS)}")
    if problems:
        raise WeightsError(path, f"archive metadata is incomplete or wrong: {'; '.join(problems)}"
                                 "; re-convert it from its source")


def load_archive(path: str | Path, spec: FcnSpec | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read an archive strictly: (params in spec order, metadata).

    With `spec`, the tensors must be exactly the spec's parameters with its shapes; weights of
    another variant are refused by name. Without it the spec is inferred from the content
    (`infer_spec`) and checked the same way. All problems are gathered into one WeightsError.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    header = read_header(path)
    metadata = {str(k): str(v) for k, v in (header.get("__metadata__") or {}).items()}
    entries = {key: value for key, value in header.items() if key != "__metadata__"}
    if metadata.get("format", FORMAT) != FORMAT:
        raise WeightsError(path, f"metadata format {metadata['format']!r} is not {FORMAT!r}")
    check_metadata(metadata, path, required=())
    if metadata.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise WeightsError(path, f"archive format_version {metadata['format_version']} is not "
                           f"supported (this fcn-bench reads {FORMAT_VERSION}); upgrade fcn-bench")

    if spec is None:
        spec = infer_spec(entries, metadata, path)
    else:
        found = model_from_tensors(path, entries, metadata, spec.variant)
        if found != spec.variant:
            raise wrong_model(path, found, spec.variant)

    expected = spec.param_shapes()
    problems = _shape_problems(spec, {k: tuple(v["shape"]) for k, v in entries.items()})
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
        raise _problems_error(path, problems)
    return {name: params[name] for name in expected}, metadata


def wrong_model(path: str | Path, found: str, requested: str) -> WeightsError:
    """The one line for an archive of another model than the one asked for."""
    return WeightsError(path, f"holds {found} weights (detected from the archive, not guessed "
                        f"from the file name) but {requested} was requested; use --variant "
                        f"{found} or pick the {requested} weights")


def archive_spec(path: str | Path, variant: str | None = None) -> FcnSpec:
    """The spec of an archive from its header alone, refusing one of another model than
    `variant` (any name or alias) in one line: what a command checks before reading inputs."""
    requested = canonical_model(path, variant, "--variant")
    spec = spec_from_archive(path, requested)
    if requested is not None and requested != spec.variant:
        raise wrong_model(path, spec.variant, requested)
    return spec


def load_weights(path: str | Path, variant: str | None = None
                 ) -> tuple[FcnSpec, dict[str, np.ndarray], dict[str, str]]:
    """(spec, params, metadata) of an archive: what predict, parity and reproduce run.

    Classes and width always come from the archive's content; `variant` (a command's --variant)
    is only checked against it: weights of another variant are refused, naming both.
    """
    if variant is not None:
        try:
            variant = resolve_model(variant).key
        except UnknownVariantError as error:
            raise WeightsError(path, str(error)) from None
    found = spec_from_archive(path, variant)
    spec = found
    if variant not in (None, found.variant):
        classes = None if len(resolve_model(variant).heads) > 1 else found.num_classes
        spec = build_spec(variant, classes, found.width_divisor)
    params, metadata = load_archive(path, spec)
    return spec, params, metadata


def load_voc_weights(variant: str, weights: Path | None
                     ) -> tuple[Path, FcnSpec, dict[str, np.ndarray], dict[str, str]]:
    """(path, spec, params, metadata) of PASCAL VOC weights for `variant`: the given file, or the
    converted official weights in the cache; another variant's or a non-21-class net is refused,
    and a missing file names the command that fetches it."""
    path = weights if weights is not None else default_weights_path(variant)
    if not path.exists():
        if weights is not None:
            raise WeightsError(path, "no such file")
        raise WeightsError(path, f"no converted {variant} weights in the cache: run `python "
                                 f"cli.py download weights {variant}` (fetches the official "
                                 "caffemodel and converts it here), or convert a caffemodel you "
                                 f"have: `python cli.py convert FILE.caffemodel {path}`; or pass "
                                 "--weights FILE")
    spec, params, metadata = load_weights(path, variant)
    if spec.num_classes != 21:
        raise WeightsError(path, f"has {spec.num_classes} classes; PASCAL VOC needs 21")
    return path, spec, params, metadata


def check_params(params: Mapping[str, np.ndarray], spec: FcnSpec,
                 path: str | Path = "<params>") -> None:
    """Raise one WeightsError listing every way `params` differs from the spec (names, shapes,
    dtype float32, finiteness). Converters call it before writing anything."""
    problems = _shape_problems(spec, {k: tuple(np.shape(v)) for k, v in params.items()})
    for name, value in params.items():
        value = np.asarray(value)
        if value.dtype != np.float32:
            problems.append(f"{name} is {value.dtype}, expected float32")
        elif bad := count_nonfinite(value):
            problems.append(f"{name} has {bad} non-finite values (NaN/inf)")
    if problems:
        raise _problems_error(path, problems)


def count_nonfinite(value: np.ndarray, slice_size: int = 1 << 22) -> int:
    """NaN/inf count, in slices: fc6's mask would otherwise be a 100 MB temporary."""
    flat = np.asarray(value).reshape(-1)
    return sum(int(np.count_nonzero(~np.isfinite(flat[i:i + slice_size])))
               for i in range(0, flat.size, slice_size))


def _shape_problems(spec: FcnSpec, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    expected = spec.param_shapes()
    problems = [f"missing {name} {list(shape)}" for name, shape in expected.items()
                if name not in shapes]
    problems += [f"unexpected {name} {list(shape)}" for name, shape in shapes.items()
                 if name not in expected]
    problems += [f"{name} has shape {list(shapes[name])}, {spec.variant} expects {list(shape)}"
                 for name, shape in expected.items()
                 if name in shapes and tuple(shapes[name]) != tuple(shape)]
    return problems


def _problems_error(path: str | Path, problems: list[str]) -> WeightsError:
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return WeightsError(path, f"{count}: " + "; ".join(problems))


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


