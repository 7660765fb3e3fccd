"""PyTorch side of `cli.py train`: the `Trainer` contract (bench/core/contracts.py) in torch.

The Caffe SGD step is written out here, not taken from torch.optim: torch's SGD applies the
learning rate after the momentum buffer, which matches Caffe only at a constant rate and gives its
buffer a different meaning; written the Caffe way, the buffers are the same numbers as the
TensorFlow trainer's and a snapshot's momentum can continue in either backend. The step and the
loss normalisation, from Caffe's sources: docs/training_recipes.md "The update and the loss
normalisation".

Launched by torchrun (WORLD_SIZE > 1) it trains data-parallel with DistributedDataParallel (gloo
on the CPU, nccl on GPUs). What that changes in the recipe: every update sees N images (one per
process, each process sampling with seed + rank) and DDP *averages* their summed-loss gradients,
at the same learning rate. That is exactly Caffe with batch N (SoftmaxWithLoss normalize=false
divides by the batch size) or iter_size N, not N consecutive batch-1 updates; the learning rate
is deliberately not scaled, so one update moves as far as one batch-1 update would on a typical
image, and 100k updates consume N x 100k images.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from backends.torch import device as devices
from backends.torch.model import FcnModule
from bench.core.contracts import RunOptions
from bench.core.errors import FcnBenchError
from bench.data.labels import VOID_LABEL
from bench.model.spec import FcnSpec
from bench.train.plan import TensorHyper, check_momentum
from bench.train.recipes import Recipe
from bench.train.run_config import require_tensorboard

FP32 = "fp32"  # training is fp32 only (TF32 off): the heavy recipe's tiny steps need it
# cuBLAS is deterministic only with a fixed workspace (torch refuses otherwise in deterministic
# mode); one of the two values NVIDIA documents. Read when cuBLAS first initialises.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def summed_pixel_loss(scores: torch.Tensor, labels: torch.Tensor,
                      normalize: bool) -> torch.Tensor:
    """Caffe SoftmaxWithLoss over non-void pixels: the sum (normalize=false, batch 1) or the sum
    divided by the number of non-void pixels (normalize=true; Caffe floors the divisor at 1);
    docs/training_recipes.md "The update and the loss normalisation".

    scores (1, C, H, W) float32, labels (1, H, W) int64 with 255 = void. Written as log_softmax
    and gather rather than F.cross_entropy: its nll_loss has no deterministic CUDA kernel, so
    deterministic training would refuse it (docs/training_determinism.md).
    """
    valid = labels != VOID_LABEL
    log_probs = F.log_softmax(scores, dim=1)
    picked = log_probs.gather(1, torch.where(valid, labels, 0).unsqueeze(1)).squeeze(1)
    loss = -torch.where(valid, picked, 0.0).sum()
    if normalize:
        loss = loss / valid.sum().clamp(min=1)
    return loss


@dataclass(frozen=True)
class Determinism:
    """The switches that make CUDA training bitwise repeatable (docs/training_determinism.md).

    On: torch.use_deterministic_algorithms(True) (an op without a deterministic kernel raises,
    turned into one line by `explain_nondeterministic`), cuDNN deterministic with autotuning off,
    and CUBLAS_WORKSPACE_CONFIG (set once, before CUDA initialises, unless the user chose one).
    Off (`--nondeterministic`): torch's defaults. The torch flags are process-wide, so `scope()`
    asserts them around each step and puts the caller's back afterwards (tests train in-process
    beside other code), the way precision_scope handles TF32.
    """

    enabled: bool

    def prepare(self) -> Determinism:
        if self.enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        return self

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        cudnn = torch.backends.cudnn
        before = (torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled(), cudnn.deterministic,
                  cudnn.benchmark)
        torch.use_deterministic_algorithms(self.enabled)
        cudnn.deterministic = self.enabled
        if self.enabled:
            cudnn.benchmark = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])
            cudnn.deterministic, cudnn.benchmark = before[2], before[3]

    def describe(self) -> dict:
        with self.scope():
            return {"deterministic": self.enabled,
                    "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                    "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                    "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                    "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def explain_nondeterministic(error: RuntimeError) -> FcnBenchError | None:
    """torch's "X does not have a deterministic implementation" as one actionable line."""
    text = str(error)
    if "deterministic" not in text:
        return None
    op = text.split(" does not have", 1)[0].strip() or "an operation"
    return FcnBenchError(f"{op} has no deterministic implementation in torch {torch.__version__} "
                         "on this device; rerun with --nondeterministic (resume is then only "
                         "approximately exact)")


