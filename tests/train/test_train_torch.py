"""PyTorch training: the explicit Caffe step, learning on generated data, exact resume, NaN stop."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from backends.torch import device as torch_devices  # noqa: E402
from backends.torch.model import FcnModule  # noqa: E402
from backends.torch.train import TorchTrainer, summed_pixel_loss  # noqa: E402
from bench.cli.app import cli  # noqa: E402
from bench.model.init import random_params  # noqa: E402
from bench.model.spec import build_spec  # noqa: E402
from bench.train.plan import solver_plan  # noqa: E402
from bench.train.recipes import CVPR, HEAVY  # noqa: E402
from bench.train.snapshots import SnapshotPaths, list_snapshots  # noqa: E402
from bench.weights.archive import load_archive  # noqa: E402
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

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets run fastest on one thread here; restore the process-wide setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("data"))


def _reference_grads(spec, params, recipe, images, seeds):
    """Gradients of the recipe's loss from an independent autograd pass (same dropout masks)."""
    module = FcnModule(spec)
    module.load_canonical(params)
    module.requires_grad_(True)  # every tensor; the check decides which ones may move
    module.train()
    for image, label, seed in zip(images[0], images[1], seeds, strict=True):
        torch.manual_seed(seed)
        scores = module(torch.from_numpy(image)[None])
        labels = torch.from_numpy(label.astype(np.int64))[None]
        summed_pixel_loss(scores, labels, recipe.loss_normalization == "valid").backward()
    return {name: (param.grad.numpy().copy() if param.grad is not None
                   else np.zeros(tuple(param.shape), np.float32))
            for name, param in module.named_parameters()}


@pytest.mark.parametrize(("variant", "recipe"), [
    ("fcn8s-atonce", HEAVY),                                   # frozen upsampling and scales
    ("fcn8s", dataclasses.replace(CVPR, iter_size=2)),         # accumulation, learned upscore2
])
def test_one_update_is_the_caffe_step(variant, recipe):
    spec = build_spec(variant, width_divisor=NARROW)
    params = random_params(spec, 1)  # score layers non-zero: every tensor gets a gradient
    base_lr = 1e-4
    plan = solver_plan(spec, recipe, base_lr)
    trainer = TorchTrainer(spec, params, plan, recipe, device="cpu", threads=1)
    rng = np.random.default_rng(0)
    velocity = {h.name: rng.normal(0, 1e-3, params[h.name].shape).astype(np.float32)
                for h in plan}
    trainer.load_momentum(velocity)
    pairs = [tiny_image(seed) for seed in range(recipe.iter_size)]
    seeds = [1000 + index for index in range(recipe.iter_size)]
    grads = _reference_grads(spec, params, recipe, list(zip(*pairs, strict=True)), seeds)
    for index, ((image, label), seed) in enumerate(zip(pairs, seeds, strict=True)):
        trainer.forward_backward(image, label, seed, index == recipe.iter_size - 1)
    trainer.update()
    check_caffe_step(spec, recipe, base_lr, params, velocity, grads, trainer.params(),
                     trainer.momentum())


def test_normalized_loss_divides_by_non_void_pixels():
    scores = torch.randn(1, 21, 4, 5)
    labels = torch.randint(0, 21, (1, 4, 5))
    labels[0, 0] = 255
    summed = summed_pixel_loss(scores, labels, normalize=False)
    assert float(summed_pixel_loss(scores, labels, normalize=True)) == pytest.approx(
        float(summed) / 15)


def test_short_run_learns_generated_data(tiny_data, tmp_path):
    check_learns("torch", tiny_data, tmp_path / "run")


def test_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    check_resume_is_exact("torch", tiny_data, tmp_path)


