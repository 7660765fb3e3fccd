"""The contracts the core owns: what a backend, a trainer and a data set must provide.

Backends (backends/, plugins) implement `Backend` and, where they train, `Trainer`; the core
types against these. Numpy in, numpy out.

A backend is built from one `FcnSpec`; layouts (NCHW vs NHWC, OIHW vs HWIO, deconv kernel order)
stay inside it. At the boundary, images are NCHW float32, BGR, 0-255 minus the mean
(docs/fidelity.md "Means per data set"; what `bench.data.voc.preprocess` returns, with a batch
axis), and scores are NCHW float32. A model with
several inputs (NYUD colour + depth / HHA) takes a dict {input name: NCHW array}, and one with
several heads (SIFT Flow) returns a dict {output blob: scores}; see `FcnSpec.inputs`/`outputs`.
`check_inputs` (the input conventions section) enforces this for every backend, plugins included
(docs/adding_a_backend.md).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from bench.core.errors import UsageError

if TYPE_CHECKING:  # annotations only: the core sits below the model at run time
    from bench.model.spec import FcnSpec

DEVICES = ("auto", "cpu", "cuda")
# fp32: float32 with TF32 off; tf32: float32 storage, TF32 tensor-core math (CUDA only);
# bf16/fp16: the model and its inputs are cast to that dtype once, as a deployment would;
# amp-bf16/amp-fp16: float32 weights, autocast (torch) / a mixed-precision compute dtype (TF).
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "amp-bf16", "amp-fp16")
# torch.compile modes, and "xla" for TensorFlow's jit_compile; "default" = the framework's own
# (torch.compile's default mode, XLA for TensorFlow).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "xla")


def storage_dtype(precision: str) -> str:
    """The dtype weights and activations are stored in: float32 except for bf16/fp16 casts."""
    return {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")


def compute_dtype(precision: str) -> str:
    """The dtype products are computed in (TF32 aside): the half type of bf16/fp16/amp-*."""
    half = precision.removeprefix("amp-")
    return {"bf16": "bfloat16", "fp16": "float16"}.get(half, "float32")


def compile_mode(compile: str | bool | None) -> str | None:
    """Normalise RunOptions.compile: True (the old flag) means "default", False/None none."""
    if compile is True:
        return "default"
    if not compile:
        return None
    if compile not in COMPILE_MODES:
        raise UsageError(f"unknown compile mode {compile!r}; choose from "
                         f"{', '.join(COMPILE_MODES)}")
    return str(compile)


# ----------------------------------------------------------------------------------------------
# Input conventions: what every backend (built-in or plugin) accepts at its boundary


def check_images(images: np.ndarray, channels: int = 3, what: str = "images") -> np.ndarray:
    """The backend input contract: (N, C, H, W) float (returned as C-contiguous float32)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != channels or min(images.shape) < 1:
        raise UsageError(f"{what} must be (N, {channels}, H, W) with N, H, W >= 1, got shape "
                         f"{images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise UsageError(f"{what} must be float32 (mean-subtracted), got {images.dtype}")
    return np.ascontiguousarray(images, dtype=np.float32)


def check_inputs(spec: FcnSpec, images: np.ndarray | Mapping[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """Every network input by name, checked: a plain array for a one-input model, else a dict
    {input name: (N, C, H, W)} with the spec's inputs exactly and one common N, H, W."""
    names = spec.input_names
    if not isinstance(images, Mapping):
        if len(names) != 1:
            raise UsageError(f"{spec.variant} takes {len(names)} inputs ({', '.join(names)}): "
                             "pass a dict of named arrays")
        images = {names[0]: images}
    if set(images) != set(names):
        raise UsageError(f"{spec.variant} takes inputs {', '.join(names)}, got "
                         f"{', '.join(map(str, images)) or 'none'}")
    single = len(names) == 1
    checked = {item.name: check_images(images[item.name], item.channels,
                                       "images" if single else f"input {item.name!r}")
               for item in spec.inputs}
    sizes = {name: value.shape[:1] + value.shape[2:] for name, value in checked.items()}
    if len(set(sizes.values())) > 1:
        raise UsageError(f"{spec.variant} inputs differ in batch or size: "
                         + ", ".join(f"{name} {list(size)}" for name, size in sizes.items()))
    return checked


# Keys every Backend.environment() holds (records and the conformance suite rely on them).
ENVIRONMENT_KEYS = ("framework", "framework_version", "device", "device_name", "precision")


@dataclass(frozen=True)
class RunOptions:
    """How a backend runs. Accuracy runs use the defaults: fp32 with TF32 off, no compilation."""

    device: str = "auto"  # "auto" picks cuda when present, else cpu
    precision: str = "fp32"  # one of PRECISIONS (see there)
    compile: str | bool | None = None  # one of COMPILE_MODES; True = "default" (see compile_mode)
    channels_last: bool = False  # torch memory format (TF is always NHWC)
    threads: int | None = None  # intra-op CPU threads; None leaves the framework default
    seed: int = 0  # dropout RNG in training mode


class Backend(abc.ABC):
    """One FCN in one framework. Built-ins live in backends/<name>/; plugins register a factory
    (docs/adding_a_backend.md)."""

    name: str = "?"

    def __init__(self, spec: FcnSpec, options: RunOptions | None = None):
        self.spec = spec
        self.options = options or RunOptions()

    # -- weights ---------------------------------------------------------------------------
    @abc.abstractmethod
    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        """Load canonical (Caffe-layout) tensors keyed by spec parameter names; strict."""

    @abc.abstractmethod
    def state_params(self) -> dict[str, np.ndarray]:
        """The current tensors back in canonical layout (for snapshots and round-trip tests)."""

    # -- inference -------------------------------------------------------------------------
    @abc.abstractmethod
    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 -> (N, num_classes, H, W) float32 class scores (host numpy)."""

    @abc.abstractmethod
    def predict_labels(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 -> (N, H, W) uint8 labels; argmax runs on the device."""

    @abc.abstractmethod
    def forward_blobs(self, images: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Named intermediate blobs (spec layer names), NCHW float32, for layer-by-layer parity."""

    # -- timing hooks (latency) ----------------------------------------------------------------
    @abc.abstractmethod
    def to_device(self, images: np.ndarray) -> Any:
        """Copy a host batch to the device in the backend's own layout (outside timed regions)."""

    @abc.abstractmethod
    def forward_device(self, batch: Any) -> Any:
        """'model' mode: device input -> device scores, nothing copied back."""

    @abc.abstractmethod
    def synchronize(self, value: Any = None) -> None:
        """Block until queued device work (and `value`, if given) has finished."""

    # -- environment -----------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def device(self) -> str:
        """The resolved device: "cpu" or "cuda" (never "auto")."""

    @abc.abstractmethod
    def environment(self) -> dict[str, Any]:
        """Framework version, device name, driver, precision, TF32 flag, threads, compile mode:
        at least ENVIRONMENT_KEYS."""

    def reset_peak_memory(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Start a new peak-memory window (no-op where the framework cannot)."""

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory since the last reset, or None where unknown."""
        return None

    def memory_capacity_bytes(self) -> int | None:
        """Memory this backend's device can still give (free GPU memory), or None: the host."""
        return None

    def measure_peak(self) -> dict[str, Any] | None:
        """The device's measured ceilings for this precision (matrix product TFLOP/s, copy
        GB/s; see bench/perf/roofline.py), or None where the backend cannot measure them."""
        return None


class Trainer(Protocol):
    """What a backend provides to the loop. Images are (3, H, W) float32
    (bench.data.voc.preprocess),
    labels (H, W) uint8 with 255 = void; tensors cross as canonical-layout numpy arrays."""

    rank: int
    world_size: int

    def forward_backward(self, image: np.ndarray, label: np.ndarray, dropout_seed: int,
                         last_of_batch: bool) -> float:
        """Training-mode forward (dropout on), loss per the recipe, gradients ADDED to the
        accumulators. Data-parallel trainers reduce gradients only when `last_of_batch`."""

    def update(self) -> None:
        """The Caffe step on every learned tensor, then zero the accumulated gradients:
        V <- m*V + lr*lr_mult*(grad/iter_size + wd*decay_mult*W); W <- W - V
        (docs/training_recipes.md "The update and the loss normalisation")."""

    def predict(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float]:
        """Inference-mode (H, W) argmax labels and the summed loss over non-void pixels."""

    def params(self) -> dict[str, np.ndarray]:
        """Every spec tensor, canonical layout."""

    def momentum(self) -> dict[str, np.ndarray]:
        """Momentum buffers of the learned tensors (solver_plan names), canonical layout."""

    def load_momentum(self, buffers: Mapping[str, np.ndarray]) -> None: ...

    def params_finite(self) -> bool: ...

    def all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over processes (identity with one process)."""

    def environment(self) -> dict[str, Any]:
        """Framework, device, threads, world size: recorded in train_record.json."""

    def close(self) -> None:
        """Release process-group resources (data-parallel runs)."""


# ----------------------------------------------------------------------------------------------
# Data sets: what the evaluation loop (bench/evaluation/runner.py), the golden suite and the
# training loop read of one. bench.data.voc's VOC and SBD sets (one image, one label per id) are
# a `Dataset`; bench.data.base.SegmentationSet (named inputs, one label map per head: NYUDv2,
# SIFT Flow, PASCAL-Context, ADE20K) is a `MultiHeadDataset`.


class ImageSample(Protocol):
    """One decoded VOC/SBD id: `image` float32 (3, H, W) preprocessed, `label` uint8 (H, W)."""

    @property
    def id(self) -> str: ...
    @property
    def image(self) -> np.ndarray: ...
    @property
    def label(self) -> np.ndarray: ...


class NamedSample(Protocol):
    """One decoded id of a multi-input set: `inputs` name -> float32 (C, H, W) as the network's
    inputs are named, `labels` head -> uint8 (H, W)."""

    @property
    def id(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, np.ndarray]: ...
    @property
    def labels(self) -> Mapping[str, np.ndarray]: ...


@runtime_checkable
class Dataset(Protocol):
    """A split of a data set: its ids in order, where they came from, and how to load one.

    `load(id)` decodes and preprocesses one id (a DataError naming the file on any problem);
    `image_path`/`label_path` name the files that identify it (fingerprints, error messages).
    """

    name: str
    ids: list[str]
    source: Path

    def __len__(self) -> int: ...

    def load(self, image_id: str) -> ImageSample | NamedSample: ...

    def image_path(self, image_id: str) -> Path: ...

    def label_path(self, image_id: str) -> Path: ...


class Confusion(Protocol):
    """A confusion matrix being accumulated, rows = truth, columns = prediction, with its
    data set's ignore and scoring rules (bench.evaluation.metrics.ConfusionMatrix)."""

    matrix: np.ndarray

    def update(self, label: np.ndarray, pred: np.ndarray) -> Confusion: ...

    def summary(self) -> dict[str, Any]: ...


class ScoredHead(Protocol):
    """One output head of a data set: its name and its empty confusion matrix (the head's
    classes, ignore label and scoring rules)."""

    @property
    def name(self) -> str: ...

    def confusion(self) -> Confusion: ...


@runtime_checkable
class MultiHeadDataset(Dataset, Protocol):
    """A data set with named inputs and one label map per head, scored per head."""

    heads: tuple[ScoredHead, ...]

    def load(self, image_id: str) -> NamedSample: ...

    def files(self, image_id: str) -> dict[str, Path]:
        """Every file an id needs: {input name or head name: path}."""

    def confusions(self) -> dict[str, Confusion]:
        """One empty confusion matrix per head, in head order."""

    def summarize(self, confusions: Mapping[str, Confusion]) -> dict[str, Any]:
        """The data set's metrics from the per-head matrices."""

    def metric_notes(self) -> list[str]: ...
