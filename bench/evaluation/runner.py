"""The evaluation loop: a dataset and a backend -> one confusion matrix per head, timed, resumable.

Batch 1 at each image's own size (REF reshapes the net per image; no resizing, no padding), argmax
on the device (`Backend.predict_labels`), one dataset-level confusion matrix per output head
(score.py), optional palette PNG predictions, checkpoints every N images. Serves bench.data.voc's
VOCDataset (one image, one label) and every bench.data.sets set (named inputs, one label map per
head: SIFT Flow's semantic and geometric). The data set and the backend are typed against the
contracts of bench.core.contracts (`Dataset`, `MultiHeadDataset`, `Backend`). The protocol, and
where REF states it: docs/fidelity.md "Evaluation protocol".
"""

from __future__ import annotations

import copy
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from tqdm import tqdm

from bench.core.contracts import (
    Backend,
    Dataset,
    ImageSample,
    MultiHeadDataset,
    NamedSample,
    ScoredHead,
)
from bench.core.digests import file_digests
from bench.core.distributed import Shard
from bench.core.errors import DataError, FcnBenchError
from bench.data.id_lists import id_list_sha256
from bench.data.labels import write_label_png
from bench.data.prefetch import prefetch_keys
from bench.evaluation.checkpoint import Checkpoint, CheckpointMismatch, CheckpointState
from bench.evaluation.metrics import ConfusionMatrix
from bench.model.memory import ImageMemoryCheck


@dataclass
class LoopTiming:
    """Where the wall time of the loop went (seconds, this session only; resumed images excluded).

    `data_wait_s` is time blocked on the prefetcher (decoding + preprocessing not hidden behind
    the forward passes); `forward_s` is `predict_labels`: host-to-device copy, forward, argmax on
    the device and the (H, W) uint8 labels back; `accumulate_s` the confusion-matrix update;
    `save_s` writing prediction PNGs; `checkpoint_s` writing checkpoints.
    """

    images: int = 0
    pixels: int = 0
    wall_s: float = 0.0
    data_wait_s: float = 0.0
    forward_s: float = 0.0
    first_forward_s: float | None = None  # includes one-time costs (tracing, autotuning)
    accumulate_s: float = 0.0
    save_s: float = 0.0
    checkpoint_s: float = 0.0
    forward_samples_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.wall_s if self.images and self.wall_s > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """Record form: totals, shares of the wall time, and forward-time quantiles in ms."""
        data = {k: v for k, v in asdict(self).items() if k != "forward_samples_ms"}
        data["images_per_s"] = self.images_per_s
        parts = ("data_wait_s", "forward_s", "accumulate_s", "save_s", "checkpoint_s")
        data["share_of_wall"] = ({part: getattr(self, part) / self.wall_s for part in parts}
                                 if self.wall_s > 0 else {})
        samples = np.asarray(self.forward_samples_ms)
        if samples.size:
            data["forward_ms"] = {"median": float(np.median(samples)),
                                  "p90": float(np.percentile(samples, 90)),
                                  "min": float(samples.min()), "max": float(samples.max())}
        return data


@dataclass
class RunResult:
    """A finished evaluation: the confusion matrix over all ids, and how this session went."""

    confusion: ConfusionMatrix
    num_images: int
    timing: LoopTiming
    resumed_from: int = 0  # images taken from a checkpoint instead of being run again
    predictions_dir: Path | None = None
    world_size: int = 1  # processes that shared the images; timing is this process's shard
    # Every head's matrix, in head order ({"semantic": confusion} for one-head data sets).
    confusions: dict[str, ConfusionMatrix] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.confusions:
            self.confusions = {"semantic": self.confusion}


def _file_sha256(path: Path) -> str:
    try:
        return file_digests(path)["sha256"]
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror or error}") from None


