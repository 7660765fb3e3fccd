"""`train` without a framework: the command's one-line errors, the data-parallel plumbing, and the
helpers and checks shared by the other training tests.

The training logic itself is tested beside its modules: tests/train/test_recipes.py,
test_plan.py, test_sampler.py, test_init_weights.py, test_loop.py (a numpy stand-in drives the
loop) and test_log.py. The section "Shared with ..." holds the checks that
tests/train/test_train_torch.py and tests/train/test_train_tf.py run against each backend (written
once); NARROW, make_tiny_data, train_cli and background_baseline are imported by the other
training tests and tests/cli/test_walkthrough.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.data.voc import resolve_split
from bench.evaluation.metrics import ConfusionMatrix
from bench.model.spec import FcnSpec, build_spec
from bench.train.init_weights import random_initial_params
from bench.train.log import LOG_NAME, read_log
from bench.train.recipes import Recipe
from bench.train.snapshots import SnapshotPaths
from bench.weights.archive import save_archive

NARROW = 16  # test-only width: channels // 16


def _trunk(spec, seed=0):
    """A VGG16-like trunk (what `convert` produces from the caffemodel), narrow, plus fc8."""
    full = random_initial_params(spec, seed)
    trunk = {name: value for name, value in full.items()
             if name.split(".")[0].startswith(("conv", "fc"))}
    trunk["fc8.weight"] = np.ones((10, 4), np.float32)  # ignored, like Caffe's copy_from
    return trunk


def _write(path: Path, variant: str, params) -> Path:
    return save_archive(path, params, {"origin": "test", "kind": "trained",
                                       "variant": variant})


# ----------------------------------------------------------------------------------------------
# CLI errors that need no framework


def make_tiny_data(root: Path) -> Path:
    """4 generated images as SBD train and as VOC2012 trainval (validate on what is trained)."""
    from bench.data.synthetic import make_sbd, make_voc, synthetic_ids

    ids = synthetic_ids(4)
    make_voc(root, ids=ids)
    make_sbd(root, ids)
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("data"))


def _train(*args):
    return CliRunner().invoke(cli, ["train", "--width-divisor", str(NARROW), "--val-split",
                                    "trainval", *args])


def test_cli_bad_init_archive_is_one_line(tiny_data, tmp_path):
    fcn8s = build_spec("fcn8s", width_divisor=NARROW)
    wrong = _write(tmp_path / "fcn8s.safetensors", "fcn8s", random_initial_params(fcn8s, 0))
    result = _train("--variant", "fcn16s", "--data-root", str(tiny_data), "--init", str(wrong),
                    "--out", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "fcn8s.safetensors: is a fcn8s archive; fcn16s training starts from a fcn32s" in \
        result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # nothing written

    from safetensors.numpy import save_file

    spec = build_spec("fcn32s", width_divisor=NARROW)
    trunk = _trunk(spec)
    del trunk["fc6.weight"], trunk["fc6.bias"]
    save_file(trunk, str(tmp_path / "vgg16.safetensors"))
    result = _train("--variant", "fcn32s", "--data-root", str(tiny_data), "--init",
                    str(tmp_path / "vgg16.safetensors"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "missing fc6.weight, fc6.bias" in result.output


def test_cli_usage_errors(tiny_data, tmp_path):
    assert _train("--variant", "fcn32s", "--data-root", str(tiny_data)).exit_code == 2
    result = _train("--variant", "fcn32s", "--data-root", str(tiny_data), "--resume",
                    "--init", "random", "--out", str(tmp_path / "empty"))
    assert "--init is ignored" in result.output  # "the same command plus --resume" works
    assert result.exit_code == 1 and "no complete fcn32s snapshot" in result.output


# ----------------------------------------------------------------------------------------------
# Shared with tests/train/test_train_torch.py and tests/train/test_train_tf.py (imported from
# there).

WEIGHT_DECAY = 5e-4


def hand_multipliers(spec: FcnSpec, recipe: Recipe, name: str) -> tuple[float, float] | None:
    """(lr_mult, decay_mult) as the prototxts set them, or None for a frozen tensor."""
    param = next(p for p in spec.parameters() if p.name == name)
    if param.role == "weight":
        return 1.0, 1.0
    if param.role == "bias":
        return 2.0, 0.0
    if param.role == "upsample" and param.layer in recipe.learned_upsampling:
        return 1.0, 1.0
    return None  # upsampling (REF) and at-once scales: lr_mult 0


def check_caffe_step(spec: FcnSpec, recipe: Recipe, base_lr: float,
                     before: Mapping[str, np.ndarray], velocity: Mapping[str, np.ndarray],
                     grads: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray],
                     velocity_after: Mapping[str, np.ndarray]) -> None:
    """V' = m V + lr lr_mult (grad / iter_size + wd decay_mult W), W' = W - V'; frozen bitwise.

    float32 throughout, like Caffe. The backends compute the same expression in the same order,
    so agreement is to a few ulps (rtol 1e-6); any convention error (lr applied after momentum,
    decay on biases, single bias rate) is orders of magnitude larger.
    """
    momentum = np.float32(recipe.momentum)
    for param in spec.parameters():
        name = param.name
        multipliers = hand_multipliers(spec, recipe, name)
        if multipliers is None:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
            assert name not in velocity_after
            continue
        lr_mult, decay_mult = multipliers
        weights = before[name].astype(np.float32)
        grad = grads[name].astype(np.float32) / np.float32(recipe.iter_size)
        step = grad + np.float32(WEIGHT_DECAY * decay_mult) * weights
        expected_v = momentum * velocity[name] + np.float32(base_lr * lr_mult) * step
        scale = float(np.abs(expected_v).max())
        np.testing.assert_allclose(velocity_after[name], expected_v, rtol=1e-6,
                                   atol=1e-6 * scale, err_msg=name)
        np.testing.assert_allclose(after[name], weights - expected_v, rtol=1e-6,
                                   atol=1e-6 * float(np.abs(weights).max()), err_msg=name)


def tiny_image(seed: int, height: int = 9, width: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """A (3, H, W) preprocessed-looking image and an (H, W) label with some void pixels."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 50, (3, height, width)).astype(np.float32)
    label = rng.integers(0, 21, (height, width)).astype(np.uint8)
    label[rng.random((height, width)) < 0.2] = 255
    return image, label


