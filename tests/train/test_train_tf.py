"""TensorFlow training: the explicit Caffe step, learning on generated data, exact resume,
and momentum buffers crossing the boundary in canonical layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from backends.tensorflow.model import FcnModule  # noqa: E402
from backends.tensorflow.train import TensorflowTrainer, summed_pixel_loss  # noqa: E402
from bench.core.errors import FcnBenchError  # noqa: E402
from bench.model.init import random_params  # noqa: E402
from bench.model.spec import build_spec  # noqa: E402
from bench.train.plan import solver_plan  # noqa: E402
from bench.train.recipes import CVPR, HEAVY  # noqa: E402
from tests.train.test_train import (  # noqa: E402
    NARROW,
    caffe_softmax_loss,
    check_caffe_step,
    check_learns,
    check_nondeterministic_is_recorded,
    check_resume_is_exact,
    loss_case,
    make_tiny_data,
    tiny_image,
)

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("data"))


def _reference_grads(spec, params, recipe, pairs, seeds):
    """Gradients of the recipe's loss from an independent tape (same stateless dropout seeds)."""
    model = FcnModule(spec)
    model.load_canonical(params)
    names = [p.name for p in spec.parameters()]
    variables = [model.params[name] for name in names]
    total = [tf.zeros_like(v) for v in variables]
    for (image, label), seed in zip(pairs, seeds, strict=True):
        model.reseed_dropout(seed)
        with tf.GradientTape() as tape:
            tape.watch(variables)
            scores = model(tf.constant(image.transpose(1, 2, 0)[None]), training=True)
            loss = summed_pixel_loss(scores, tf.constant(label.astype(np.int32)[None]),
                                     recipe.loss_normalization == "valid")
        total = [t + g for t, g in zip(total, tape.gradient(loss, variables), strict=True)]
    from backends.tensorflow.model import from_tf_layout

    layouts = {p.name: p.layout for p in spec.parameters()}
    return {name: from_tf_layout(g.numpy(), layouts[name])
            for name, g in zip(names, total, strict=True)}


@pytest.mark.parametrize(("variant", "recipe"), [
    ("fcn8s-atonce", HEAVY),                                   # frozen upsampling and scales
    ("fcn8s", dataclasses.replace(CVPR, iter_size=2)),         # accumulation, learned upscore2
])
def test_one_update_is_the_caffe_step(variant, recipe):
    spec = build_spec(variant, width_divisor=NARROW)
    params = random_params(spec, 1)  # score layers non-zero: every tensor gets a gradient
    base_lr = 1e-4
    plan = solver_plan(spec, recipe, base_lr)
    trainer = TensorflowTrainer(spec, params, plan, recipe, device="cpu")
    rng = np.random.default_rng(0)
    # Random momentum in canonical layout: also checks the HWIO <-> OIHW/IOHW transposes.
    velocity = {h.name: rng.normal(0, 1e-3, params[h.name].shape).astype(np.float32)
                for h in plan}
    trainer.load_momentum(velocity)
    pairs = [tiny_image(seed) for seed in range(recipe.iter_size)]
    seeds = [1000 + index for index in range(recipe.iter_size)]
    grads = _reference_grads(spec, params, recipe, pairs, seeds)
    for index, ((image, label), seed) in enumerate(zip(pairs, seeds, strict=True)):
        trainer.forward_backward(image, label, seed, index == recipe.iter_size - 1)
    trainer.update()
    check_caffe_step(spec, recipe, base_lr, params, velocity, grads, trainer.params(),
                     trainer.momentum())


def test_normalized_loss_divides_by_non_void_pixels():
    scores = tf.random.normal([1, 4, 5, 21])
    labels = np.random.default_rng(0).integers(0, 21, (1, 4, 5)).astype(np.int32)
    labels[0, 0] = 255
    summed = float(summed_pixel_loss(scores, tf.constant(labels), normalize=False))
    assert float(summed_pixel_loss(scores, tf.constant(labels), normalize=True)) == \
        pytest.approx(summed / 15)


def test_short_run_learns_generated_data(tiny_data, tmp_path):
    check_learns("tensorflow", tiny_data, tmp_path / "run")


def test_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    check_resume_is_exact("tensorflow", tiny_data, tmp_path)


@pytest.mark.parametrize("normalize", [False, True])
def test_loss_is_caffe_softmax_with_loss(normalize):
    """The heavy recipe's learning rates assume the SUM over non-void pixels
    (docs/training_recipes.md, Losses)."""
    scores, labels = loss_case()
    loss = summed_pixel_loss(tf.constant(scores.transpose(0, 2, 3, 1)),
                             tf.constant(labels.astype(np.int32)), normalize)
    expected = caffe_softmax_loss(scores, labels, normalize)
    assert np.isclose(float(loss), expected, rtol=1e-5)
    if not normalize:
        assert expected > 100  # 24 valid pixels with ~10-magnitude logits: a sum, not a mean


@pytest.mark.parametrize("deterministic", [True, False])
def test_op_determinism_holds_during_steps_and_is_restored(monkeypatch, deterministic):
    """TF's switch is process-wide: on for the trainer's traces and calls, the caller's after."""
    from tensorflow.python.framework import config as tf_config

    spec = build_spec("fcn32s", width_divisor=NARROW)
    trainer = TensorflowTrainer(spec, random_params(spec, 1), solver_plan(spec, HEAVY, 1e-4),
                                HEAVY, device="cpu", deterministic=deterministic)
    seen = []
    step = trainer._train_step

    def spying_step(images, labels):
        seen.append(tf_config.is_op_determinism_enabled())
        return step(images, labels)

    monkeypatch.setattr(trainer, "_train_step", spying_step)
    tf_config.disable_op_determinism()
    trainer.forward_backward(*tiny_image(0), 3, last_of_batch=True)
    trainer.update()
    assert seen == [deterministic]
    assert not tf_config.is_op_determinism_enabled()
    tf.random.normal([2])  # unseeded random ops (refused under determinism) work again
    assert trainer.environment()["deterministic"] is deterministic


def test_nondeterministic_option_is_recorded(tiny_data, tmp_path):
    check_nondeterministic_is_recorded("tensorflow", tiny_data, tmp_path / "run")


def test_op_without_deterministic_kernel_is_one_line(monkeypatch):
    spec = build_spec("fcn32s", width_divisor=NARROW)
    trainer = TensorflowTrainer(spec, random_params(spec, 1), solver_plan(spec, HEAVY, 1e-4),
                                HEAVY, device="cpu")

    def refuse(images, labels):
        raise tf.errors.UnimplementedError(None, None, "A deterministic GPU implementation of "
                                           "SomeOpGrad is not currently available.")

    monkeypatch.setattr(trainer, "_train_step", refuse)
    with pytest.raises(FcnBenchError, match=r"no deterministic implementation in tensorflow .*"
                       r"SomeOpGrad.*--nondeterministic"):
        trainer.forward_backward(*tiny_image(0), 3, last_of_batch=True)
