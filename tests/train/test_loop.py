"""The training loop driven by a numpy stand-in for a backend, so schedules, NaN stops, Ctrl-C,
resume and snapshot pruning are tested in milliseconds (bench/train/loop.py, snapshots.py,
resume.py, stopping.py). FakeTrainer, _setup and _run are shared with tests/train/test_disk.py."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import numpy as np
import pytest

from bench.core.errors import FcnBenchError, WeightsError
from bench.data.voc import Sample
from bench.model.spec import build_spec
from bench.train.init_weights import (
    random_initial_params,
)
from bench.train.log import LOG_NAME, read_log
from bench.train.loop import run_training
from bench.train.plan import solver_plan
from bench.train.recipes import HEAVY
from bench.train.resume import load_resume_state
from bench.train.run_config import TrainConfig, id_lists_fingerprint
from bench.train.sampler import Sampler, dropout_seed
from bench.train.snapshots import SnapshotPaths, list_snapshots
from bench.train.stopping import TrainingDiverged, TrainingInterrupted
from bench.weights.archive import load_archive
from tests.train.test_train import NARROW


class FakeDataset:
    """Ids and constant 5x6 samples; label row 0 is void."""

    def __init__(self, count: int, prefix: str):
        self.ids = [f"{prefix}_{index:03d}" for index in range(count)]

    def load(self, image_id: str) -> Sample:
        label = np.full((5, 6), 1 + self.ids.index(image_id) % 3, np.uint8)
        label[0] = 255
        return Sample(image_id, np.zeros((3, 5, 6), np.float32), label)


class FakeTrainer:
    """Trains nothing real: the 'update' adds the step count, the loss is scripted per call.

    `events` maps a forward_backward call index to "nan" (return NaN) or "sigint" (send the
    process SIGINT, as Ctrl-C would).
    """

    rank, world_size = 0, 1

    def __init__(self, spec, params, plan, events=None):
        self.weights = {name: value.copy() for name, value in params.items()}
        self.velocity = {hyper.name: np.zeros_like(params[hyper.name]) for hyper in plan}
        self.events = events or {}
        self.calls = 0
        self.seen: list[tuple[str, int]] = []

    def forward_backward(self, image, label, dropout_seed, last_of_batch):
        event = self.events.get(self.calls)
        self.calls += 1
        self.seen.append((int(label[1, 0]), dropout_seed))
        if event == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        return float("nan") if event == "nan" else 100.0 / self.calls

    def update(self):
        for name in self.velocity:
            self.velocity[name] += 1.0
            self.weights[name] -= 1e-3 * self.velocity[name]

    def predict(self, image, label):
        return np.full(label.shape, 1, np.uint8), 2.0

    def params(self):
        return {name: value.copy() for name, value in self.weights.items()}

    def momentum(self):
        return {name: value.copy() for name, value in self.velocity.items()}

    def params_finite(self):
        return all(np.isfinite(value).all() for value in self.weights.values())

    def all_reduce_sum(self, values):
        return np.asarray(values, np.float64)


def _setup(tmp_path, iters=6, **overrides):
    spec = build_spec("fcn32s", width_divisor=NARROW)
    config = TrainConfig(variant="fcn32s", backend="fake", recipe=HEAVY, base_lr=1e-3,
                         iters=iters, eval_every=overrides.pop("eval_every", 3),
                         snapshot_every=overrides.pop("snapshot_every", 2),
                         width_divisor=NARROW, log_every=1, val_split="fake", **overrides)
    train, val = FakeDataset(7, "train"), FakeDataset(3, "val")
    fingerprint = id_lists_fingerprint(train.ids, val.ids)
    params = random_initial_params(spec, 0)
    return spec, config, train, val, fingerprint, params


def _run(tmp_path, trainer, spec, config, train, val, fingerprint, resume=None):
    return run_training(trainer, config, spec, train, val, val.ids, tmp_path / "run",
                        fingerprint=fingerprint, resume=resume, progress=False)


def test_loop_schedule_log_eval_records_and_snapshots(tmp_path):
    spec, config, train, val, fingerprint, params = _setup(tmp_path, plots=True)
    trainer = FakeTrainer(spec, params, solver_plan(spec, HEAVY, 1e-3))
    record = _run(tmp_path, trainer, spec, config, train, val, fingerprint)
    out = tmp_path / "run"
    assert [it for it, _ in list_snapshots(out, "fcn32s")] == [2, 4, 6]
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["iter_0000003.json",
                                                                 "iter_0000006.json"]
    rows = read_log(out / LOG_NAME)
    assert [(r["iteration"], r["phase"]) for r in rows] == [
        ("1", "train"), ("2", "train"), ("3", "train"), ("3", "val"), ("4", "train"),
        ("5", "train"), ("6", "train"), ("6", "val")]
    # The fake predicts class 1 everywhere: images 0, 3, 6 (label 1) right, void row ignored.
    evaluation = json.loads((out / "eval" / "iter_0000006.json").read_text())
    assert evaluation["metrics"]["num_pixels"] == 3 * 4 * 6
    assert evaluation["metrics"]["pixel_accuracy"] == pytest.approx(1 / 3)
    assert record["iterations"] == 6 and record["best"]["iteration"] == 3
    # Samples follow the REF sampler; dropout seeds follow (seed, rank, iteration, image).
    sampler = Sampler(7, 1337)
    assert [label for label, _ in trainer.seen] == [1 + sampler.next() % 3 for _ in range(6)]
    assert [seed for _, seed in trainer.seen] == [dropout_seed(1337, 0, it, 0) for it in range(6)]
    assert (out / "curves.png").stat().st_size > 1000
    weights, _ = load_archive(SnapshotPaths.at(out, "fcn32s", 6).weights, spec)
    np.testing.assert_array_equal(weights["fc7.weight"], trainer.weights["fc7.weight"])


def test_nan_loss_stops_and_keeps_the_last_good_snapshot(tmp_path):
    spec, config, train, val, fingerprint, params = _setup(tmp_path)
    trainer = FakeTrainer(spec, params, solver_plan(spec, HEAVY, 1e-3), events={4: "nan"})
    with pytest.raises(TrainingDiverged, match=r"loss became nan at iteration 5 .*"
                                               r"fcn32s_iter_0000004\.safetensors"):
        _run(tmp_path, trainer, spec, config, train, val, fingerprint)
    out = tmp_path / "run" / "snapshots"
    assert [it for it, _ in list_snapshots(tmp_path / "run", "fcn32s")] == [2, 4]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    assert trainer.velocity["fc7.weight"].flat[0] == 4  # the NaN step was not applied


def test_nonfinite_weights_are_never_snapshotted(tmp_path):
    spec, config, train, val, fingerprint, params = _setup(tmp_path)
    trainer = FakeTrainer(spec, params, solver_plan(spec, HEAVY, 1e-3))
    trainer.weights["fc6.weight"][0, 0, 0, 0] = np.inf
    with pytest.raises(TrainingDiverged, match="weights became NaN/inf by iteration 2"):
        _run(tmp_path, trainer, spec, config, train, val, fingerprint)
    assert list_snapshots(tmp_path / "run", "fcn32s") == []


def test_sigint_snapshots_at_the_update_boundary_then_resume_is_exact(tmp_path):
    spec, config, train, val, fingerprint, params = _setup(tmp_path, snapshot_every=100)
    plan = solver_plan(spec, HEAVY, 1e-3)
    interrupted = FakeTrainer(spec, params, plan, events={2: "sigint"})
    with pytest.raises(TrainingInterrupted, match="interrupted at iteration 3") as caught:
        _run(tmp_path, interrupted, spec, config, train, val, fingerprint)
    assert caught.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert [it for it, _ in list_snapshots(tmp_path / "run", "fcn32s")] == [3]

    resume = load_resume_state(tmp_path / "run", config, spec, fingerprint, world_size=1)
    assert resume.iteration == 3
    resumed = FakeTrainer(spec, resume.params, plan)
    resumed.velocity = resume.momentum
    _run(tmp_path, resumed, spec, config, train, val, fingerprint, resume=resume)

    straight = FakeTrainer(spec, params, plan)
    run_training(straight, config, spec, train, val, val.ids, tmp_path / "straight",
                 fingerprint=fingerprint, progress=False)
    assert interrupted.seen + resumed.seen == straight.seen  # same samples, same dropout seeds
    for name in straight.weights:
        np.testing.assert_array_equal(resumed.weights[name], straight.weights[name])
    # The log was cut back to the snapshot and continued: no duplicated iterations.
    iterations = [(r["iteration"], r["phase"]) for r in read_log(tmp_path / "run" / LOG_NAME)]
    assert len(iterations) == len(set(iterations))


def test_resume_refuses_changed_settings(tmp_path):
    spec, config, train, val, fingerprint, params = _setup(tmp_path, iters=2)
    trainer = FakeTrainer(spec, params, solver_plan(spec, HEAVY, 1e-3))
    _run(tmp_path, trainer, spec, config, train, val, fingerprint)
    changed = dataclasses.replace(config, seed=1, base_lr=2e-3)
    with pytest.raises(FcnBenchError, match=r"base_lr 0\.001 -> 0\.002; seed 1337 -> 1"):
        load_resume_state(tmp_path / "run", changed, spec, fingerprint, world_size=1)
    with pytest.raises(FcnBenchError, match="id lists"):
        load_resume_state(tmp_path / "run", config, spec, "other", world_size=1)
    # A corrupted weights file is caught by the hash in the solver state.
    weights = SnapshotPaths.at(tmp_path / "run", "fcn32s", 2).weights
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(WeightsError, match="does not match the hash"):
        load_resume_state(tmp_path / "run", config, spec, fingerprint, world_size=1)


def test_keep_snapshots_prunes_old_ones_but_not_the_best(tmp_path):
    spec, config, train, val, fingerprint, params = _setup(
        tmp_path, iters=8, eval_every=2, snapshot_every=2, keep_snapshots=1)
    trainer = FakeTrainer(spec, params, solver_plan(spec, HEAVY, 1e-3))
    record = _run(tmp_path, trainer, spec, config, train, val, fingerprint)
    best = record["best"]["iteration"]  # constant predictions: the first evaluation stays best
    assert [it for it, _ in list_snapshots(tmp_path / "run", "fcn32s")] == sorted({best, 8})
