"""TensorFlow side of `cli.py train`: the `Trainer` contract (bench/core/contracts.py) in
TensorFlow.

Mirrors backends/torch/train.py. The Caffe SGD step is written out with variable assignments (no
Keras optimizer: their momentum and weight-decay conventions differ from Caffe's). Momentum
buffers live in TF layout (HWIO) next to their variables and cross the boundary in canonical
layout, so a snapshot continues in either backend. The step and the loss normalisation:
docs/training_recipes.md "The update and the loss normalisation".

With TF_CONFIG naming several workers (`python -m bench.core.distributed --workers N cli.py train
...`), it trains data-parallel like the torchrun path: each worker samples with seed + rank, and
before every update MultiWorkerMirroredStrategy's all-reduce averages the workers' accumulated
gradients, so one update is Caffe's batch N at the same learning rate (docs/distributed.md).
Every worker then applies the identical update to its own variables, which therefore stay equal
without being mirrored. Op determinism is on unless `deterministic=False`
(docs/training_determinism.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config_module

from backends.tensorflow import device as devices
from backends.tensorflow.model import FcnModule, from_tf_layout, to_tf_layout
from bench.core.contracts import RunOptions
from bench.core.distributed import LOCAL_RANK_ENV, tf_config_world
from bench.core.errors import FcnBenchError
from bench.data.labels import VOID_LABEL
from bench.model.spec import FcnSpec
from bench.train.plan import TensorHyper, check_momentum
from bench.train.recipes import Recipe
from bench.train.run_config import require_tensorboard

FP32 = "fp32"  # training is fp32 only (TF32 off): the heavy recipe's tiny steps need it
# One trace serves every image size: batch 1, H and W open.
_IMAGE = tf.TensorSpec([1, None, None, 3], tf.float32)
_LABEL = tf.TensorSpec([1, None, None], tf.int32)
# A collective that waits longer than this for a peer fails instead of hanging forever (a worker
# that died, or one stuck on I/O); generous, since rank 0 writes snapshots between updates.
COLLECTIVE_TIMEOUT_S = 1800.0


@contextlib.contextmanager
def determinism_scope(enabled: bool) -> Iterator[None]:
    """TF op determinism on (or off) around one step, then the caller's setting again.

    Process-wide in TF, and it changes which kernels a tf.function traces (e.g. a deterministic
    sparse softmax cross-entropy on GPUs), so every trace and call of the trainer happens inside
    it; other code in the process (tests, unseeded random ops) keeps its own setting.
    """
    before = tf_config_module.is_op_determinism_enabled()
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config_module.disable_op_determinism()
    try:
        yield
    finally:
        if before:
            tf.config.experimental.enable_op_determinism()
        else:
            tf_config_module.disable_op_determinism()


def summed_pixel_loss(scores: tf.Tensor, labels: tf.Tensor, normalize: bool) -> tf.Tensor:
    """Caffe SoftmaxWithLoss over non-void pixels: the sum (normalize=false, batch 1) or the sum
    divided by the number of non-void pixels (normalize=true; Caffe floors the divisor at 1);
    docs/training_recipes.md "The update and the loss normalisation".

    scores (1, H, W, C) float32, labels (1, H, W) int32 with 255 = void.
    """
    valid = tf.not_equal(labels, VOID_LABEL)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(valid, labels, tf.zeros_like(labels)), logits=scores)
    loss = tf.reduce_sum(tf.where(valid, per_pixel, tf.zeros_like(per_pixel)))
    if normalize:
        loss = loss / tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)
    return loss


def heads_loss(scores: Any, labels: Any, normalize: bool) -> tf.Tensor:
    """One SoftmaxWithLoss per head, each of weight 1 (REF siftflow net.py), summed
    (docs/training_recipes.md "Losses")."""
    if not isinstance(scores, Mapping):
        return summed_pixel_loss(scores, labels, normalize)
    return tf.add_n([summed_pixel_loss(score, label, normalize)
                     for score, label in zip(scores.values(), labels, strict=True)])


def _signature(spec: FcnSpec) -> list[Any]:
    """The traced input signature: one image or a dict of named inputs; one label or a tuple
    of labels, one per head. Batch 1, H and W open."""
    images: Any = _IMAGE
    if len(spec.inputs) > 1:
        images = {item.name: tf.TensorSpec([1, None, None, item.channels], tf.float32)
                  for item in spec.inputs}
    labels: Any = _LABEL if len(spec.outputs) == 1 else tuple(_LABEL for _ in spec.outputs)
    return [images, labels]


def _one_gpu_per_worker() -> None:
    """A worker trains on one device: its local rank's GPU when the machine has several."""
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        local = int(os.environ.get(LOCAL_RANK_ENV, "0"))
        with contextlib.suppress(RuntimeError):  # already initialised: keep TF's choice
            tf.config.set_visible_devices(gpus[local % len(gpus)], "GPU")