@dataclass(frozen=True)
class DataFingerprint:
    """Identity of the evaluated data: the ids in order and the SHA-256 of every label and image
    file. `summary()` goes into records; `checkpoint_key()` (ids + labels) keys checkpoints,
    while images are checked one by one on resume, so an image that stopped a run can be fixed
    and the run resumed, but an image that was already scored may not change."""

    ids: tuple[str, ...]
    label_sha256: dict[str, str]
    image_sha256: dict[str, str]

    def _combined(self, hashes: dict[str, str]) -> str:
        return hashlib.sha256("".join(hashes[i] for i in self.ids).encode()).hexdigest()

    def checkpoint_key(self) -> dict[str, Any]:
        return {"num_images": len(self.ids),
                "ids_sha256": hashlib.sha256("\n".join(self.ids).encode()).hexdigest(),
                "ids_set_sha256": id_list_sha256(self.ids),
                "labels_sha256": self._combined(self.label_sha256)}

    def summary(self) -> dict[str, Any]:
        return {**self.checkpoint_key(), "images_sha256": self._combined(self.image_sha256)}


def data_fingerprint(dataset: Dataset) -> DataFingerprint:
    """Hash every label and image file of `dataset` (id order); ~0.1 s per 100 MB.

    A multi-file data set (`files(id)`: several inputs, one label file per head) gets one hash
    per id over all its label files and one over all its input files."""
    ids = tuple(dataset.ids)
    if not _is_multi(dataset):
        return DataFingerprint(ids, {i: _file_sha256(dataset.label_path(i)) for i in ids},
                               {i: _file_sha256(dataset.image_path(i)) for i in ids})
    heads = {head.name for head in dataset.heads}
    labels, images = {}, {}
    for image_id in ids:
        files = dataset.files(image_id)
        labels[image_id] = _combined_sha256([p for role, p in files.items() if role in heads])
        images[image_id] = _combined_sha256([p for role, p in files.items() if role not in heads])
    return DataFingerprint(ids, labels, images)


