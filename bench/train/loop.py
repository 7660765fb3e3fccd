"""The training loop: it drives a backend's `Trainer` (bench.core.contracts) through
updates, validation and snapshots on the recipe's schedule, and writes the run record.

The settings and pieces it uses live beside it: recipes.py (Caffe solver settings), plan.py
(per-tensor lr and decay), sampler.py (REF's image order, dropout seeds), init_weights.py (the
staged-initialisation surgery), run_config.py, snapshots.py, resume.py, log.py (CSV log and
curves) and stopping.py (divergence, SIGINT/SIGTERM). `run_training` is a sequence of named
steps over one `TrainingRun`; only rank 0 writes files.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.core.atomic import write_json
from bench.core.contracts import Trainer
from bench.core.errors import FcnBenchError, UsageError
from bench.core.records import make_record
from bench.data.prefetch import prefetch_keys
from bench.evaluation.metrics import ConfusionMatrix, evaluation_record
from bench.model.memory import ImageMemoryCheck
from bench.model.spec import FcnSpec
from bench.train.data import TrainingItem, TrainingSet
from bench.train.log import CURVES_NAME, LOG_NAME, RECORD_NAME, TrainLog, write_curves
from bench.train.resume import ResumeState
from bench.train.run_config import ScalarWriter, TrainConfig
from bench.train.sampler import Sampler, dropout_seed, sampled_ids
from bench.train.snapshots import (
    SnapshotPaths,
    list_snapshots,
    prune_snapshots,
    save_snapshot,
)
from bench.train.stopping import StopRequest, TrainingDiverged, TrainingInterrupted

if TYPE_CHECKING:  # annotations only: tqdm is imported when a run starts
    from tqdm import tqdm as ProgressBar


def evaluate(trainer: Trainer, dataset: TrainingSet, ids: Sequence[str],
             num_classes: int) -> dict[str, Any]:
    """Score `ids` (this process's shard) and sum the confusion matrices over all processes."""
    shard = list(ids)[trainer.rank::trainer.world_size]
    matrix = ConfusionMatrix(num_classes)
    loss_sum = 0.0
    for sample in prefetch_keys(dataset.load, shard):
        labels, loss = trainer.predict(sample.image, sample.label)
        # Several heads (SIFT Flow): the loss covers all; the matrix scores the first head.
        truth = (next(iter(sample.label.values())) if isinstance(sample.label, Mapping)
                 else sample.label)
        matrix.update(truth, labels)
        loss_sum += loss
    # One all_reduce for the matrix and the loss; float64 holds pixel counts exactly (< 2**53).
    local = np.concatenate([matrix.matrix.ravel().astype(np.float64), [loss_sum]])
    total = trainer.all_reduce_sum(local)
    summed = ConfusionMatrix.from_matrix(np.rint(total[:-1]).reshape(num_classes, num_classes))
    return {"images": len(ids), "loss": float(total[-1]) / max(1, len(ids)), "confusion": summed}


@dataclass
class _Progress:
    """Running numbers for the bar, the log window and the final record."""

    window_loss: float = 0.0
    window_updates: int = 0
    window_images: int = 0
    window_seconds: float = 0.0  # training time only (validation and snapshots excluded)
    train_seconds: float = 0.0
    images_seen: int = 0  # this session's, over all processes
    smoothed_loss: float | None = None
    best: dict[str, Any] | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainingRun:
    """What the steps of one `run_training` call share: the trainer, the settings, the outputs
    (rank 0 only: `log` and `snapshots`) and the running numbers."""

    trainer: Trainer
    config: TrainConfig
    out_dir: Path
    val_set: TrainingSet
    val_ids: Sequence[str]
    sampler: Sampler
    fingerprint: str
    log: TrainLog | None
    snapshots: list[SnapshotPaths]
    last_snapshot: SnapshotPaths | None
    scalar_writer: ScalarWriter | None
    run_start: float
    progress: _Progress = field(default_factory=_Progress)

    @property
    def writer(self) -> bool:
        return self.trainer.rank == 0

    def last_snapshot_text(self, missing: str) -> str:
        return str(self.last_snapshot.weights) if self.last_snapshot else missing


def _replayed_sampler(num_items: int, start: int, config: TrainConfig, trainer: Trainer,
                      resume: ResumeState | None) -> Sampler:
    """This process's sampler after the draws of `start` updates, checked against the snapshot."""
    sampler = Sampler(num_items, config.seed, trainer.rank)
    sampler.fast_forward(start * config.recipe.iter_size)
    if resume and trainer.rank == 0 and not sampler.matches(resume.sampler_state):
        raise FcnBenchError(f"{resume.paths.state}: the replayed sampler does not match the saved "
                            "generator state (different Python random implementation?)")
    return sampler


def _open_run(trainer: Trainer, config: TrainConfig, train_set: TrainingSet,
              val_set: TrainingSet, val_ids: Sequence[str], out_dir: Path, fingerprint: str,
              resume: ResumeState | None, scalar_writer: ScalarWriter | None) -> TrainingRun:
    """Check the start, replay the sampler, open the log and list the existing snapshots."""
    start = resume.iteration if resume else 0
    if start > config.iters:
        raise UsageError(f"--iters {config.iters} is below the resumed snapshot's iteration "
                         f"{start}")
    sampler = _replayed_sampler(len(train_set.ids), start, config, trainer, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = trainer.rank == 0
    run = TrainingRun(
        trainer, config, out_dir, val_set, val_ids, sampler, fingerprint,
        log=TrainLog(out_dir / LOG_NAME, start if resume else None) if writer else None,
        snapshots=([paths for _, paths in list_snapshots(out_dir, config.variant)]
                   if writer else []),
        last_snapshot=resume.paths if resume else None, scalar_writer=scalar_writer,
        run_start=time.perf_counter())
    if resume:
        run.progress.best = resume.record.get("best")
    return run


def _snapshot(run: TrainingRun, iteration: int) -> None:
    """Refuse NaN/inf weights, then (rank 0) save a snapshot and prune the old ones."""
    config = run.config
    if not run.trainer.params_finite():
        raise TrainingDiverged(f"weights became NaN/inf by iteration {iteration} (base_lr "
                               f"{config.base_lr:g}); nothing written; last good snapshot: "
                               f"{run.last_snapshot_text('none')}")
    if not run.writer:
        return
    extra_state = {"data_fingerprint": run.fingerprint, "world_size": run.trainer.world_size}
    paths = save_snapshot(run.out_dir, config, iteration, run.trainer.params(),
                          run.trainer.momentum(), run.sampler,
                          {**extra_state, "best": run.progress.best})
    run.last_snapshot = paths
    if paths not in run.snapshots:
        run.snapshots.append(paths)
    best = run.progress.best
    prune_snapshots(run.snapshots, config.keep_snapshots,
                    SnapshotPaths.at(run.out_dir, config.variant, best["iteration"])
                    if best else None)


def _validate(run: TrainingRun, iteration: int) -> None:
    """Score the validation ids; rank 0 logs, records, reports and plots the result."""
    from tqdm import tqdm

    config, state = run.config, run.progress
    if not run.val_ids:
        return
    result = evaluate(run.trainer, run.val_set, run.val_ids, config.num_classes)
    summary = result["confusion"].summary()
    metrics = {key: summary[key] for key in ("pixel_accuracy", "mean_accuracy", "mean_iou",
                                               "fw_iou")}
    entry = {"iteration": iteration, "loss": result["loss"], **metrics}
    state.evaluations.append(entry)
    if state.best is None or _score(entry) > _score(state.best):
        state.best = entry
    if not run.writer or run.log is None:
        return
    run.log.append(iteration=iteration, phase="val", images=result["images"],
                   loss=result["loss"], lr=config.base_lr,
                   elapsed_s=round(time.perf_counter() - run.run_start, 3), **metrics)
    write_json(run.out_dir / "eval" / f"iter_{iteration:07d}.json", evaluation_record(
        config.val_split, result["confusion"], result["images"], source="train",
        iteration=iteration, variant=config.variant, backend=config.backend,
        loss_per_image=result["loss"], world_size=run.trainer.world_size))
    if run.scalar_writer:
        for key, value in entry.items():
            if key != "iteration" and value is not None:
                run.scalar_writer(f"val/{key}", float(value), iteration)
    tqdm.write(f"iteration {iteration}: {config.val_split} mean IU "
               f"{_percent(summary['mean_iou'])}, pixel acc "
               f"{_percent(summary['pixel_accuracy'])}, loss/image {result['loss']:.4g}",
               file=sys.stderr)
    if config.plots:
        _write_curves(run)


def _accumulate_update(run: TrainingRun, stream: Iterator[TrainingItem], ids: Sequence[str],
                       fits: ImageMemoryCheck, iteration: int, stop: StopRequest
                       ) -> tuple[float, bool]:
    """Forward/backward over the update's `iter_size` images, then one collective: the loss
    averaged over processes and whether any process was asked to stop. Raises TrainingDiverged
    on a NaN/inf loss before it is applied."""
    config, trainer = run.config, run.trainer
    iter_size = config.recipe.iter_size
    loss = 0.0
    for image_index in range(iter_size):
        sample = next(stream)
        expected_id = ids[run.sampler.next()]
        assert sample.id == expected_id, "prefetch order diverged from the sampler"
        fits(*_input_size(sample.image), sample.id)  # docs/security.md
        loss += trainer.forward_backward(
            sample.image, sample.label, dropout_seed(config.seed, trainer.rank, iteration,
                                                     image_index),
            last_of_batch=image_index == iter_size - 1)
    # One collective per update (NaN anywhere makes it NaN everywhere).
    loss, stop_flag = trainer.all_reduce_sum(np.array(
        [loss / iter_size, 1.0 if stop.requested else 0.0]))
    loss = float(loss) / trainer.world_size
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"loss became {loss} at iteration {iteration + 1} (base_lr "
            f"{config.base_lr:g} is too large for the {config.recipe.loss_normalization} "
            f"loss, or the init is broken); stopped before applying it; last good "
            f"snapshot: {run.last_snapshot_text('none')}")
    return loss, bool(stop_flag)


def _count_update(run: TrainingRun, loss: float, seconds: float, bar: ProgressBar) -> None:
    """Add one applied update to the running numbers and the progress bar."""
    state = run.progress
    images = run.config.recipe.iter_size * run.trainer.world_size
    state.window_seconds += seconds
    state.train_seconds += seconds
    state.images_seen += images
    state.window_loss += loss
    state.window_updates += 1
    state.window_images += images
    state.smoothed_loss = loss if state.smoothed_loss is None else (
        0.9 * state.smoothed_loss + 0.1 * loss)
    bar.update(1)
    bar.set_postfix(loss=f"{state.smoothed_loss:.4g}", refresh=False)


def _on_schedule(run: TrainingRun, iteration: int, stop_flag: bool) -> None:
    """After update `iteration`: log, validate and snapshot when due; a stop request snapshots
    and raises TrainingInterrupted."""
    config = run.config
    last = iteration == config.iters
    if iteration % config.log_every == 0 or last:
        _log_window(run, iteration)
    if iteration % config.eval_every == 0 or last:
        _validate(run, iteration)
    interrupted = stop_flag and iteration < config.iters
    if iteration % config.snapshot_every == 0 or last or interrupted:
        _snapshot(run, iteration)
    if interrupted:
        raise TrainingInterrupted(
            f"training interrupted at iteration {iteration}; snapshot "
            f"{run.last_snapshot_text('(rank 0)')}; continue with the same command plus "
            f"--resume")


def _train_until_done(run: TrainingRun, train_set: TrainingSet, start: int, resumed: bool,
                      bar: ProgressBar, fits: ImageMemoryCheck) -> int:
    """Updates from `start` to `config.iters` under a stop request; the iteration reached."""
    stream = prefetch_keys(train_set.load, sampled_ids(run.sampler.clone(), train_set.ids),
                           depth=4, thread_name="fcn-train-load")
    iteration = start
    try:
        with StopRequest() as stop:
            if start == run.config.iters and not resumed:
                _validate(run, iteration)  # --iters 0: just score the initial weights
            while iteration < run.config.iters:
                step_start = time.perf_counter()
                loss, stop_flag = _accumulate_update(run, stream, train_set.ids, fits,
                                                     iteration, stop)
                run.trainer.update()
                _count_update(run, loss, time.perf_counter() - step_start, bar)
                iteration += 1
                _on_schedule(run, iteration, stop_flag)
    finally:
        bar.close()
        stream.close()
    return iteration


def _finish(run: TrainingRun, iteration: int, resume: ResumeState | None,
            extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run record (rank 0 writes it, and the curves)."""
    state = run.progress
    record = make_record(
        "train", config=run.config.to_json(), iterations=iteration,
        resumed_from=resume.iteration if resume else None, world_size=run.trainer.world_size,
        images_seen_this_session=state.images_seen,
        elapsed_s=time.perf_counter() - run.run_start, train_seconds=state.train_seconds,
        # Training throughput (forward, backward, update; validation and snapshots excluded).
        images_per_s=(state.images_seen / state.train_seconds if state.train_seconds > 0
                      else None),
        evaluations=state.evaluations, best=state.best,
        final_snapshot=str(run.last_snapshot.weights) if run.last_snapshot else None,
        data_fingerprint=run.fingerprint, **(extra or {}))
    if run.writer:
        write_json(run.out_dir / RECORD_NAME, record)
        if run.config.plots:
            _write_curves(run)
    return record


def run_training(trainer: Trainer, config: TrainConfig, spec: FcnSpec, train_set: TrainingSet,
                 val_set: TrainingSet, val_ids: Sequence[str], out_dir: Path, *,
                 fingerprint: str, resume: ResumeState | None = None,
                 progress: bool | None = None, scalar_writer: ScalarWriter | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train up to `config.iters` updates, evaluating and snapshotting on schedule.

    Only rank 0 writes files. Raises TrainingDiverged on NaN/inf (nothing written for the bad
    state) and TrainingInterrupted after snapshotting when SIGINT/SIGTERM arrives.
    """
    from tqdm import tqdm

    run = _open_run(trainer, config, train_set, val_set, val_ids, out_dir, fingerprint, resume,
                    scalar_writer)
    start = resume.iteration if resume else 0
    # tqdm: disable=None means "only on a terminal"; progress=True/False forces it.
    disable = True if not run.writer else (None if progress is None else not progress)
    bar = tqdm(total=config.iters, initial=start, unit="it", dynamic_ncols=True,
               disable=disable, file=sys.stderr, desc=f"train {config.variant}")
    fits = ImageMemoryCheck(spec, str(getattr(trainer, "device", "cpu")), training=True)
    iteration = _train_until_done(run, train_set, start, resume is not None, bar, fits)
    return _finish(run, iteration, resume, extra)


def _log_window(run: TrainingRun, iteration: int) -> None:
    """One "train" log row (and scalar) for the updates since the last, then a new window."""
    state = run.progress
    mean_loss = state.window_loss / max(1, state.window_updates)
    rate = state.window_images / state.window_seconds if state.window_seconds > 0 else None
    if run.log is not None:
        run.log.append(iteration=iteration, phase="train", images=state.window_images,
                       loss=mean_loss, lr=run.config.base_lr,
                       elapsed_s=round(time.perf_counter() - run.run_start, 3),
                       images_per_s=round(rate, 4) if rate else None)
        if run.scalar_writer:
            run.scalar_writer("train/loss", mean_loss, iteration)
    state.window_loss, state.window_updates, state.window_images = 0.0, 0, 0
    state.window_seconds = 0.0


def _write_curves(run: TrainingRun) -> None:
    config = run.config
    write_curves(run.out_dir / LOG_NAME, run.out_dir / CURVES_NAME,
                 f"{config.variant} {config.recipe.name} ({config.backend})")


def _input_size(image: np.ndarray | Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(H, W) of a training input: one array, or {input name: array} for multi-input models."""
    array = next(iter(image.values())) if isinstance(image, Mapping) else image
    return int(array.shape[-2]), int(array.shape[-1])


def _score(entry: Mapping[str, Any]) -> float:
    """Mean IU for ranking evaluations; undefined (None/NaN) ranks last."""
    value = entry.get("mean_iou")
    return -1.0 if value is None or math.isnan(value) else float(value)


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}%"