def test_cli_nan_stops_and_keeps_the_last_snapshot(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "--variant", "fcn32s", "--backend", "torch", "--data-root", str(tiny_data),
        "--init", "random", "--out", str(out), "--iters", "10", "--snapshot-every", "1",
        "--val-limit", "0", "--width-divisor", str(NARROW), "--lr", "1e20"])
    assert result.exit_code == 1, result.output
    assert "error: loss became nan at iteration 2" in result.output
    assert "fcn32s_iter_0000001.safetensors" in result.output
    assert [it for it, _ in list_snapshots(out, "fcn32s")] == [1]
    # The kept snapshot is a complete, loadable archive (finite; load_archive checks).
    load_archive(SnapshotPaths.at(out, "fcn32s", 1).weights, build_spec("fcn32s",
                                                                        width_divisor=NARROW))
    assert not [p for p in (out / "snapshots").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("normalize", [False, True])
def test_loss_is_caffe_softmax_with_loss(normalize):
    """The heavy recipe's learning rates assume the SUM over non-void pixels
    (docs/training_recipes.md, Losses)."""
    scores, labels = loss_case()
    loss = summed_pixel_loss(torch.from_numpy(scores), torch.from_numpy(labels), normalize)
    expected = caffe_softmax_loss(scores, labels, normalize)
    assert np.isclose(float(loss), expected, rtol=1e-5)
    if not normalize:
        assert expected > 100  # 24 valid pixels with ~10-magnitude logits: a sum, not a mean


# ----------------------------------------------------------------------------------------------
# Determinism (exact resume on CUDA). No GPU here: what CUDA would do is checked through the ops
# a step dispatches and the flags in force while it runs.

# aten ops that torch.use_deterministic_algorithms(True) refuses on CUDA (its documented list,
# torch 2.x), by the overload-free name the dispatcher sees.
NO_DETERMINISTIC_CUDA_KERNEL = {
    "nll_loss_forward", "nll_loss2d_forward", "nll_loss_backward", "nll_loss2d_backward",
    "upsample_bilinear2d_backward", "upsample_linear1d_backward", "upsample_bicubic2d_backward",
    "adaptive_max_pool2d_backward", "adaptive_avg_pool2d_backward",
    "_adaptive_avg_pool2d_backward", "max_pool3d_with_indices_backward", "avg_pool3d_backward",
    "fractional_max_pool2d_backward", "max_unpool2d", "reflection_pad2d_backward",
    "grid_sampler_2d_backward", "cumsum", "histc", "bincount", "put_", "median",
    "_ctc_loss_backward", "embedding_bag",
}


class _OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("variant", ["fcn8s-atonce", "fcn16s"])
def test_training_step_avoids_ops_without_a_deterministic_cuda_kernel(variant):
    """Regression: F.cross_entropy dispatches nll_loss2d, which deterministic CUDA refuses."""
    spec = build_spec(variant, width_divisor=NARROW)
    trainer = TorchTrainer(spec, random_params(spec, 1), solver_plan(spec, HEAVY, 1e-4), HEAVY,
                           device="cpu", threads=1)
    image, label = tiny_image(0)
    with _OpRecorder() as recorder:
        trainer.forward_backward(image, label, 7, last_of_batch=True)
        trainer.update()
        trainer.predict(image, label)
    assert {"convolution_backward", "max_pool2d_with_indices_backward"} <= recorder.ops
    assert not recorder.ops & NO_DETERMINISTIC_CUDA_KERNEL


@pytest.mark.parametrize("deterministic", [True, False])
def test_determinism_flags_hold_during_steps_and_are_restored(monkeypatch, deterministic):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = {}
    real_resolve = torch_devices.resolve_device

    def resolve_device(requested):
        # cuBLAS reads its workspace setting when CUDA initialises, i.e. after this point.
        seen["cublas_at_device_choice"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        return real_resolve(requested)

    monkeypatch.setattr(torch_devices, "resolve_device", resolve_device)
    spec = build_spec("fcn32s", width_divisor=NARROW)
    trainer = TorchTrainer(spec, random_params(spec, 1), solver_plan(spec, HEAVY, 1e-4), HEAVY,
                           device="cpu", threads=1, deterministic=deterministic)
    forward = trainer.module.forward

    def spying_forward(images):
        seen["during"] = (torch.are_deterministic_algorithms_enabled(),
                          torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        return forward(images)

    monkeypatch.setattr(trainer.module, "forward", spying_forward)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # a caller's autotuning
    trainer.forward_backward(*tiny_image(0), 3, last_of_batch=True)
    assert seen["during"][:2] == (deterministic, deterministic)
    if deterministic:
        assert seen["during"][2] is False  # autotuning picks kernels by timing: off
        assert seen["cublas_at_device_choice"] == ":4096:8"
    else:
        assert seen["cublas_at_device_choice"] is None
    assert torch.backends.cudnn.benchmark is True  # the caller's settings are back
    assert (torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.deterministic) == before[:2]
    env = trainer.environment()
    assert env["deterministic"] is deterministic
    assert env["deterministic_algorithms"] is deterministic


def test_op_without_deterministic_kernel_is_one_line(tiny_data, tmp_path, monkeypatch):
    def refuse(self, images):
        raise RuntimeError("nll_loss2d_forward_out_cuda_template does not have a deterministic "
                           "implementation, but you set 'torch.use_deterministic_algorithms(True)'")

    monkeypatch.setattr(FcnModule, "forward", refuse)
    result = CliRunner().invoke(cli, [
        "train", "--variant", "fcn32s", "--backend", "torch", "--data-root", str(tiny_data),
        "--init", "random", "--out", str(tmp_path / "run"), "--iters", "1", "--val-limit", "0",
        "--width-divisor", str(NARROW), "--no-progress"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: nll_loss2d_forward_out_cuda_template has no deterministic")
    assert "--nondeterministic" in last and "Traceback" not in result.output


def test_nondeterministic_option_is_recorded(tiny_data, tmp_path):
    env = check_nondeterministic_is_recorded("torch", tiny_data, tmp_path / "run")
    assert env["deterministic_algorithms"] is False