class TensorflowTrainer:
    """One FCN being trained in TensorFlow; one per worker under TF_CONFIG."""

    backend = "tensorflow"

    def __init__(self, spec: FcnSpec, params: Mapping[str, np.ndarray],
                 plan: Sequence[TensorHyper], recipe: Recipe, *, device: str = "auto",
                 threads: int | None = None, deterministic: bool = True):
        self._threads_note = devices.configure_threads(threads)
        self.rank, self.world_size = tf_config_world()
        self._strategy = None
        if self.world_size > 1:
            # Must exist before any TensorFlow op runs (collectives are configured at start-up).
            _one_gpu_per_worker()
            self._strategy = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=tf.distribute.experimental.CommunicationOptions(
                    timeout_seconds=COLLECTIVE_TIMEOUT_S))
            self.rank = int(self._strategy.cluster_resolver.task_id)
        self.deterministic = deterministic
        self.device = devices.resolve_device(device)
        self._tf_device = devices.tf_device_name(self.device)
        self.spec = spec
        self._layouts = {p.name: p.layout for p in spec.parameters()}
        with tf.device(self._tf_device):
            self.model = FcnModule(spec)
            self.model.load_canonical(params)
            variables = [self.model.params[hyper.name] for hyper in plan]
            # Gradient accumulators (several images per update) and Caffe momentum buffers.
            self._accumulators = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
            self._velocities = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self._names = [hyper.name for hyper in plan]
        self._variables = variables
        self._hyper = [(hyper.lr, hyper.decay) for hyper in plan]
        self.momentum_coefficient = recipe.momentum
        self.grad_scale = 1.0 / recipe.iter_size  # Caffe divides accumulated gradients by iter_size
        self.normalize = recipe.loss_normalization == "valid"
        signature = _signature(spec)
        self._train_step = tf.function(self._forward_backward, input_signature=signature)
        self._update = tf.function(self._apply_update)
        self._predict = tf.function(self._scores_and_loss, input_signature=signature)
        self._all_reduce = tf.function(self._cross_worker_sum) if self._strategy else None

    # -- graph bodies ----------------------------------------------------------------------

    def _forward_backward(self, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        # Watch exactly the learned tensors: the spec marks upsampling untrainable, but the cvpr
        # recipe learns the intermediate ones, so trainability is the plan's, not the variable's.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self._variables)
            loss = heads_loss(self.model(images, training=True), labels, self.normalize)
        for accumulator, grad in zip(self._accumulators, tape.gradient(loss, self._variables),
                                     strict=True):
            accumulator.assign_add(grad)
        return loss

    def _apply_update(self) -> None:
        """Caffe SGD: V <- m*V + lr*lr_mult*(grad/iter_size + wd*decay_mult*W); W <- W - V
        (docs/training_recipes.md "The update and the loss normalisation")."""
        for weight, velocity, accumulator, (lr, decay) in zip(
                self._variables, self._velocities, self._accumulators, self._hyper, strict=True):
            grad = accumulator.read_value()
            if self.grad_scale != 1.0:
                grad = grad * self.grad_scale
            if decay:
                grad = grad + weight * decay  # weights only: biases have decay_mult 0
            velocity.assign(velocity * self.momentum_coefficient + grad * lr)
            weight.assign_sub(velocity)
            accumulator.assign(tf.zeros_like(accumulator))

    def _cross_worker_sum(self, tensors: list[tf.Tensor]) -> list[tf.Tensor]:
        """Element-wise sums over the workers (the strategy's collective all-reduce)."""
        def replica_sum(values: list[tf.Tensor]) -> list[tf.Tensor]:
            # Copies made here carry the replica's device, which the all-reduce needs to know
            # where the result goes (inputs traced outside have none).
            local = [tf.identity(value) for value in values]
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                  local)

        result = self._strategy.run(replica_sum, args=(tensors,))
        return self._strategy.experimental_local_results(result)[0]

    def _scores_and_loss(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor,
                                                                              tf.Tensor]:
        scores = self.model(images, training=False)
        first = next(iter(scores.values())) if isinstance(scores, Mapping) else scores
        predicted = tf.cast(tf.argmax(first, axis=-1), tf.uint8)[0]
        return predicted, heads_loss(scores, labels, normalize=False)

    # -- one image ------------------------------------------------------------------------

    @staticmethod
    def _inputs(image: np.ndarray | Mapping[str, np.ndarray],
                label: np.ndarray | Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        """(1, H, W, C) input(s) and (1, H, W) int32 label(s); several inputs stay a dict, and
        several heads' labels become a tuple in head order (the traced signature)."""
        def nhwc(array: np.ndarray) -> tf.Tensor:
            return tf.constant(np.ascontiguousarray(array.transpose(1, 2, 0)[None], np.float32))

        images = ({name: nhwc(value) for name, value in image.items()}
                  if isinstance(image, Mapping) else nhwc(image))
        labels = (tuple(tf.constant(value.astype(np.int32)[None]) for value in label.values())
                  if isinstance(label, Mapping) else tf.constant(label.astype(np.int32)[None]))
        return images, labels

    def forward_backward(self, image: np.ndarray, label: np.ndarray, dropout_seed: int,
                         last_of_batch: bool) -> float:
        images, labels = self._inputs(image, label)
        # Dropout masks come from the model's stateless generator; resetting it per forward pass
        # makes them a function of (seed, iteration, image), hence resumable.
        self.model.reseed_dropout(dropout_seed)
        try:
            with (determinism_scope(self.deterministic), devices.precision_scope(FP32),
                  tf.device(self._tf_device)):
                return float(self._train_step(images, labels))
        except tf.errors.UnimplementedError as error:
            if "determinis" not in str(error):
                raise
            raise FcnBenchError(f"an op has no deterministic implementation in tensorflow "
                                f"{tf.__version__} on this device ({error.message.splitlines()[0]})"
                                "; rerun with --nondeterministic (resume is then only "
                                "approximately exact)") from error

    def update(self) -> None:
        with (determinism_scope(self.deterministic), devices.precision_scope(FP32),
              tf.device(self._tf_device)):
            if self._all_reduce is not None:
                # Average the workers' accumulated gradients (DDP's semantics): Caffe batch N.
                summed = self._all_reduce([a.read_value() for a in self._accumulators])
                for accumulator, total in zip(self._accumulators, summed, strict=True):
                    accumulator.assign(total / self.world_size)
            self._update()

    def predict(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float]:
        images, labels = self._inputs(image, label)
        with (determinism_scope(self.deterministic), devices.precision_scope(FP32),
              tf.device(self._tf_device)):
            predicted, loss = self._predict(images, labels)
        return predicted.numpy(), float(loss)

    # -- state -----------------------------------------------------------------------------

    def params(self) -> dict[str, np.ndarray]:
        return self.model.canonical_params()

    def momentum(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(from_tf_layout(velocity.numpy(), self._layouts[name]))
                for name, velocity in zip(self._names, self._velocities, strict=True)}

    def load_momentum(self, buffers: Mapping[str, np.ndarray]) -> None:
        check_momentum(buffers, [TensorHyper(name, "", lr, decay) for name, (lr, decay)
                                 in zip(self._names, self._hyper, strict=True)], self.spec,
                       "<momentum>")
        for name, velocity in zip(self._names, self._velocities, strict=True):
            velocity.assign(to_tf_layout(np.asarray(buffers[name], np.float32),
                                         self._layouts[name]))

    def params_finite(self) -> bool:
        return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in self._variables)

    def all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float64)
        if self._all_reduce is None:
            return values
        with tf.device(self._tf_device):
            return self._all_reduce([tf.constant(values)])[0].numpy()

    def environment(self) -> dict:
        env = devices.environment(self.device, RunOptions(precision=FP32), None,
                                  self._threads_note)
        env["world_size"] = self.world_size
        env["distributed_backend"] = ("MultiWorkerMirroredStrategy" if self._strategy
                                      else None)
        env["deterministic"] = self.deterministic  # op determinism around every step
        return env

    def close(self) -> None:
        """Nothing to release: the strategy has no shutdown; workers leave when they exit."""



def create_trainer(spec: FcnSpec, params: Mapping[str, np.ndarray], plan: Sequence[TensorHyper],
                   recipe: Recipe, *, device: str = "auto", threads: int | None = None,
                   deterministic: bool = True) -> TensorflowTrainer:
    """The registry's trainer factory (backends/registry.py; `train` calls it by name)."""
    return TensorflowTrainer(spec, params, plan, recipe, device=device, threads=threads,
                             deterministic=deterministic)


def scalar_writer(logdir: str) -> tuple[Callable[[str, float, int], None], Callable[[], None]]:
    """TensorBoard scalars via tf.summary (its scalar op needs the `tensorboard` package)."""
    require_tensorboard()
    writer = tf.summary.create_file_writer(logdir)

    def write(tag: str, value: float, step: int) -> None:
        with writer.as_default():
            tf.summary.scalar(tag, value, step=step)

    def close() -> None:
        writer.flush()
        writer.close()

    return write, close
