"""`TensorflowBackend`: the `Backend` contract (bench/core/contracts.py) over `FcnModule`.

Mirrors backends/torch/backend.py. numpy NCHW float32 in, numpy NCHW float32 out; inside, the
network is NHWC. Inference always runs in a `tf.function` whose input signature leaves N, H and W
open, so VOC's many image sizes never retrace; the argmax of `predict_labels` runs on the device.
Multi-input models take a dict {input name: array}; multi-head models give a dict of scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from backends.tensorflow import device as devices
from backends.tensorflow.model import FcnModule
from bench.core.contracts import Backend, RunOptions, check_inputs, compile_mode
from bench.core.errors import BackendUnavailable, UsageError
from bench.model.spec import FcnSpec
from bench.perf import roofline


def input_signature(spec: FcnSpec) -> list[Any]:
    """Any batch and image size, channels last: one trace serves every image. A one-input model
    takes a tensor, a multi-input model a dict of them."""
    specs = {item.name: tf.TensorSpec([None, None, None, item.channels], tf.float32)
             for item in spec.inputs}
    return [next(iter(specs.values())) if len(specs) == 1 else specs]


class TensorflowBackend(Backend):
    """One FCN in TensorFlow, inference mode (dropout off), on the resolved device."""

    name = "tensorflow"

    def __init__(self, spec: FcnSpec, options: RunOptions | None = None):
        super().__init__(spec, options)
        # Thread pools must be sized before the runtime starts, i.e. before anything else.
        self._threads_note = devices.configure_threads(self.options.threads)
        self._device = devices.resolve_device(self.options.device)
        devices.check_precision(self.options.precision, self._device)
        self._tf_device = devices.tf_device_name(self._device)
        with tf.device(self._tf_device):
            self.model = FcnModule(spec, seed=self.options.seed,
                                   compute_dtype=devices.math_dtype(self.options.precision),
                                   variable_dtype=devices.variable_dtype(self.options.precision))
        mode = compile_mode(self.options.compile)
        if mode not in (None, "default", "xla"):
            raise UsageError(f"compile mode {mode!r} is torch.compile's; TensorFlow has xla "
                             f"(tf.function(jit_compile=True), also what 'default' means here)")
        self._compile_mode = None if mode is None else "xla"
        self.upsampling: dict[str, str] = {}
        self.plan_upsampling()

    def _make_graphs(self) -> None:
        """(Re)create the tf.functions: a trace freezes the upsampling plan it saw."""
        jit = self._compile_mode is not None
        self._scores_fn = tf.function(self._scores, input_signature=input_signature(self.spec),
                                      jit_compile=jit)
        self._labels_fn = tf.function(self._labels, input_signature=input_signature(self.spec),
                                      jit_compile=jit)
        # Names are a static argument: one trace per requested set (parity asks for one set).
        self._blobs_fn = tf.function(self._blobs, reduce_retracing=True)
        self._compiled_once = False

    def plan_upsampling(self, forms: Mapping[str, str] | None = None) -> dict[str, str]:
        """Cheaper exact upsampling where the weights allow (model.plan_upsampling), or the
        forms given per layer (tests); recorded in the environment. Returns name -> form."""
        tensor_cores = self.options.precision != "fp32"
        with tf.device(self._tf_device):
            self.upsampling = self.model.plan_upsampling(self._device, tensor_cores, forms)
        self._make_graphs()
        return dict(self.upsampling)

    # -- graph bodies ----------------------------------------------------------------------

    def _scores(self, images: Any) -> Any:
        return tf.nest.map_structure(lambda scores: tf.cast(scores, tf.float32),
                                     self.model(images, training=False))

    def _labels(self, images: Any) -> Any:
        return tf.nest.map_structure(lambda scores: tf.cast(tf.argmax(scores, axis=-1), tf.uint8),
                                     self._scores(images))

    def _blobs(self, images: Any, names: tuple[str, ...]) -> dict[str, tf.Tensor]:
        blobs = self.model.blobs(images, names, training=False)
        return {name: tf.cast(blob, tf.float32) for name, blob in blobs.items()}

    def _call(self, function: Any, batch: Any) -> Any:
        """Run a graph on the device with this backend's TF32 setting; XLA failures are clear."""
        with devices.precision_scope(self.options.precision), tf.device(self._tf_device):
            if self._compiled_once or self._compile_mode is None:
                return function(batch)
            try:
                result = function(batch)
            except (tf.errors.OpError, ValueError) as error:
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise BackendUnavailable(f"XLA (jit_compile) cannot compile the "
                                         f"{self.spec.variant} model on {self._device}: "
                                         f"{first_line}; run without --compile") from error
            self._compiled_once = True
            return result

    # -- weights ---------------------------------------------------------------------------

    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        self.model.load_canonical(params)
        self.plan_upsampling()

    def state_params(self) -> dict[str, np.ndarray]:
        return self.model.canonical_params()

    # -- timing hooks ------------------------------------------------------------------------

    def to_device(self, images: np.ndarray | Mapping[str, np.ndarray]) -> Any:
        """Host NCHW -> device NHWC (the layout change happens on the device, untimed); a dict
        of them for a multi-input model."""
        with tf.device(self._tf_device):
            batches = {name: tf.transpose(tf.constant(value), (0, 2, 3, 1))
                       for name, value in check_inputs(self.spec, images).items()}
        return next(iter(batches.values())) if len(batches) == 1 else batches

    def forward_device(self, batch: Any) -> Any:
        """Device NHWC images -> device NHWC float32 scores (nothing copied back)."""
        return self._call(self._scores_fn, batch)

    def synchronize(self, value: Any = None) -> None:
        if self._device == "cuda":
            tf.test.experimental.sync_devices()
        # On the CPU, eager execution of a tf.function returns only once its kernels finished.

    # -- inference -------------------------------------------------------------------------

    def predict(self, images: Any) -> Any:
        scores = self.forward_device(self.to_device(images))
        return tf.nest.map_structure(
            lambda value: np.ascontiguousarray(value.numpy().transpose(0, 3, 1, 2)), scores)

    def predict_labels(self, images: Any) -> Any:
        labels = self._call(self._labels_fn, self.to_device(images))
        return tf.nest.map_structure(lambda value: value.numpy(), labels)

    def forward_blobs(self, images: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        batch = self.to_device(images)
        with devices.precision_scope(self.options.precision), tf.device(self._tf_device):
            blobs = self._blobs_fn(batch, tuple(names))
        return {name: np.ascontiguousarray(blob.numpy().transpose(0, 3, 1, 2))
                for name, blob in blobs.items()}

    # -- environment -----------------------------------------------------------------------

    @property
    def device(self) -> str:
        return self._device

    def environment(self) -> dict[str, Any]:
        return {**devices.environment(self._device, self.options, self._compile_mode,
                                      self._threads_note), "upsampling": dict(self.upsampling)}

    def reset_peak_memory(self) -> None:
        if self._device == "cuda":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_memory_bytes(self) -> int | None:
        if self._device == "cuda":
            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        return None

    def measure_peak(self) -> dict[str, Any]:
        """Matrix-product TFLOP/s in this precision's compute dtype and copy GB/s (roofline)."""
        n = roofline.MATMUL_N[self._device]
        dtype = devices.math_dtype(self.options.precision)
        with devices.precision_scope(self.options.precision), tf.device(self._tf_device):
            generator = tf.random.Generator.from_seed(0)
            a = tf.cast(generator.normal((n, n)), dtype)
            b = tf.cast(generator.normal((n, n)), dtype)
            # Variables, not constants: grappler must neither fold the product nor drop a
            # multiplication by one; the copy is one elementwise read + write pass.
            source = tf.Variable(tf.ones(roofline.COPY_BYTES[self._device] // 4, tf.float32))
            one = tf.Variable(1.0)
            matmul = tf.function(lambda: tf.linalg.matmul(a, b), autograph=False)
            copy = tf.function(lambda: source * one, autograph=False)
            result = roofline.measure_ceilings(
                self._device, dtype.name, matmul, copy, self.synchronize, matmul_n=n,
                copy_bytes=roofline.COPY_BYTES[self._device])
        if self.options.precision == "tf32":
            result["dtype"] = "float32 (TF32 tensor cores)"
        return result
