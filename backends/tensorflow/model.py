"""The FCN as a Keras-free `tf.Module`, built by walking `FcnSpec.layers` (nothing hand-written).

Mirrors backends/torch/model.py. TensorFlow is NHWC with HWIO conv kernels and [kH, kW, C_out,
C_in] transposed-conv filters, so canonical (Caffe) tensors are transposed on the way in and out;
variables carry the canonical names (`conv1_1.weight`, ...) and are trainable per the spec's
lr_mult. Imports tensorflow; used only from backends/tensorflow/. Layouts: docs/fidelity.md
"Weight layouts"; layer semantics (padding, grouped convolution, LRN): "Layer semantics".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from bench.model.init import placeholder_params
from bench.model.spec import (
    LRN,
    Concat,
    Conv,
    Crop,
    Dropout,
    FcnSpec,
    Layer,
    MaxPool,
    Scale,
    Sum,
    Upsample,
)
from bench.perf.upsampling import bilinear_ramp, is_diagonal_bilinear, upsample_form
from bench.weights.archive import check_params

# Canonical layout -> TF layout permutation. OIHW -> HWIO; Caffe deconv IOHW [C_in, C_out, kH, kW]
# -> conv2d_transpose filter [kH, kW, C_out, C_in]: the same permutation for both
# (docs/fidelity.md "Weight layouts").
_TO_TF = {"OIHW": (2, 3, 1, 0), "IOHW": (2, 3, 1, 0), "C": None}


def to_tf_layout(value: np.ndarray, layout: str) -> np.ndarray:
    axes = _TO_TF[layout]
    return np.asarray(value, np.float32) if axes is None else np.transpose(value, axes)


def from_tf_layout(value: np.ndarray, layout: str) -> np.ndarray:
    axes = _TO_TF[layout]
    return value if axes is None else np.transpose(value, np.argsort(axes))


def _same_pool_is_caffe_ceil(kernel: int, stride: int) -> bool:
    """Whether TF's SAME max pooling has exactly Caffe's ceil-mode windows for every size.

    SAME gives ceil(n / stride) outputs and pads (total // 2) before; Caffe (pad 0) gives
    ceil((n - kernel) / stride) + 1 outputs with windows starting at 0. The counts agree for all
    n iff kernel == stride, and then total <= kernel - 1, so nothing is padded before iff
    kernel <= 2. (Padded cells never win a SAME max.) docs/fidelity.md "Ceil pooling".
    """
    return kernel == stride and kernel <= 2


def caffe_max_pool(x: tf.Tensor, kernel: int, stride: int) -> tf.Tensor:
    """Max pooling with Caffe's rounding-up output size (no ceil mode exists in TF)."""
    if _same_pool_is_caffe_ceil(kernel, stride):
        return tf.nn.max_pool2d(x, kernel, stride, "SAME")  # odd n: pads 0 before, 1 after
    # General case: pad the bottom/right with -inf up to (out - 1) * stride + kernel, then VALID.
    size = tf.shape(x)[1:3]
    out = -((kernel - size) // stride) + 1  # ceil((size - kernel) / stride) + 1
    out = tf.maximum(out, 1)
    extra = (out - 1) * stride + kernel - size
    paddings = [[0, 0], [0, extra[0]], [0, extra[1]], [0, 0]]
    x = tf.pad(x, paddings, constant_values=float("-inf"))
    return tf.nn.max_pool2d(x, kernel, stride, "VALID")


def grouped_conv2d(x: tf.Tensor, kernel: tf.Tensor, stride: int, padding: object,
                   group: int) -> tf.Tensor:
    """Caffe grouped convolution (kernel HWIO with I = C_in / group): output group j convolves
    input group j only. Split explicitly, so it runs on every device (TF's implicit grouped
    conv2d is not implemented on every CPU kernel). docs/fidelity.md "Layer semantics"."""
    if group == 1:
        return tf.nn.conv2d(x, kernel, stride, padding)
    parts = zip(tf.split(x, group, axis=-1), tf.split(kernel, group, axis=-1), strict=True)
    return tf.concat([tf.nn.conv2d(xg, kg, stride, padding) for xg, kg in parts], axis=-1)


def caffe_lrn(x: tf.Tensor, layer: LRN) -> tf.Tensor:
    """Caffe LRN ACROSS_CHANNELS in TF's parametrisation (docs/fidelity.md "Layer semantics").

    TF: x / (bias + alpha * sum over d - r .. d + r of x^2) ** beta; Caffe: x / (k + alpha / n *
    sum over the n = 2r + 1 centred channels) ** beta. So r = (n - 1) / 2, bias = k and TF's
    alpha is Caffe's alpha / n (per element, not per window).
    """
    # The sum of squares overflows float16 (65504) for activations of a few hundred, and TF has
    # no bfloat16 LRN kernel: half-precision models normalise in float32, as Caffe does.
    normalised = tf.nn.local_response_normalization(
        tf.cast(x, tf.float32), depth_radius=(layer.local_size - 1) // 2, bias=layer.k,
        alpha=layer.alpha / layer.local_size, beta=layer.beta)
    return tf.cast(normalised, x.dtype)


class FcnModule(tf.Module):
    """One FCN: __call__(NHWC images, training=False) -> NHWC scores.

    A multi-input model (NYUD colour + depth/HHA) takes a dict {input name: tensor}; a
    multi-head model (SIFT Flow) returns a dict {output blob: scores}. One-input, one-head
    models keep taking and returning plain tensors.

    Freshly built, the trunk is zero until weights are loaded, and the fixed tensors and score
    layers hold what the reference surgery writes (bench.model.init.placeholder_params, the same
    values as the torch module): load real or `bench.model.init.random_params` weights with
    `load_canonical`.
    `training=True` turns element-wise dropout on (stateless, seeded from a tf.random.Generator).
    """

    def __init__(self, spec: FcnSpec, seed: int = 0, compute_dtype: tf.DType = tf.float32,
                 variable_dtype: tf.DType = tf.float32):
        super().__init__(name="fcn")
        self.spec = spec
        self.compute_dtype = compute_dtype
        # bf16/fp16 deployments store the variables in that dtype (cast once, when loading).
        self.variable_dtype = variable_dtype
        self._layouts = {p.name: p.layout for p in spec.parameters()}
        initial = placeholder_params(spec)
        # Canonical name -> variable (TF layout). A dict attribute is tracked by tf.Module, so
        # `trainable_variables` sees exactly the spec's lr_mult > 0 tensors.
        self.params = {
            p.name: tf.Variable(tf.cast(to_tf_layout(initial[p.name], p.layout),
                                        variable_dtype), name=p.name, trainable=p.trainable)
            for p in spec.parameters()
        }
        self._dropout_rng = tf.random.Generator.from_seed(seed)
        # Upsample layer name -> (form, kernels) chosen by plan_upsampling(); empty = dense.
        self._upsample_plan: dict[str, tuple[str, tuple[tf.Tensor, ...]]] = {}

    def reseed_dropout(self, seed: int) -> None:
        """Restart the dropout stream: the trainer reseeds per iteration so resume is exact."""
        self._dropout_rng.reset_from_seed(seed)

    # -- weights in canonical layout -------------------------------------------------------

    def load_canonical(self, params: Mapping[str, np.ndarray]) -> None:
        """Assign canonical (Caffe-layout) numpy tensors, transposed to TF layout; strict."""
        check_params(params, self.spec)
        self._upsample_plan = {}  # new weights: plan_upsampling() must look at them again
        for name, value in params.items():
            self.params[name].assign(tf.cast(to_tf_layout(np.asarray(value, np.float32),
                                                          self._layouts[name]),
                                             self.variable_dtype))

    def canonical_params(self) -> dict[str, np.ndarray]:
        """Every tensor (trainable or fixed) as float32 numpy in canonical layout, spec order."""
        return {p.name: np.ascontiguousarray(from_tf_layout(
                    tf.cast(self.params[p.name], tf.float32).numpy(), p.layout))
                for p in self.spec.parameters()}

    # -- upsampling: the cheaper exact forms (bench/perf/upsampling.py) -------------------

    def plan_upsampling(self, device_type: str, tensor_cores: bool,
                        forms: Mapping[str, str] | None = None) -> dict[str, str]:
        """Choose each Upsample layer's form for the current weights, device and dtype.

        A cheaper form (depthwise transposed convolutions) is used only where the loaded weight
        is exactly the diagonal bilinear kernel; any other weight keeps conv2d_transpose.
        `forms` forces a form per layer (tests). Graphs traced before must be traced again.
        """
        self._upsample_plan = {}
        chosen: dict[str, str] = {}
        for layer in self.spec.layers:
            if not isinstance(layer, Upsample):
                continue
            weight = self.params[f"{layer.name}.weight"]
            form = (forms or {}).get(layer.name) or upsample_form(
                "tensorflow", device_type, tensor_cores, layer.kernel, layer.stride)
            canonical = from_tf_layout(tf.cast(weight, tf.float32).numpy(), "IOHW")
            if form != "dense" and not is_diagonal_bilinear(canonical, layer.kernel):
                form = "dense"
            chosen[layer.name] = form
            if form == "dense":
                continue
            c, k = layer.channels, layer.kernel
            ramp = bilinear_ramp(k)
            if form == "grouped":  # depthwise filter [kH, kW, C, 1]
                square = np.outer(ramp, ramp)[:, :, None, None]
                kernels = (tf.constant(np.broadcast_to(square, (k, k, c, 1)), self.compute_dtype),)
            elif form == "separable":
                kernels = (tf.constant(np.broadcast_to(ramp[:, None, None, None], (k, 1, c, 1)),
                                       self.compute_dtype),
                           tf.constant(np.broadcast_to(ramp[None, :, None, None], (1, k, c, 1)),
                                       self.compute_dtype))
            else:
                raise ValueError(f"unknown upsampling form {form!r}")
            self._upsample_plan[layer.name] = (form, kernels)
        return chosen

    def _upsample(self, layer: Upsample, x: tf.Tensor, training: bool) -> tf.Tensor:
        # Caffe Deconvolution: no padding, no bias, output (n - 1) * stride + kernel
        # (docs/fidelity.md "Heads: FCN-32s, FCN-16s, FCN-8s").
        shape = tf.shape(x)
        size = (shape[1:3] - 1) * layer.stride + layer.kernel
        planned = None if training else self._upsample_plan.get(layer.name)
        if planned is None:  # the full C x C transposed convolution
            output_shape = tf.stack([shape[0], size[0], size[1], layer.channels])
            return tf.nn.conv2d_transpose(x, self._weight(f"{layer.name}.weight"), output_shape,
                                          layer.stride, "VALID")
        form, kernels = planned
        s = layer.stride
        full = tf.stack([shape[0], size[0], size[1], shape[3]])
        if form == "grouped":
            return tf.nn.depthwise_conv2d_backprop_input(full, kernels[0], x, [1, s, s, 1],
                                                         "VALID")
        rows = tf.nn.depthwise_conv2d_backprop_input(
            tf.stack([shape[0], size[0], shape[2], shape[3]]), kernels[0], x, [1, s, 1, 1],
            "VALID")
        return tf.nn.depthwise_conv2d_backprop_input(full, kernels[1], rows, [1, 1, s, 1],
                                                     "VALID")

    # -- forward ---------------------------------------------------------------------------

    def __call__(self, images: tf.Tensor | Mapping[str, tf.Tensor],
                 training: bool = False) -> tf.Tensor | dict[str, tf.Tensor]:
        """(N, H, W, C) mean-subtracted input(s) -> (N, H, W, num_classes) scores (per head)."""
        outputs = self.spec.outputs
        blobs = self.blobs(images, outputs, training)
        return blobs[outputs[0]] if len(outputs) == 1 else blobs

    def blobs(self, images: tf.Tensor | Mapping[str, tf.Tensor], names: Sequence[str],
              training: bool = False) -> dict[str, tf.Tensor]:
        """The named blobs (spec layer or input names) of one forward pass, NHWC."""
        known = {*self.spec.input_names, *self.spec.blob_names}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise KeyError(f"{self.spec.variant} has no blob(s) {', '.join(unknown)}")
        if not isinstance(images, Mapping):
            images = {self.spec.input_names[0]: images}
        # Inside tf.function the graph frees intermediates itself; no liveness bookkeeping.
        blobs = {name: tf.cast(value, self.compute_dtype) for name, value in images.items()}
        for layer in self.spec.layers:
            blobs[layer.name] = self._layer_forward(layer, blobs, training)
        return {name: blobs[name] for name in names}

    def _weight(self, name: str) -> tf.Tensor:
        return tf.cast(self.params[name], self.compute_dtype)

    def _layer_forward(self, layer: Layer, blobs: dict[str, tf.Tensor],
                       training: bool) -> tf.Tensor:
        if isinstance(layer, Sum):
            first, second = (blobs[name] for name in layer.bottoms)
            if layer.coeffs is None:
                return first + second
            # Eltwise SUM with coefficients (late fusion averages colour and HHA scores).
            a, b = (tf.constant(c, self.compute_dtype) for c in layer.coeffs)
            return a * first + b * second
        if isinstance(layer, Concat):
            return tf.concat([blobs[name] for name in layer.bottoms], axis=-1)  # channels
        x = blobs[layer.bottom]
        if isinstance(layer, Conv):
            pad = layer.pad
            # Explicit symmetric zero padding = Caffe's (pad 100 on conv1_1 pads the
            # mean-subtracted input with zeros); fc6 is 7x7 VALID, never SAME (docs/fidelity.md
            # "Layer semantics").
            padding = [[0, 0], [pad, pad], [pad, pad], [0, 0]] if pad else "VALID"
            y = grouped_conv2d(x, self._weight(f"{layer.name}.weight"), layer.stride, padding,
                               layer.group)
            y = tf.nn.bias_add(y, self._weight(f"{layer.name}.bias"))
            return tf.nn.relu(y) if layer.relu else y
        if isinstance(layer, MaxPool):
            return caffe_max_pool(x, layer.kernel, layer.stride)
        if isinstance(layer, LRN):
            return caffe_lrn(x, layer)
        if isinstance(layer, Dropout):
            if not training:
                return x
            seed = self._dropout_rng.make_seeds(1)[:, 0]
            return tf.nn.experimental.stateless_dropout(x, layer.ratio, seed)  # element-wise
        if isinstance(layer, Scale):
            return x * self._weight(f"{layer.name}.weight")  # per channel (last axis in NHWC)
        if isinstance(layer, Upsample):
            return self._upsample(layer, x, training)
        if isinstance(layer, Crop):
            # Top-left crop at the derived offset to the reference's size (never centred).
            size = tf.shape(blobs[layer.reference])[1:3]
            offset = layer.offset
            return x[:, offset:offset + size[0], offset:offset + size[1], :]
        raise TypeError(f"unsupported layer {layer!r}")