def train_cli(*args: str) -> str:
    """Run `cli.py train` in-process (the framework is imported once per test session)."""
    result = CliRunner().invoke(cli, ["train", "--width-divisor", str(NARROW), "--no-progress",
                                      *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def background_baseline(data_root: Path, split: str) -> float:
    """Mean IU of predicting background everywhere: what a net that learned nothing scores."""
    dataset = resolve_split(data_root, split)
    matrix = ConfusionMatrix()
    for image_id in dataset.ids:
        label = dataset.load_label(image_id)
        matrix.update(label, np.zeros_like(label))
    return matrix.summary()["mean_iou"]


def check_learns(backend: str, data_root: Path, out: Path) -> None:
    """A short heavy-recipe run (momentum 0.99, summed loss, batch 1, dropout on) on 4 generated
    images lowers the loss and predicts objects, i.e. beats the all-background mean IU.

    lr 2e-7 suits this narrow random net (random_initial_params keeps activations O(1)); the
    reference 1e-10 assumes VGG16 features and 100k iterations. Over seeds 1, 2, 1337 and both
    backends 160 updates reach 19-29% mean IU against the 10.6% of all-background.
    """
    train_cli("--variant", "fcn8s", "--backend", backend, "--data-root", str(data_root),
              "--init", "random", "--out", str(out), "--lr", "2e-7", "--iters", "160",
              "--eval-every", "160", "--snapshot-every", "160", "--log-every", "20",
              "--val-split", "trainval")
    rows = read_log(out / LOG_NAME)
    losses = [float(r["loss"]) for r in rows if r["phase"] == "train"]
    assert losses[-1] < 0.5 * losses[0], losses
    evaluation = json.loads((out / "eval" / "iter_0000160.json").read_text())
    baseline = background_baseline(data_root, "trainval")
    assert evaluation["metrics"]["mean_iou"] > 1.5 * baseline, (evaluation["metrics"]["mean_iou"],
                                                                baseline)


def check_resume_is_exact(backend: str, data_root: Path, tmp: Path) -> None:
    """4 updates straight == 2 updates, stop, resume from the snapshot, 2 more: bitwise equal
    weights and momentum (same samples, dropout seeds from (seed, iteration), state on disk)."""
    common = ["--variant", "fcn16s", "--backend", backend, "--data-root", str(data_root),
              "--lr", "1e-7", "--val-limit", "0", "--snapshot-every", "2"]
    train_cli(*common, "--init", "random", "--out", str(tmp / "straight"), "--iters", "4")
    train_cli(*common, "--init", "random", "--out", str(tmp / "stopped"), "--iters", "2")
    train_cli(*common, "--resume", "--out", str(tmp / "stopped"), "--iters", "4")
    from safetensors.numpy import load_file

    for which in ("weights", "solver"):
        straight = load_file(getattr(SnapshotPaths.at(tmp / "straight", "fcn16s", 4), which))
        resumed = load_file(getattr(SnapshotPaths.at(tmp / "stopped", "fcn16s", 4), which))
        assert straight.keys() == resumed.keys()
        for name in straight:
            np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
    # ...and the run really moved: the momentum is not still zero.
    assert any(np.abs(v).max() > 0 for v in straight.values())
    # Exact on a GPU too: deterministic kernels are the default, and the record says so.
    record = json.loads((tmp / "stopped" / "train_record.json").read_text())
    assert record["config"]["deterministic"] is True
    assert record["environment"]["deterministic"] is True


def check_nondeterministic_is_recorded(backend: str, data_root: Path, out: Path) -> dict:
    """`--nondeterministic` reaches the trainer and the record (config and environment)."""
    output = train_cli("--variant", "fcn32s", "--backend", backend, "--data-root", str(data_root),
                       "--init", "random", "--out", str(out), "--iters", "1", "--val-limit",
                       "0", "--lr", "1e-7", "--nondeterministic")
    assert "NONDETERMINISTIC kernels" in output
    record = json.loads((out / "train_record.json").read_text())
    assert record["config"]["deterministic"] is False
    assert record["environment"]["deterministic"] is False
    return record["environment"]


def caffe_softmax_loss(scores_nchw: np.ndarray, labels: np.ndarray, normalize: bool) -> float:
    """Caffe SoftmaxWithLoss written out in float64, independent of both frameworks.

    Sum over pixels whose label is not 255 of -log softmax(scores)[label]; with normalize, divided
    by the number of such pixels (floored at 1, Caffe's VALID mode). scores (1, C, H, W).
    """
    logits = scores_nchw[0].astype(np.float64)
    shifted = logits - logits.max(axis=0, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))
    total, count = 0.0, 0
    for (row, col), label in np.ndenumerate(labels[0]):
        if label != 255:
            total -= log_softmax[label, row, col]
            count += 1
    return total / max(count, 1) if normalize else total


def loss_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random (1, 21, 5, 7) scores of magnitude ~10 and labels with a void border."""
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal((1, 21, 5, 7)) * 10).astype(np.float32)
    labels = rng.integers(0, 21, (1, 5, 7))
    labels[:, 0, :] = 255
    labels[:, :, -1] = 255
    return scores, labels


def test_caffe_softmax_loss_reference_itself():
    # Uniform scores: every valid pixel costs ln(21); 4 x 6 = 24 valid pixels of 35.
    labels = np.zeros((1, 5, 7), np.int64)
    labels[:, 0, :] = 255
    labels[:, :, -1] = 255
    uniform = np.zeros((1, 21, 5, 7), np.float32)
    assert np.isclose(caffe_softmax_loss(uniform, labels, False), 24 * np.log(21))
    assert np.isclose(caffe_softmax_loss(uniform, labels, True), np.log(21))


# ----------------------------------------------------------------------------------------------
# Data-parallel plumbing without a framework (bench/core/distributed.py): TF_CONFIG and the
# launcher.


def test_tf_config_names_the_worker_and_the_world():
    from bench.core.distributed import tf_config_world

    assert tf_config_world("") == (0, 1)
    config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2", "h:3"]},
              "task": {"type": "worker", "index": 2}}
    assert tf_config_world(json.dumps(config)) == (2, 3)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "TF_CONFIG is not valid"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "non-empty list"),
    ('{"cluster": {"worker": ["a:1"], "chief": ["b:2"]}, "task": {"type": "worker", '
     '"index": 0}}', "only 'worker' tasks"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "task.index 1 is not in 0..0"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": true}}',
     "task.index True"),
])
def test_bad_tf_config_is_one_usage_error(text, message):
    from bench.core.distributed import tf_config_world
    from bench.core.errors import UsageError

    with pytest.raises(UsageError, match=re.escape(message)):
        tf_config_world(text)


def test_launcher_gives_each_worker_its_tf_config(tmp_path):
    import sys

    from bench.core.distributed import launch_workers

    script = ("import json, os, pathlib; c = json.loads(os.environ['TF_CONFIG']); "
              f"pathlib.Path(r'{tmp_path}', str(c['task']['index'])).write_text("
              "json.dumps(c['cluster']['worker']))")
    assert launch_workers([sys.executable, "-c", script], 2, timeout_s=60) == 0
    first, second = (json.loads((tmp_path / name).read_text()) for name in ("0", "1"))
    assert first == second and len(set(first)) == 2
    assert all(address.startswith("127.0.0.1:") for address in first)


def test_launcher_stops_the_others_when_one_worker_fails(tmp_path):
    import sys
    import time

    from bench.core.distributed import launch_workers

    # Worker 1 fails at once; worker 0 would wait 60 s for it in a collective.
    script = ("import os, sys, time; i = os.environ['FCN_BENCH_LOCAL_RANK']; "
              "sys.exit(3) if i == '1' else time.sleep(60)")
    started = time.monotonic()
    assert launch_workers([sys.executable, "-c", script], 2, timeout_s=120) == 3
    assert time.monotonic() - started < 30


def test_launcher_usage_is_one_line(capsys):
    from bench.core.distributed import main

    assert main(["cli.py", "train"]) == 2
    assert "usage: python -m bench.core.distributed --workers N" in capsys.readouterr().err


def test_torchrun_with_the_tensorflow_backend_is_refused(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = _train("--variant", "fcn32s", "--backend", "tf", "--data-root", str(tiny_data),
                    "--init", "random", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "python -m bench.core.distributed --workers N" in result.output
