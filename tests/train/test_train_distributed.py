"""Data-parallel training: `torchrun --nproc_per_node 2` (gloo, CPU) shards validation across
ranks and sums the confusion matrices; the result equals one process scoring the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from bench.train.snapshots import SnapshotPaths
from tests.train.test_train import NARROW, make_tiny_data, train_cli

pytestmark = pytest.mark.torch
ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_validate_like_one(tmp_path):
    data = make_tiny_data(tmp_path / "data")
    ddp = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(ROOT / "cli.py"), "train", "--variant", "fcn32s",
               "--backend", "torch", "--device", "cpu", "--data-root", str(data), "--init",
               "random", "--out", str(ddp), "--iters", "2", "--eval-every", "2",
               "--snapshot-every", "2", "--val-split", "trainval", "--lr", "1e-7",
               "--width-divisor", str(NARROW), "--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    record = json.loads((ddp / "train_record.json").read_text())
    # Each update averaged one image per rank (rank r samples with seed + r).
    assert record["world_size"] == 2 and record["images_seen_this_session"] == 4
    assert record["environment"]["distributed_backend"] == "gloo"
    sharded = json.loads((ddp / "eval" / "iter_0000002.json").read_text())
    assert sharded["num_images"] == 4 and sharded["world_size"] == 2

    # One process scores the snapshot rank 0 wrote (--iters 0: evaluate the init only).
    snapshot = SnapshotPaths.at(ddp, "fcn32s", 2).weights
    train_cli("--variant", "fcn32s", "--backend", "torch", "--device", "cpu", "--data-root",
              str(data), "--init", str(snapshot), "--out", str(tmp_path / "single"), "--iters",
              "0", "--val-split", "trainval")
    single = json.loads((tmp_path / "single" / "eval" / "iter_0000000.json").read_text())
    assert single["world_size"] == 1
    assert sharded["metrics"]["confusion_matrix"] == single["metrics"]["confusion_matrix"]
    assert sharded["loss_per_image"] == pytest.approx(single["loss_per_image"], rel=1e-6)
