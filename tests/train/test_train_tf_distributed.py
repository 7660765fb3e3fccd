"""TensorFlow data-parallel training: two CPU workers (MultiWorkerMirroredStrategy over TF_CONFIG
on 127.0.0.1, started by `python -m bench.core.distributed --workers 2`) end with the weights of one
process that accumulates the same two images per update and halves the sum (Caffe batch 2)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from safetensors.numpy import load_file  # noqa: E402

from backends.tensorflow.train import TensorflowTrainer  # noqa: E402
from bench.data.voc import SBDDataset, sbd_dir  # noqa: E402
from bench.model.spec import build_spec  # noqa: E402
from bench.train.init_weights import random_initial_params  # noqa: E402
from bench.train.plan import solver_plan  # noqa: E402
from bench.train.recipes import HEAVY  # noqa: E402
from bench.train.sampler import DEFAULT_SEED, Sampler, dropout_seed  # noqa: E402
from bench.train.snapshots import SnapshotPaths  # noqa: E402
from tests.train.test_train import NARROW, make_tiny_data  # noqa: E402

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
UPDATES, LR = 2, 1e-6


def _reference(data: Path, ranks: list[int]) -> dict[str, dict[str, np.ndarray]]:
    """One process: per update, the images ranks `ranks` would draw (seed + rank), gradients
    summed then divided by len(ranks) (iter_size), the same dropout seeds as those ranks."""
    spec = build_spec("fcn32s", width_divisor=NARROW)
    recipe = dataclasses.replace(HEAVY, iter_size=len(ranks))
    trainer = TensorflowTrainer(spec, random_initial_params(spec, DEFAULT_SEED),
                                solver_plan(spec, recipe, LR), recipe, device="cpu", threads=1)
    dataset = SBDDataset(sbd_dir(data), "train")
    samplers = {rank: Sampler(len(dataset.ids), DEFAULT_SEED, rank) for rank in ranks}
    for iteration in range(UPDATES):
        for index, rank in enumerate(ranks):
            sample = dataset.load(dataset.ids[samplers[rank].next()])
            trainer.forward_backward(sample.image, sample.label,
                                     dropout_seed(DEFAULT_SEED, rank, iteration, 0),
                                     last_of_batch=index == len(ranks) - 1)
        trainer.update()
    return {"weights": trainer.params(), "solver": trainer.momentum()}


def test_two_workers_average_gradients_like_one_process_with_batch_two(tmp_path):
    data = make_tiny_data(tmp_path / "data")
    out = tmp_path / "workers"
    command = [sys.executable, "-m", "bench.core.distributed", "--workers", "2",
               str(ROOT / "cli.py"), "train", "--variant", "fcn32s", "--backend", "tf",
               "--device", "cpu", "--data-root", str(data), "--init", "random", "--out",
               str(out), "--iters", str(UPDATES), "--eval-every", str(UPDATES),
               "--snapshot-every", str(UPDATES), "--val-split", "trainval", "--lr", str(LR),
               "--width-divisor", str(NARROW), "--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    record = json.loads((out / "train_record.json").read_text())
    assert record["world_size"] == 2 and record["images_seen_this_session"] == 2 * UPDATES
    assert record["environment"]["distributed_backend"] == "MultiWorkerMirroredStrategy"
    evaluation = json.loads((out / "eval" / f"iter_{UPDATES:07d}.json").read_text())
    assert evaluation["num_images"] == 4 and evaluation["world_size"] == 2
    assert result.stdout.count("done:") == 1  # only rank 0 reports

    expected = _reference(data, [0, 1])
    alone = _reference(data, [0])
    paths = SnapshotPaths.at(out, "fcn32s", UPDATES)
    moved_apart = False
    for which in ("weights", "solver"):
        got = load_file(getattr(paths, which))
        for name, value in expected[which].items():
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-9,
                                       err_msg=f"{which} {name}")
            moved_apart |= not np.allclose(alone[which][name], value, rtol=1e-3, atol=1e-9)
    # The second worker's images mattered: rank 0 alone would have ended elsewhere.
    assert moved_apart
