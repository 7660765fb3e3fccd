"""TensorFlow side of `cli.py train`: `bench.train.Trainer` over `FcnModule` (imports tensorflow).

Mirrors backends/torch/train.py. The Caffe SGD step is written out with variable assignments (no
Keras optimizer: their momentum and weight-decay conventions differ from Caffe's). Momentum
buffers live in TF layout (HWIO) next to their variables and cross the boundary in canonical
layout, so a snapshot continues in either backend. Single process only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from backends.base import RunOptions
from backends.tensorflow import device as devices
from backends.tensorflow.model import FcnModule, from_tf_layout, to_tf_layout
from bench.labels import VOID_LABEL
from bench.spec import FcnSpec
from bench.train import Recipe, TensorHyper, check_momentum, require_tensorboard

FP32 = "fp32"  # training is fp32 only (TF32 off): the heavy recipe's tiny steps need it
# One trace serves every image size: batch 1, H and W open.
_IMAGE = tf.TensorSpec([1, None, None, 3], tf.float32)
_LABEL = tf.TensorSpec([1, None, None], tf.int32)


def summed_pixel_loss(scores: tf.Tensor, labels: tf.Tensor, normalize: bool) -> tf.Tensor:
    """Caffe SoftmaxWithLoss over non-void pixels: the sum (normalize=false, batch 1) or the sum
    divided by the number of non-void pixels (normalize=true; Caffe floors the divisor at 1).

    scores (1, H, W, C) float32, labels (1, H, W) int32 with 255 = void.
    """
    valid = tf.not_equal(labels, VOID_LABEL)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(valid, labels, tf.zeros_like(labels)), logits=scores)
    loss = tf.reduce_sum(tf.where(valid, per_pixel, tf.zeros_like(per_pixel)))
    if normalize:
        loss = loss / tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)
    return loss


class TensorflowTrainer:
    """One FCN being trained in TensorFlow (one process)."""

    backend = "tensorflow"
    rank = 0
    world_size = 1

    def __init__(self, spec: FcnSpec, params: Mapping[str, np.ndarray],
                 plan: Sequence[TensorHyper], recipe: Recipe, *, device: str = "auto",
                 threads: int | None = None):
        self._threads_note = devices.configure_threads(threads)
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
        self._train_step = tf.function(self._forward_backward, input_signature=[_IMAGE, _LABEL])
        self._update = tf.function(self._apply_update)
        self._predict = tf.function(self._scores_and_loss, input_signature=[_IMAGE, _LABEL])

    # -- graph bodies ----------------------------------------------------------------------

    def _forward_backward(self, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        # Watch exactly the learned tensors: the spec marks upsampling untrainable, but the cvpr
        # recipe learns the intermediate ones, so trainability is the plan's, not the variable's.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self._variables)
            loss = summed_pixel_loss(self.model(images, training=True), labels, self.normalize)
        for accumulator, grad in zip(self._accumulators, tape.gradient(loss, self._variables),
                                     strict=True):
            accumulator.assign_add(grad)
        return loss

    def _apply_update(self) -> None:
        """Caffe SGD: V <- m*V + lr*lr_mult*(grad/iter_size + wd*decay_mult*W); W <- W - V."""
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

    def _scores_and_loss(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor,
                                                                              tf.Tensor]:
        scores = self.model(images, training=False)
        predicted = tf.cast(tf.argmax(scores, axis=-1), tf.uint8)[0]
        return predicted, summed_pixel_loss(scores, labels, normalize=False)

    # -- one image ------------------------------------------------------------------------

    @staticmethod
    def _inputs(image: np.ndarray, label: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.constant(np.ascontiguousarray(image.transpose(1, 2, 0)[None], np.float32))
        return images, tf.constant(label.astype(np.int32)[None])  # (1, H, W, 3), (1, H, W)

    def forward_backward(self, image: np.ndarray, label: np.ndarray, dropout_seed: int,
                         last_of_batch: bool) -> float:
        images, labels = self._inputs(image, label)
        # Dropout masks come from the model's stateless generator; resetting it per forward pass
        # makes them a function of (seed, iteration, image), hence resumable.
        self.model.reseed_dropout(dropout_seed)
        with devices.precision_scope(FP32), tf.device(self._tf_device):
            return float(self._train_step(images, labels))

    def update(self) -> None:
        with devices.precision_scope(FP32), tf.device(self._tf_device):
            self._update()

    def predict(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float]:
        images, labels = self._inputs(image, label)
        with devices.precision_scope(FP32), tf.device(self._tf_device):
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
        return np.asarray(values, np.float64)

    def environment(self) -> dict:
        env = devices.environment(self.device, RunOptions(precision=FP32), None,
                                  self._threads_note)
        env["world_size"] = 1
        return env

    def close(self) -> None:
        """Nothing to release (single process)."""


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