def _combined_sha256(paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        return _file_sha256(paths[0])
    return hashlib.sha256("".join(_file_sha256(p) for p in paths).encode()).hexdigest()


def _is_multi(dataset: Dataset) -> TypeGuard[MultiHeadDataset]:
    """A bench.data.sets set (named inputs, per-head labels) rather than bench.data.voc's
    VOCDataset."""
    return hasattr(dataset, "heads") and hasattr(dataset, "confusions")


def run_evaluation(dataset: Dataset, backend: Backend, *, num_classes: int = 21,
                   checkpoint: Checkpoint | None = None, resume: bool = False,
                   save_predictions: str | Path | None = None, progress: bool = True,
                   workers: int = 2, depth: int = 8, desc: str | None = None,
                   data: DataFingerprint | None = None,
                   on_image: Callable[[int, str], None] | None = None,
                   shard: Shard | None = None) -> RunResult:
    """Evaluate `backend` on every id of `dataset` in order; returns the confusion matrix.

    With `checkpoint`, the state is saved every `checkpoint.every` images and when the loop stops
    early (KeyboardInterrupt, a corrupt image); `resume` continues from it. A corrupt image raises
    DataError naming the file and the kept checkpoint. `on_image(done, id)` is called after each
    image (progress hooks, tests that interrupt a run). With `data`, a checkpoint records the
    SHA-256 of every image it scored and resuming refuses if one of them has changed since.

    With `shard` (data-parallel, e.g. under torchrun) this process scores only its images
    (`Shard.select`), checkpoints them (the caller gives each rank its own checkpoint), and the
    returned matrix is the sum over all processes: every image counted exactly once.
    """
    all_ids: Sequence[str] = list(dataset.ids)
    ids: Sequence[str] = shard.select(all_ids) if shard is not None else all_ids
    multi = _is_multi(dataset)
    confusions = dataset.confusions() if multi else {"semantic": ConfusionMatrix(num_classes)}
    primary = next(iter(confusions))
    confusion = confusions[primary]
    done: list[str] = []
    if checkpoint is not None and resume:
        state = checkpoint.load(ids)
        if state is not None:
            if state.matrix.shape != confusion.matrix.shape:
                raise DataError(checkpoint.path, f"checkpoint matrix is {state.matrix.shape}, "
                                                 f"expected {confusion.matrix.shape}; delete it")
            if data is not None:
                _check_scored_images(checkpoint, state, data, dataset)
            confusion.matrix = state.matrix.copy()
            _restore_other_heads(checkpoint, state, confusions, primary)
            done = list(state.ids_done)
    resumed_from = len(done)
    out_dir = Path(save_predictions) if save_predictions is not None else None
    timing = LoopTiming()
    samples = prefetch_keys(dataset.load, list(ids[resumed_from:]), workers=workers, depth=depth)
    if shard is not None:  # the bar counts this process's images, not the split's
        desc = f"{desc or 'evaluate'} (rank {shard.rank}: {len(ids)} of {len(all_ids)} images)"
    bar = tqdm(total=len(ids), initial=resumed_from, unit="img", desc=desc, file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()

    def save_checkpoint() -> None:
        if checkpoint is not None and len(done) > resumed_from:
            t0 = time.perf_counter()
            extra: dict[str, Any] = ({"image_sha256": [data.image_sha256[i] for i in done]}
                                     if data is not None else {})
            if len(confusions) > 1:  # the first head's matrix is the checkpoint's own
                extra["head_matrices"] = {name: c.matrix.tolist()
                                          for name, c in confusions.items() if name != primary}
            checkpoint.save(done, confusion.matrix, extra or None)
            timing.checkpoint_s += time.perf_counter() - t0

    fits = ImageMemoryCheck(getattr(backend, "spec", None), _device_of(backend),
                            getattr(getattr(backend, "options", None), "precision", "fp32"))
    try:
        while True:
            t0 = time.perf_counter()
            try:
                sample = next(samples)
            except StopIteration:
                break
            t1 = time.perf_counter()
            fits(*_sample_size(sample, multi), sample.id)  # docs/security.md: before allocating
            if multi:
                labels = sample.labels
                preds = _predict_heads(backend, sample, dataset.heads)
            else:
                labels = {primary: sample.label}
                preds = {primary: backend.predict_labels(sample.image[np.newaxis])[0]}
            t2 = time.perf_counter()
            for head, pred in preds.items():
                _check_prediction(backend, sample.id, labels[head], pred)
                confusions[head].update(labels[head], pred)
            t3 = time.perf_counter()
            if out_dir is not None:
                for head, pred in preds.items():
                    folder = out_dir / head if len(preds) > 1 else out_dir
                    write_label_png(folder / f"{sample.id}.png", pred)
            t4 = time.perf_counter()
            done.append(sample.id)
            timing.images += 1
            timing.pixels += int(preds[primary].size)
            timing.data_wait_s += t1 - t0
            timing.forward_s += t2 - t1
            timing.forward_samples_ms.append(1000.0 * (t2 - t1))
            if timing.first_forward_s is None:
                timing.first_forward_s = t2 - t1
            timing.accumulate_s += t3 - t2
            timing.save_s += t4 - t3
            if checkpoint is not None and (len(done) - resumed_from) % checkpoint.every == 0:
                save_checkpoint()
            bar.update(1)
            if on_image is not None:
                on_image(len(done), sample.id)
    except DataError as error:
        save_checkpoint()
        raise DataError(error.path, f"{error.problem}; {_kept(checkpoint, done, ids)}") from error
    except BaseException:
        save_checkpoint()  # KeyboardInterrupt or a backend failure: keep the finished work
        raise
    finally:
        timing.wall_s = time.perf_counter() - started
        bar.close()
        samples.close()
    # Keep the completed state: `--resume` after an interrupted `--backend all` then reuses the
    # backends that finished instead of running them again.
    save_checkpoint()
    if shard is None:
        return RunResult(confusion, len(ids), timing, resumed_from, out_dir,
                         confusions=confusions)
    # Counts travel as float64, exact below 2**53 pixels per cell.
    summed = {}
    for name, matrix in confusions.items():
        total = shard.all_reduce_sum(matrix.matrix.astype(np.float64).ravel())
        summed[name] = _like(matrix, np.rint(total).reshape(matrix.matrix.shape))
    return RunResult(summed[primary], len(all_ids), timing, resumed_from, out_dir,
                     shard.world_size, confusions=summed)


def _like(confusion: ConfusionMatrix, matrix: np.ndarray) -> ConfusionMatrix:
    """A copy of `confusion` (class names, ignore and scoring rules) holding `matrix`."""
    result = copy.copy(confusion)
    result.matrix = matrix.astype(confusion.matrix.dtype)
    return result


def _restore_other_heads(checkpoint: Checkpoint, state: CheckpointState,
                         confusions: dict[str, ConfusionMatrix], primary: str) -> None:
    """Heads after the first keep their matrices in the checkpoint's `head_matrices`."""
    if len(confusions) == 1:
        return
    stored = state.extra.get("head_matrices")
    for name, matrix in confusions.items():
        if name == primary:
            continue
        values = np.asarray(stored.get(name) if isinstance(stored, dict) else None,
                            dtype=np.float64)
        if values.shape != matrix.matrix.shape:
            raise DataError(checkpoint.path, f"checkpoint has no {matrix.matrix.shape} matrix "
                                             f"for the {name} head; delete it")
        matrix.matrix = values.astype(matrix.matrix.dtype)


def _device_of(backend: Backend) -> str:
    try:
        return str(backend.device)
    except Exception:  # a test double, or a backend that resolves its device lazily
        return "cpu"


def _sample_size(sample: ImageSample | NamedSample, multi: bool) -> tuple[int, int]:
    """(H, W) of a sample's network input(s)."""
    array = next(iter(sample.inputs.values())) if multi else sample.image
    return int(array.shape[-2]), int(array.shape[-1])


def _predict_heads(backend: Backend, sample: NamedSample, heads: Sequence[ScoredHead]
                   ) -> dict[str, np.ndarray]:
    """{head name: (H, W) uint8} of one sample: its named inputs as a batch of one, the
    backend's outputs (one array, or a dict in the spec's head order) matched to the heads."""
    batch = {name: value[np.newaxis] for name, value in sample.inputs.items()}
    raw = backend.predict_labels(batch if len(batch) > 1 else next(iter(batch.values())))
    outputs = list(raw.values()) if isinstance(raw, dict) else [raw]
    if len(outputs) != len(heads):
        raise FcnBenchError(f"backend {getattr(backend, 'name', '?')} returned {len(outputs)} "
                            f"outputs but the data set scores {len(heads)} heads "
                            f"({', '.join(head.name for head in heads)}): wrong model for it?")
    return {head.name: output[0] for head, output in zip(heads, outputs, strict=True)}


def _check_scored_images(checkpoint: Checkpoint, state: CheckpointState, data: DataFingerprint,
                         dataset: Dataset) -> None:
    stored = state.extra.get("image_sha256")
    if stored is None or len(stored) != len(state.ids_done):
        raise CheckpointMismatch(f"checkpoint {checkpoint.path} does not record the images it "
                                 "scored; delete it to start over")
    for image_id, sha in zip(state.ids_done, stored, strict=True):
        if data.image_sha256[image_id] != sha:
            raise CheckpointMismatch(f"checkpoint {checkpoint.path}: image "
                                     f"{dataset.image_path(image_id)} changed after it was "
                                     "scored; delete the checkpoint to start over")


def _check_prediction(backend: Backend, image_id: str, label: np.ndarray,
                      pred: np.ndarray) -> None:
    """A backend that returns the wrong size or dtype is a bug: say which image and backend."""
    if pred.shape != label.shape or pred.dtype != np.uint8:
        raise FcnBenchError(f"backend {getattr(backend, 'name', '?')} returned labels of shape "
                            f"{pred.shape} ({pred.dtype}) for image {image_id} of shape "
                            f"{label.shape}; expected uint8 of the image's size")


def _kept(checkpoint: Checkpoint | None, done: Sequence[str], ids: Sequence[str]) -> str:
    if checkpoint is None or not done:
        return "stopped (no checkpoint written)"
    return (f"checkpoint kept at {checkpoint.path} ({len(done)} of {len(ids)} images done): fix "
            "the file and rerun with --resume")
