"""Sharded evaluation: `torchrun --nproc_per_node 2 cli.py reproduce` splits the images
round-robin and sums the confusion matrices; the result equals one process exactly.

The loop itself is checked in-process with a numpy backend (each rank's images, exact sums,
per-rank resume); the end-to-end test runs two CPU processes over gloo on generated data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.core.distributed import Shard
from bench.core.errors import UsageError
from bench.data.synthetic import make_voc
from bench.data.voc import resolve_split
from bench.evaluation.checkpoint import Checkpoint
from bench.evaluation.metrics import ConfusionMatrix
from bench.evaluation.runner import run_evaluation
from bench.model.init import random_params
from bench.model.spec import build_spec
from bench.weights.archive import archive_metadata, save_archive
from tests.evaluation.test_runner import NumpyBackend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def _template(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded_voc")
    make_voc(root / "data", num_images=7, seed=5)  # odd: the shards differ in size
    return root


@pytest.fixture
def dataset(_template, tmp_path):
    shutil.copytree(_template, tmp_path, dirs_exist_ok=True)
    return resolve_split(tmp_path / "data", "trainval")


class RecordingBackend(NumpyBackend):
    def __init__(self):
        super().__init__(seed=2)
        self.seen: list[np.ndarray] = []

    def predict_labels(self, images):
        self.seen.append(images[0, 0, 0, 0])
        return super().predict_labels(images)


def _local(rank: int, world_size: int) -> Shard:
    """A shard whose 'all-reduce' is the identity: the rank's own partial matrix comes back."""
    return Shard(rank, world_size, lambda values: np.asarray(values, np.float64))


def test_shards_score_each_image_once_and_sum_to_one_process(dataset):
    whole = run_evaluation(dataset, NumpyBackend(seed=2), progress=False)
    partial = ConfusionMatrix()
    scored = 0
    for rank in range(3):
        backend = RecordingBackend()
        result = run_evaluation(dataset, backend, progress=False, shard=_local(rank, 3))
        assert len(backend.seen) == len(dataset.ids[rank::3])  # round-robin by index
        assert result.num_images == len(dataset.ids) and result.world_size == 3
        partial.merge(result.confusion)
        scored += len(backend.seen)
    assert scored == len(dataset.ids)
    assert partial == whole.confusion


def test_the_returned_matrix_is_the_all_reduced_one(dataset):
    sent = []

    def all_reduce_sum(values):
        sent.append(np.asarray(values).copy())
        return np.asarray(values, np.float64) * 2  # as if an identical peer added its share

    result = run_evaluation(dataset, NumpyBackend(seed=2), progress=False,
                            shard=Shard(0, 2, all_reduce_sum))
    assert len(sent) == 1 and sent[0].dtype == np.float64
    assert np.array_equal(result.confusion.matrix.ravel(), sent[0] * 2)


def test_a_rank_resumes_its_own_shard_exactly(dataset, tmp_path):
    shard = _local(1, 2)
    checkpoint = Checkpoint(tmp_path / "rank1.json", {"rank": 1, "world_size": 2}, every=1)
    straight = run_evaluation(dataset, NumpyBackend(seed=2), progress=False, shard=shard)

    def stop(done, image_id):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(dataset, NumpyBackend(seed=2), progress=False, shard=shard,
                       checkpoint=checkpoint, on_image=stop)
    saved = json.loads(checkpoint.path.read_text())
    assert saved["ids_done"] == dataset.ids[1::2][:2]
    resumed = run_evaluation(dataset, NumpyBackend(seed=2), progress=False, shard=shard,
                             checkpoint=checkpoint, resume=True)
    assert resumed.resumed_from == 2 and resumed.confusion == straight.confusion


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(UsageError, match="rank 2 is outside a world of 2"):
        Shard(2, 2, lambda values: values)


@pytest.mark.torch
def test_torchrun_two_processes_equal_one(_template, tmp_path):
    pytest.importorskip("torch")
    shutil.copytree(_template, tmp_path, dirs_exist_ok=True)
    spec = build_spec("fcn32s", width_divisor=16)
    weights = tmp_path / "fcn32s.safetensors"
    save_archive(weights, random_params(spec, 0),
                 archive_metadata(spec, kind="random", origin="random:seed=0"))
    common = ["reproduce", "--variant", "fcn32s", "--backend", "torch", "--weights",
              str(weights), "--data-root", str(tmp_path / "data"), "--split", "trainval",
              "--device", "cpu", "--threads", "1", "--no-progress", "--checkpoint-every", "1",
              "--keep-checkpoint"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FCN_BENCH_CACHE": str(tmp_path / "cache")}
    env.pop("FCN_BENCH_DATA", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(ROOT / "cli.py"), *common, "--output",
               str(tmp_path / "sharded.json")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    sharded = json.loads((tmp_path / "sharded.json").read_text())
    assert sharded["world_size"] == 2
    assert result.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    checkpoints = sorted(p.name for p in (tmp_path / "cache" / "checkpoints").iterdir())
    assert [re.search(r"rank\d+-of-\d+", name)[0] for name in checkpoints] == [
        "rank0-of-2", "rank1-of-2"]
    # --resume finds each rank's finished shard (4 + 3 images) and scores nothing again.
    command[-1] = str(tmp_path / "resumed.json")
    result = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert resumed["rows"][0]["resumed_from"] == 4  # rank 0's shard: images 0, 2, 4, 6
    assert (resumed["rows"][0]["metrics"]["confusion_matrix"]
            == sharded["rows"][0]["metrics"]["confusion_matrix"])

    single = CliRunner(env={"FCN_BENCH_CACHE": str(tmp_path / "cache1")}).invoke(
        cli, [*common, "--output", str(tmp_path / "single.json")])
    assert single.exit_code == 0, single.output
    one = json.loads((tmp_path / "single.json").read_text())
    assert one["world_size"] == 1
    (row,), (one_row,) = sharded["rows"], one["rows"]
    assert row["metrics"]["num_images"] == one_row["metrics"]["num_images"] == 7
    assert row["metrics"]["confusion_matrix"] == one_row["metrics"]["confusion_matrix"]
    assert np.asarray(row["metrics"]["confusion_matrix"]).sum() > 0