class TorchTrainer:
    """One FCN being trained in PyTorch; one per process under torchrun."""

    backend = "torch"

    def __init__(self, spec: FcnSpec, params: Mapping[str, np.ndarray],
                 plan: Sequence[TensorHyper], recipe: Recipe, *, device: str = "auto",
                 threads: int | None = None, deterministic: bool = True):
        # Before anything touches CUDA: cuBLAS reads its workspace setting when it initialises.
        self.determinism = Determinism(deterministic).prepare()
        devices.configure_threads(threads)
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world_size > 1 and device != "cpu" and torch.cuda.is_available():
            torch.cuda.set_device(local_rank)  # before resolve_device picks current_device()
        self.device = devices.resolve_device(device)
        if self.world_size > 1 and not dist.is_initialized():
            # torchrun provides MASTER_ADDR/PORT, RANK and WORLD_SIZE in the environment.
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.world_size > 1 else 0

        self.spec = spec
        self.module = FcnModule(spec).to(self.device)
        self.module.load_canonical(params)
        learned = {hyper.name for hyper in plan}
        for name, param in self.module.named_parameters():
            param.requires_grad_(name in learned)
        # DDP averages gradients over processes during backward (and broadcasts rank 0's
        # parameters at construction, so every process starts identical).
        self.model: torch.nn.Module = (
            DistributedDataParallel(self.module, device_ids=[local_rank]
                                    if self.device.type == "cuda" else None)
            if self.world_size > 1 else self.module)
        self.momentum_coefficient = recipe.momentum
        self.grad_scale = 1.0 / recipe.iter_size  # Caffe divides accumulated gradients by iter_size
        self.normalize = recipe.loss_normalization == "valid"
        # (name, parameter, momentum buffer, lr * lr_mult, wd * decay_mult), in spec order.
        self._slots = [(hyper.name, self.module.get_parameter(hyper.name),
                        torch.zeros_like(self.module.get_parameter(hyper.name)),
                        hyper.lr, hyper.decay) for hyper in plan]

    # -- one image ------------------------------------------------------------------------

    def _to_device(self, image: np.ndarray | Mapping[str, np.ndarray],
                   label: np.ndarray | Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        """(1, C, H, W) input(s) and (1, H, W) int64 label(s) on the device; a multi-input
        model's inputs and a multi-head model's labels stay dicts (head order kept)."""
        def tensor(array: np.ndarray, dtype: Any) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array, dtype))[None].to(self.device)

        images = ({name: tensor(value, np.float32) for name, value in image.items()}
                  if isinstance(image, Mapping) else tensor(image, np.float32))
        labels = ({name: tensor(value, np.int64) for name, value in label.items()}
                  if isinstance(label, Mapping) else tensor(label, np.int64))
        return images, labels

    def _loss(self, scores: Any, labels: Any, normalize: bool) -> torch.Tensor:
        """One SoftmaxWithLoss per head, each of weight 1 (REF siftflow net.py), summed
        (docs/training_recipes.md "Losses")."""
        if not isinstance(scores, Mapping):
            return summed_pixel_loss(scores, labels, normalize)
        heads = list(labels.values()) if isinstance(labels, Mapping) else [labels]
        if len(heads) != len(scores):
            raise FcnBenchError(f"{self.spec.variant} has {len(scores)} heads but the data give "
                                f"{len(heads)} label maps")
        losses = [summed_pixel_loss(score, label, normalize)
                  for score, label in zip(scores.values(), heads, strict=True)]
        return torch.stack(losses).sum()

    def forward_backward(self, image: np.ndarray, label: np.ndarray, dropout_seed: int,
                         last_of_batch: bool) -> float:
        images, labels = self._to_device(image, label)
        # nn.Dropout draws from the default generator: seeding it per forward pass makes the
        # masks a function of (seed, rank, iteration, image), hence resumable.
        torch.manual_seed(dropout_seed)
        self.model.train()
        # Accumulating several images (cvpr recipe): reduce across processes only once.
        sync = (self.model.no_sync() if self.world_size > 1 and not last_of_batch
                else contextlib.nullcontext())
        try:
            with sync, self.determinism.scope(), devices.precision_scope(FP32, self.device):
                loss = self._loss(self.model(images), labels, self.normalize)
                loss.backward()
        except RuntimeError as error:
            explained = explain_nondeterministic(error)
            if explained is None:
                raise
            raise explained from error
        return float(loss.detach())

    @torch.no_grad()
    def update(self) -> None:
        """Caffe SGD: V <- m*V + lr*lr_mult*(grad/iter_size + wd*decay_mult*W); W <- W - V
        (docs/training_recipes.md "The update and the loss normalisation")."""
        with self.determinism.scope():
            for _, param, velocity, lr, decay in self._slots:
                grad = param.grad if param.grad is not None else torch.zeros_like(param)
                if self.grad_scale != 1.0:
                    grad = grad * self.grad_scale
                if decay:
                    grad = grad + param * decay  # weights only: biases have decay_mult 0
                velocity.mul_(self.momentum_coefficient)
                velocity.add_(grad * lr)  # two roundings, as written (no fused multiply-add)
                param.sub_(velocity)
                param.grad = None

    @torch.inference_mode()
    def predict(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float]:
        images, labels = self._to_device(image, label)
        self.module.eval()
        with self.determinism.scope(), devices.precision_scope(FP32, self.device):
            scores = self.module(images)
            loss = self._loss(scores, labels, normalize=False)
            first = next(iter(scores.values())) if isinstance(scores, Mapping) else scores
            predicted = first.argmax(dim=1)[0].to(torch.uint8)
        return predicted.cpu().numpy(), float(loss)

    # -- state -----------------------------------------------------------------------------

    def params(self) -> dict[str, np.ndarray]:
        return self.module.canonical_params()

    def momentum(self) -> dict[str, np.ndarray]:
        return {name: velocity.detach().cpu().numpy().copy()
                for name, _, velocity, _, _ in self._slots}

    @torch.no_grad()
    def load_momentum(self, buffers: Mapping[str, np.ndarray]) -> None:
        check_momentum(buffers, [TensorHyper(name, "", lr, decay)
                                 for name, _, _, lr, decay in self._slots], self.spec,
                       "<momentum>")
        for name, _, velocity, _, _ in self._slots:
            velocity.copy_(torch.from_numpy(np.asarray(buffers[name], np.float32)))

    @torch.no_grad()
    def params_finite(self) -> bool:
        return all(bool(torch.isfinite(param).all()) for _, param, _, _, _ in self._slots)

    def all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        if self.world_size == 1:
            return np.asarray(values, np.float64)
        # nccl reduces device tensors only; gloo takes host tensors.
        tensor = torch.as_tensor(np.asarray(values, np.float64)).to(self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def environment(self) -> dict:
        env = devices.environment(self.device, RunOptions(precision=FP32), None)
        env["world_size"] = self.world_size
        env["distributed_backend"] = dist.get_backend() if self.world_size > 1 else None
        env.update(self.determinism.describe())
        return env

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()



def create_trainer(spec: FcnSpec, params: Mapping[str, np.ndarray], plan: Sequence[TensorHyper],
                   recipe: Recipe, *, device: str = "auto", threads: int | None = None,
                   deterministic: bool = True) -> TorchTrainer:
    """The registry's trainer factory (backends/registry.py; `train` calls it by name)."""
    return TorchTrainer(spec, params, plan, recipe, device=device, threads=threads,
                        deterministic=deterministic)


def scalar_writer(logdir: str) -> tuple[Callable[[str, float, int], None], Callable[[], None]]:
    """TensorBoard scalars via torch.utils.tensorboard (needs the `tensorboard` package)."""
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(logdir)
    return writer.add_scalar, writer.close
