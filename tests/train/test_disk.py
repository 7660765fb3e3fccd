"""Training disk: snapshot sizes from the spec, the default retention, the refusal at start."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.model.spec import build_spec
from bench.train import disk
from bench.train.disk import plan_disk, snapshot_bytes, snapshot_iterations
from bench.train.loop import run_training
from bench.train.plan import solver_plan
from bench.train.recipes import HEAVY
from bench.train.resume import load_resume_state
from bench.train.run_config import DEFAULT_KEEP_SNAPSHOTS
from bench.train.snapshots import list_snapshots
from bench.train.stopping import TrainingInterrupted
from tests.train.test_loop import FakeTrainer, _run, _setup
from tests.train.test_train import NARROW, make_tiny_data


def _learned(spec):
    return [hyper.name for hyper in solver_plan(spec, HEAVY, 1e-10)]


def test_a_full_fcn32s_snapshot_is_weights_plus_momentum():
    spec = build_spec("fcn32s")
    size = snapshot_bytes(spec, _learned(spec))
    # 136,152,917 parameters, all but the fixed upsampling learned: ~2 x 545 MB.
    assert 1.08e9 < size < 1.1e9


def test_snapshot_schedule_matches_the_loop():
    assert snapshot_iterations(100_000, 4000) == list(range(4000, 100_001, 4000))
    assert snapshot_iterations(10, 4) == [4, 8, 10]
    assert snapshot_iterations(10, 4, start=9) == [10]  # resumed from an interrupt snapshot
    assert snapshot_iterations(8, 4, start=8) == []


def test_keeping_a_few_needs_a_fraction_of_keeping_all(tmp_path):
    spec = build_spec("fcn32s")
    args = dict(iters=100_000, snapshot_every=4000, keep=0)
    every = plan_disk(tmp_path, spec, _learned(spec), **args)
    few = plan_disk(tmp_path, spec, _learned(spec), **{**args, "keep": DEFAULT_KEEP_SNAPSHOTS})
    assert every.new_snapshots == 25 and every.needed_bytes == 25 * every.snapshot_bytes
    assert few.needed_bytes == (DEFAULT_KEEP_SNAPSHOTS + 2) * few.snapshot_bytes
    assert "needs about 27.1 GB more" in every.summary()
    resumed = plan_disk(tmp_path, spec, _learned(spec), iters=100_000, snapshot_every=4000,
                        start=96_000, keep=3, existing=4)
    assert resumed.new_snapshots == 1 and resumed.needed_bytes == resumed.snapshot_bytes


def test_train_refuses_to_start_without_the_disk_for_its_snapshots(tmp_path, monkeypatch):
    data = make_tiny_data(tmp_path / "data")
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 10_000)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "--variant", "fcn32s", "--backend", "torch", "--data-root", str(data),
        "--init", "random", "--out", str(out), "--iters", "4", "--snapshot-every", "2",
        "--val-limit", "0", "--width-divisor", str(NARROW)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "disk: 2 snapshot(s) of" in result.output
    assert f"error: {out}: the run needs about" in result.output
    assert "but only 10 kB is free" in result.output
    assert not out.exists()


def test_train_refuses_a_run_folder_holding_its_data(tmp_path):
    data = make_tiny_data(tmp_path / "data")
    result = CliRunner().invoke(cli, [
        "train", "--variant", "fcn32s", "--backend", "torch", "--data-root", str(data),
        "--init", "random", "--out", str(data / "benchmark_RELEASE"), "--iters", "1",
        "--val-limit", "0", "--width-divisor", str(NARROW)])
    assert result.exit_code == 2 and "contains the input training" in result.output


def test_default_retention_keeps_newest_and_best_and_resume_stays_exact(tmp_path):
    spec, config, train, val, fingerprint, params = _setup(tmp_path, iters=12, eval_every=2,
                                                           snapshot_every=2)
    assert config.keep_snapshots == DEFAULT_KEEP_SNAPSHOTS == 3
    plan = solver_plan(spec, HEAVY, 1e-3)
    interrupted = FakeTrainer(spec, params, plan, events={8: "sigint"})
    with pytest.raises(TrainingInterrupted, match="interrupted at iteration 9"):
        _run(tmp_path, interrupted, spec, config, train, val, fingerprint)
    # Constant predictions: the first evaluation (iteration 2) stays the best.
    assert [it for it, _ in list_snapshots(tmp_path / "run", "fcn32s")] == [2, 6, 8, 9]

    resume = load_resume_state(tmp_path / "run", config, spec, fingerprint, world_size=1)
    assert resume.iteration == 9
    resumed = FakeTrainer(spec, resume.params, plan)
    resumed.velocity = resume.momentum
    _run(tmp_path, resumed, spec, config, train, val, fingerprint, resume=resume)
    assert [it for it, _ in list_snapshots(tmp_path / "run", "fcn32s")] == [2, 9, 10, 12]

    straight = FakeTrainer(spec, params, plan)
    run_training(straight, config, spec, train, val, val.ids, tmp_path / "straight",
                 fingerprint=fingerprint, progress=False)
    for name in straight.weights:
        np.testing.assert_array_equal(resumed.weights[name], straight.weights[name])
