"""The FCN as a PyTorch nn.Module, built by walking `FcnSpec.layers` (nothing hand-written).

Submodules are registered under the Caffe layer names, so `named_parameters()` yields exactly the
spec's canonical keys (`conv1_1.weight`, `upscore2.weight`, `scale_pool4.weight`, ...) and torch's
layouts *are* the canonical ones (conv OIHW; ConvTranspose2d [C_in, C_out, k, k] like Caffe's
deconv; docs/fidelity.md "Weight layouts"), so loading needs no transposes. Imports torch; used
only from backends/torch/. Layer semantics: docs/fidelity.md "Layer semantics".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.model.init import new_layer_params
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
    layer_inputs,
)
from bench.perf.upsampling import bilinear_ramp, is_diagonal_bilinear, upsample_form
from bench.weights.archive import check_params


class Float32LRN(nn.LocalResponseNorm):
    """LRN computed in float32 whatever the model's dtype: the sum of squares overflows float16
    for activations of a few hundred, and torch has no half-precision LRN on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return super().forward(x)
        return super().forward(x.float()).to(x.dtype)


class ChannelScale(nn.Module):
    """Caffe Scale layer without bias: y[:, c] = x[:, c] * weight[c] (at-once skip conditioning,
    docs/fidelity.md "At-once FCN-8s")."""

    def __init__(self, channels: int):
        super().__init__()
        # Fixed in the reference (lr_mult 0): a parameter so it is saved and loaded with the rest.
        self.weight = nn.Parameter(torch.ones(channels), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


def _make_module(layer: Layer) -> nn.Module | None:
    """The torch module of one spec layer, or None for parameter-free crops and sums."""
    if isinstance(layer, Conv):
        # groups: Caffe's grouped conv, same [out, in / group, k, k] weight layout; padding=p is
        # Caffe's symmetric zero padding (docs/fidelity.md "Layer semantics").
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, stride=layer.stride,
                         padding=layer.pad, groups=layer.group)
    if isinstance(layer, MaxPool):
        # ceil_mode: Caffe rounds the pooled size up; the last window may cover one row/column
        # (docs/fidelity.md "Ceil pooling").
        return nn.MaxPool2d(layer.kernel, layer.stride, ceil_mode=True)
    if isinstance(layer, LRN):
        # torch zero-pads the channel window and averages over `size` (count_include_pad),
        # i.e. alpha / n * sum: Caffe's ACROSS_CHANNELS form (docs/fidelity.md "Layer semantics").
        return Float32LRN(layer.local_size, layer.alpha, layer.beta, layer.k)
    if isinstance(layer, Dropout):
        # element-wise (Caffe), not channel-wise Dropout2d (docs/fidelity.md "The VGG16 trunk")
        return nn.Dropout(layer.ratio)
    if isinstance(layer, Scale):
        return ChannelScale(layer.channels)
    if isinstance(layer, Upsample):
        # Caffe Deconvolution: no padding, no bias, output (n - 1) * stride + kernel; fixed
        # (docs/fidelity.md "Heads: FCN-32s, FCN-16s, FCN-8s").
        module = nn.ConvTranspose2d(layer.channels, layer.channels, layer.kernel,
                                    stride=layer.stride, bias=False)
        module.weight.requires_grad_(False)
        return module
    if isinstance(layer, Crop | Sum | Concat):
        return None
    raise TypeError(f"unsupported layer {layer!r}")


def _last_uses(spec: FcnSpec) -> dict[str, int]:
    """Index of the last layer reading each blob, so intermediate blobs can be freed early."""
    last: dict[str, int] = {}
    for index, layer in enumerate(spec.layers):
        for name in layer_inputs(layer):
            last[name] = index
    return last


Inputs = torch.Tensor | Mapping[str, torch.Tensor]
Scores = torch.Tensor | dict[str, torch.Tensor]


