"""Training logic without a framework: recipes, solver plan, sampler, surgery, snapshots, the loop.

The loop is driven by a numpy stand-in for a backend trainer, so schedules, NaN stops, Ctrl-C and
resume bookkeeping are tested in milliseconds. The last section holds the checks that
tests/train/test_train_torch.py and tests/train/test_train_tf.py run against each backend (written
once).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.core.errors import FcnBenchError, WeightsError
from bench.data.voc import Sample, resolve_split
from bench.evaluation.metrics import ConfusionMatrix
from bench.model.init import bilinear_upsample_weight
from bench.model.spec import VARIANTS, Conv, FcnSpec, Upsample, build_spec
from bench.train.loop import (
    CVPR,
    HEAVY,
    LOG_NAME,
    RANDOM_INPUT_SCALE,
    Recipe,
    Sampler,
    SnapshotPaths,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    dropout_seed,
    id_lists_fingerprint,
    initial_params,
    list_snapshots,
    load_init,
    load_resume_state,
    random_initial_params,
    read_log,
    run_training,
    solver_plan,
    write_curves,
)
from bench.weights.archive import load_archive, save_archive

NARROW = 16  # test-only width: channels // 16

# ----------------------------------------------------------------------------------------------
# Recipes and the per-tensor solver plan


def test_heavy_recipe_is_the_reference_solver():
    voc = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
    assert {k: HEAVY.base_lr[k] for k in voc} == {"fcn32s": 1e-10, "fcn16s": 1e-12,
                                                  "fcn8s": 1e-14, "fcn8s-atonce": 1e-10}
    assert (HEAVY.momentum, HEAVY.weight_decay, HEAVY.iter_size) == (0.99, 5e-4, 1)
    assert HEAVY.loss_normalization == "sum"
    assert {k: HEAVY.max_iter[k] for k in voc} == {"fcn32s": 100_000, "fcn16s": 100_000,
                                                   "fcn8s": 100_000, "fcn8s-atonce": 300_000}
    assert (HEAVY.eval_every, HEAVY.snapshot_every) == (4000, 4000)
    assert not HEAVY.learned_upsampling


def test_cvpr_recipe_is_batch_20_momentum_09_normalized():
    assert (CVPR.momentum, CVPR.iter_size, CVPR.loss_normalization) == (0.9, 20, "valid")
    # 1e-4 for VGG16, lowered 100x per skip stage (CVPR §4.2).
    assert CVPR.base_lr["fcn32s"] == 1e-4
    assert CVPR.base_lr["fcn16s"] == pytest.approx(1e-6)
    assert CVPR.base_lr["fcn8s"] == pytest.approx(1e-8)


@pytest.mark.parametrize("variant", VARIANTS)
def test_heavy_plan_doubles_bias_lr_decays_weights_only_and_freezes_upsampling(variant):
    spec = build_spec(variant)
    base = HEAVY.base_lr[variant]
    plan = {hyper.name: hyper for hyper in solver_plan(spec, HEAVY, base)}
    for param in spec.parameters():
        if param.role in ("upsample", "scale"):
            assert param.name not in plan  # lr_mult 0: never touched
        elif param.role == "bias":
            assert (plan[param.name].lr, plan[param.name].decay) == (2 * base, 0.0)
        else:
            assert (plan[param.name].lr, plan[param.name].decay) == (base, 5e-4)
    convs = [layer for layer in spec.layers if isinstance(layer, Conv)]
    assert len(plan) == 2 * len(convs)


def test_cvpr_plan_learns_intermediate_upsampling_only():
    spec = build_spec("fcn8s")
    plan = {hyper.name: hyper for hyper in solver_plan(spec, CVPR, 1e-8)}
    assert (plan["upscore2.weight"].lr, plan["upscore2.weight"].decay) == (1e-8, 5e-4)
    assert "upscore_pool4.weight" in plan
    assert "upscore8.weight" not in plan  # the final deconv stays fixed bilinear


# ----------------------------------------------------------------------------------------------
# Randomness


def test_sampler_draws_refs_python_random_sequence():
    # REF voc_layers.SBDDSegDataLayer: random.seed(1337); random.randint(0, n - 1) per image.
    random.seed(1337)
    reference = [random.randint(0, 8497) for _ in range(500)]
    sampler = Sampler(8498, 1337)
    assert [sampler.next() for _ in range(500)] == reference


def test_sampler_replay_reproduces_the_saved_state_and_ranks_differ():
    sampler = Sampler(50, 7)
    for _ in range(123):
        sampler.next()
    replayed = Sampler(50, 7)
    replayed.fast_forward(123)
    assert replayed.matches(json.loads(json.dumps(sampler.state())))
    assert replayed.next() == sampler.next()
    twin = sampler.clone()
    assert [twin.next() for _ in range(5)] == [sampler.next() for _ in range(5)]
    rank0, rank1 = Sampler(1000, 7, rank=0), Sampler(1000, 7, rank=1)
    assert [rank0.next() for _ in range(20)] != [rank1.next() for _ in range(20)]


def test_dropout_seed_depends_on_every_coordinate_only():
    base = dropout_seed(1337, 0, 10, 0)
    assert base == dropout_seed(1337, 0, 10, 0)
    others = {dropout_seed(1338, 0, 10, 0), dropout_seed(1337, 1, 10, 0),
              dropout_seed(1337, 0, 11, 0), dropout_seed(1337, 0, 10, 1)}
    assert base not in others and len(others) == 4
    assert 0 <= base < 2**63


# ----------------------------------------------------------------------------------------------
# Initialisation surgery


def _trunk(spec, seed=0):
    """A VGG16-like trunk (what `convert` produces from the caffemodel), narrow, plus fc8."""
    full = random_initial_params(spec, seed)
    trunk = {name: value for name, value in full.items()
             if name.split(".")[0].startswith(("conv", "fc"))}
    trunk["fc8.weight"] = np.ones((10, 4), np.float32)  # ignored, like Caffe's copy_from
    return trunk


def test_vgg16_surgery_zero_scores_bilinear_upsampling_copied_trunk():
    spec = build_spec("fcn8s-atonce", width_divisor=NARROW)
    trunk = _trunk(spec)
    params, unused = initial_params(spec, trunk, "vgg16", "trunk.safetensors")
    assert unused == ["fc8.weight"]
    for layer in spec.layers:
        if isinstance(layer, Conv) and layer.zero_init:
            assert not params[f"{layer.name}.weight"].any()
            assert not params[f"{layer.name}.bias"].any()
        elif isinstance(layer, Conv):
            np.testing.assert_array_equal(params[f"{layer.name}.weight"],
                                          trunk[f"{layer.name}.weight"])
        elif isinstance(layer, Upsample):
            np.testing.assert_array_equal(params[f"{layer.name}.weight"],
                                          bilinear_upsample_weight(layer.channels, layer.kernel))
    assert np.allclose(params["scale_pool4.weight"], 0.01)
    assert np.allclose(params["scale_pool3.weight"], 1e-4)


def test_staged_fcn16s_copies_score_fr_from_fcn32s_and_zeroes_score_pool4():
    source_spec = build_spec("fcn32s", width_divisor=NARROW)
    source = random_initial_params(source_spec, 3)
    source["score_fr.weight"] += 1.0  # a trained scorer, not the surgery's zeros
    spec = build_spec("fcn16s", width_divisor=NARROW)
    params, unused = initial_params(spec, source, "fcn32s", "fcn32s.safetensors")
    np.testing.assert_array_equal(params["score_fr.weight"], source["score_fr.weight"])
    assert not params["score_pool4.weight"].any()
    assert unused == ["upscore.weight"]


def test_cvpr_staging_keeps_a_learned_upscore2_and_resets_fixed_ones():
    source_spec = build_spec("fcn16s", width_divisor=NARROW)
    source = random_initial_params(source_spec, 3)
    source["upscore2.weight"] = source["upscore2.weight"] + 0.5  # learned under cvpr
    source["upscore16.weight"] = source["upscore16.weight"] + 0.5
    spec = build_spec("fcn8s", width_divisor=NARROW)
    cvpr, _ = initial_params(spec, source, "fcn16s", "x", CVPR.learned_upsampling)
    heavy, _ = initial_params(spec, source, "fcn16s", "x", HEAVY.learned_upsampling)
    np.testing.assert_array_equal(cvpr["upscore2.weight"], source["upscore2.weight"])
    np.testing.assert_array_equal(heavy["upscore2.weight"], bilinear_upsample_weight(21, 4))


def test_missing_trunk_tensors_are_all_listed():
    spec = build_spec("fcn32s", width_divisor=NARROW)
    trunk = _trunk(spec)
    del trunk["fc7.weight"], trunk["conv3_2.bias"]
    with pytest.raises(WeightsError, match=r"missing conv3_2\.bias, fc7\.weight"):
        initial_params(spec, trunk, "vgg16", "trunk.safetensors")


def _write(path: Path, variant: str, params) -> Path:
    return save_archive(path, params, {"origin": "test", "kind": "trained",
                                       "variant": variant})


def test_load_init_refuses_another_variants_archive(tmp_path):
    fcn8s = build_spec("fcn8s", width_divisor=NARROW)
    path = _write(tmp_path / "fcn8s.safetensors", "fcn8s", random_initial_params(fcn8s, 0))
    with pytest.raises(WeightsError, match="is a fcn8s archive; fcn16s training starts from a "
                                           "fcn32s archive"):
        load_init(build_spec("fcn16s", width_divisor=NARROW), str(path), 0)


def test_load_init_reads_a_bare_vgg16_trunk_and_a_staged_snapshot(tmp_path):
    spec32 = build_spec("fcn32s", width_divisor=NARROW)
    trunk_path = tmp_path / "vgg16.safetensors"
    from safetensors.numpy import save_file

    save_file(_trunk(spec32), str(trunk_path))
    params, info = load_init(spec32, str(trunk_path), 0)
    assert info["init_kind"] == "vgg16" and info["init_unused_tensors"] == ["fc8.weight"]
    snapshot = _write(tmp_path / "fcn32s.safetensors", "fcn32s", params)
    params16, info16 = load_init(build_spec("fcn16s", width_divisor=NARROW), str(snapshot), 0)
    assert info16["init_kind"] == "fcn32s"
    np.testing.assert_array_equal(params16["fc7.weight"], params["fc7.weight"])


def test_random_init_is_scaled_for_unit_inputs():
    spec = build_spec("fcn32s", width_divisor=NARROW)
    from bench.model.init import random_params

    np.testing.assert_allclose(random_initial_params(spec, 0)["conv1_1.weight"] *
                               RANDOM_INPUT_SCALE, random_params(spec, 0)["conv1_1.weight"],
                               rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# The loop, driven by a numpy stand-in for a backend


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


def test_curves_png_from_a_log(tmp_path):
    log = tmp_path / LOG_NAME
    log.write_text("iteration,phase,images,loss,pixel_accuracy,mean_accuracy,mean_iou,fw_iou,"
                   "lr,elapsed_s,images_per_s\n1,train,1,5.0,,,,,1e-10,1.0,2.0\n"
                   "2,val,3,4.0,0.5,0.4,0.3,0.45,1e-10,2.0,\n")
    write_curves(log, tmp_path / "curves.png", "test")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


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


def test_init_archive_of_another_width_names_the_option(tmp_path):
    """A narrow archive given to a full-width run says which --width-divisor it needs."""
    from bench.train.loop import load_init
    from bench.weights.convert import convert_random

    narrow = tmp_path / "narrow.safetensors"
    convert_random(narrow, "fcn32s", 0, width_divisor=8)
    with pytest.raises(FcnBenchError, match="--width-divisor 8"):
        load_init(build_spec("fcn32s"), str(narrow), 0)
    with pytest.raises(FcnBenchError, match="without --width-divisor"):
        full = tmp_path / "full.safetensors"
        convert_random(full, "fcn32s", 0, width_divisor=1)
        load_init(build_spec("fcn32s", width_divisor=8), str(full), 0)