class FcnModule(nn.Module):
    """One FCN. forward(NCHW images) -> NCHW scores; `blobs()` gives named intermediates.

    A multi-input model (NYUD colour + depth/HHA) takes a dict {input name: tensor}; a
    multi-head model (SIFT Flow) returns a dict {output blob: scores}. One-input, one-head
    models keep taking and returning plain tensors.

    Freshly built, the trunk is zero until weights are loaded, and the fixed tensors and score
    layers hold what the reference surgery writes (bench.model.init.placeholder_params, the same
    values as the TF module): load real or `bench.model.init.random_params` weights with
    `load_canonical`.
    `.train()` turns element-wise dropout on; `.eval()` makes it the identity.
    """

    def __init__(self, spec: FcnSpec):
        super().__init__()
        self.spec = spec
        for layer in spec.layers:
            module = _make_module(layer)
            if module is not None:
                self.add_module(layer.name, module)
        self._last_use = _last_uses(spec)
        # Upsample layer name -> (form, kernels) chosen by plan_upsampling(); empty = dense.
        self._upsample_plan: dict[str, tuple[str, tuple[torch.Tensor, ...]]] = {}
        # Same placeholder values as the TF module (bench.model.init.placeholder_params): zero
        # trunk, then what the reference surgery writes (zero score layers, bilinear kernels,
        # scales; docs/fidelity.md "Heads: FCN-32s, FCN-16s, FCN-8s").
        with torch.no_grad():
            for param in self.parameters():
                param.zero_()
            for name, value in new_layer_params(spec).items():
                self.get_parameter(name).copy_(torch.from_numpy(value))

    # -- weights in canonical layout (identical to torch's) -------------------------------------

    def load_canonical(self, params: Mapping[str, np.ndarray]) -> None:
        """Copy canonical (Caffe-layout) numpy tensors in; strict about names and shapes."""
        check_params(params, self.spec)
        self._upsample_plan = {}  # new weights: plan_upsampling() must look at them again
        with torch.no_grad():
            for name, value in params.items():
                target = self.get_parameter(name)
                target.copy_(torch.as_tensor(np.asarray(value, dtype=np.float32)))

    def canonical_params(self) -> dict[str, np.ndarray]:
        """Every tensor (trainable or fixed) as float32 numpy in canonical layout, spec order."""
        return {p.name: self.get_parameter(p.name).detach().float().cpu().numpy().copy()
                for p in self.spec.parameters()}

    # -- upsampling: the cheaper exact forms ----------------------------------------------------

    @torch.no_grad()
    def plan_upsampling(self, tensor_cores: bool, forms: Mapping[str, str] | None = None
                        ) -> dict[str, str]:
        """Choose each Upsample layer's form for the current weights, device and dtype.

        A cheaper form is used only where the loaded weight is exactly the diagonal bilinear
        kernel; any other weight keeps the full deconvolution. `forms` forces a form per layer
        (tests). Call again after loading weights or moving the module. Returns name -> form.
        """
        self._upsample_plan = {}
        chosen: dict[str, str] = {}
        for layer in self.spec.layers:
            if not isinstance(layer, Upsample):
                continue
            weight = self.get_parameter(f"{layer.name}.weight")
            form = (forms or {}).get(layer.name) or upsample_form(
                "torch", weight.device.type, tensor_cores, layer.kernel, layer.stride)
            if form != "dense" and not is_diagonal_bilinear(
                    weight.detach().float().cpu().numpy(), layer.kernel):
                form = "dense"
            chosen[layer.name] = form
            if form == "dense":
                continue
            channels, k = layer.channels, layer.kernel
            if form == "grouped":
                index = torch.arange(channels, device=weight.device)
                kernels = (weight[index, index].unsqueeze(1).contiguous(),)  # [C, 1, k, k]
            elif form == "separable":
                ramp = torch.from_numpy(bilinear_ramp(k)).to(weight.device, weight.dtype)
                kernels = (ramp.view(1, 1, k, 1).expand(channels, 1, k, 1).contiguous(),
                           ramp.view(1, 1, 1, k).expand(channels, 1, 1, k).contiguous())
            else:
                raise ValueError(f"unknown upsampling form {form!r}")
            self._upsample_plan[layer.name] = (form, kernels)
        return chosen

    def _upsample(self, layer: Upsample, x: torch.Tensor) -> torch.Tensor:
        planned = None if self.training else self._upsample_plan.get(layer.name)
        if planned is None:
            return self.get_submodule(layer.name)(x)  # the full C x C deconvolution
        form, kernels = planned
        s, c = layer.stride, layer.channels
        if form == "grouped":
            return F.conv_transpose2d(x, kernels[0], stride=s, groups=c)
        rows = F.conv_transpose2d(x, kernels[0], stride=(s, 1), groups=c)
        return F.conv_transpose2d(rows, kernels[1], stride=(1, s), groups=c)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, images: Inputs) -> Scores:
        """(N, C, H, W) mean-subtracted input(s) -> (N, num_classes, H, W) scores (per head)."""
        outputs = self.spec.outputs
        blobs = self._run(images, keep=outputs)
        return blobs[outputs[0]] if len(outputs) == 1 else blobs

    def blobs(self, images: Inputs, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The named blobs (spec layer or input names) of one forward pass."""
        known = {*self.spec.input_names, *self.spec.blob_names}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise KeyError(f"{self.spec.variant} has no blob(s) {', '.join(unknown)}")
        return self._run(images, keep=tuple(names))

    def _run(self, images: Inputs, keep: Sequence[str]) -> dict[str, torch.Tensor]:
        inputs = self.spec.input_names
        blobs: dict[str, torch.Tensor] = (dict(images) if isinstance(images, Mapping)
                                          else {inputs[0]: images})
        for index, layer in enumerate(self.spec.layers):
            blobs[layer.name] = self._layer_forward(layer, blobs)
            # Free blobs nobody reads any more (conv1 outputs are the largest: 64 x 698 x 698
            # for a 500x500 input), unless the caller asked for them.
            for name in layer_inputs(layer):
                if self._last_use[name] == index and name not in keep and name not in inputs:
                    blobs.pop(name, None)
        return {name: blobs[name] for name in keep}

    def _layer_forward(self, layer: Layer, blobs: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(layer, Sum):
            first, second = (blobs[name] for name in layer.bottoms)
            if layer.coeffs is None:
                return first + second
            return layer.coeffs[0] * first + layer.coeffs[1] * second  # Eltwise SUM with coeff
        if isinstance(layer, Concat):
            return torch.cat([blobs[name] for name in layer.bottoms], dim=1)
        x = blobs[layer.bottom]
        if isinstance(layer, Crop):
            # Top-left crop at the derived offset to the reference's size (never centred).
            height, width = blobs[layer.reference].shape[-2:]
            offset = layer.offset
            return x[:, :, offset:offset + height, offset:offset + width]
        if isinstance(layer, Upsample):
            return self._upsample(layer, x)
        y = self.get_submodule(layer.name)(x)
        if isinstance(layer, Conv) and layer.relu:
            # In place: the convolution's fresh output is read by nobody else, and autograd
            # needs only ReLU's output; saves one activation-sized allocation and pass per conv
            # (the plain port it is benchmarked against, benchmarks/test_bench_peers.py, does so).
            y = F.relu(y, inplace=True)
        return y
