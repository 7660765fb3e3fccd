"""`TorchBackend`: the bench.core.contracts.Backend contract over `FcnModule` (imports torch).

Mirrors backends/tensorflow/backend.py. numpy NCHW float32 in, numpy NCHW float32 out; the
whole forward pass (and the argmax of `predict_labels`) stays on the device. Multi-input models
take a dict {input name: array}; multi-head models give a dict {output blob: array}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from backends.torch import device as devices
from backends.torch.model import FcnModule
from bench.core.contracts import Backend, RunOptions, check_inputs, compile_mode
from bench.core.errors import BackendUnavailable, UsageError
from bench.model.spec import FcnSpec
from bench.perf import roofline

# torch.compile's modes; "reduce-overhead" replays CUDA graphs. "xla" is TensorFlow's.
TORCH_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


class TorchBackend(Backend):
    """One FCN in PyTorch, in eval mode (dropout off), on the resolved device."""

    name = "torch"

    def __init__(self, spec: FcnSpec, options: RunOptions | None = None):
        super().__init__(spec, options)
        self._device = devices.resolve_device(self.options.device)
        devices.check_precision(self.options.precision, self._device)
        devices.configure_threads(self.options.threads)
        self._memory_format = (torch.channels_last if self.options.channels_last
                               else torch.contiguous_format)
        self._compile_mode = compile_mode(self.options.compile)
        if self._compile_mode not in (None, *TORCH_COMPILE_MODES):
            raise UsageError(f"compile mode {self._compile_mode!r} is TensorFlow's; torch has "
                             f"{', '.join(TORCH_COMPILE_MODES)}")
        # bf16/fp16: the model is cast once (weights and inputs in that dtype, as deployed);
        # amp-* keeps float32 weights under autocast (see device.precision_scope).
        self._dtype = devices.model_dtype(self.options.precision)
        self.model = FcnModule(spec).to(self._device, dtype=self._dtype,
                                        memory_format=self._memory_format).eval()
        # torch.compile is lazy: it compiles (and may fail) on the first call, see forward_device.
        self._forward = (self.model if self._compile_mode is None else
                         torch.compile(self.model, mode=self._compile_mode))
        self._compiled_once = False
        self.upsampling: dict[str, str] = {}
        self.plan_upsampling()

    # -- weights ---------------------------------------------------------------------------

    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        self.model.load_canonical(params)
        self.plan_upsampling()

    def plan_upsampling(self, forms: Mapping[str, str] | None = None) -> dict[str, str]:
        """Cheaper exact upsampling where the weights allow (model.plan_upsampling), or the
        forms given per layer (tests); recorded in the environment. Returns name -> form."""
        tensor_cores = self._dtype != torch.float32 or self.options.precision != "fp32"
        self.upsampling = self.model.plan_upsampling(tensor_cores, forms)
        return dict(self.upsampling)

    def state_params(self) -> dict[str, np.ndarray]:
        return self.model.canonical_params()

    # -- timing hooks ------------------------------------------------------------------------

    def to_device(self, images: np.ndarray | Mapping[str, np.ndarray]) -> Any:
        """Host NCHW input(s) -> a device tensor in the model's dtype (one-input models) or a
        dict of them."""
        batches = {name: torch.from_numpy(value).to(self._device, dtype=self._dtype).contiguous(
                       memory_format=self._memory_format)
                   for name, value in check_inputs(self.spec, images).items()}
        return next(iter(batches.values())) if len(batches) == 1 else batches

    @torch.inference_mode()
    def forward_device(self, batch: Any) -> Any:
        """Device NCHW images -> device NCHW float32 scores (nothing copied back)."""
        with devices.precision_scope(self.options.precision, self._device):
            if self._compiled_once or self._compile_mode is None:
                scores = self._forward(batch)
            else:
                scores = self._first_compiled_call(batch)
        if isinstance(scores, dict):  # one entry per head
            return {name: value.float() for name, value in scores.items()}
        return scores.float()

    def _first_compiled_call(self, batch: Any) -> Any:
        try:
            scores = self._forward(batch)
        except Exception as error:  # inductor needs a working C++/Triton toolchain
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise BackendUnavailable(f"torch.compile cannot compile the {self.spec.variant} "
                                     f"model on {self._device.type} (mode {self._compile_mode}): "
                                     f"{first_line}; run without --compile") from error
        self._compiled_once = True
        return scores

    def synchronize(self, value: Any = None) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    # -- inference -------------------------------------------------------------------------

    def predict(self, images: Any) -> Any:
        scores = self.forward_device(self.to_device(images))
        if isinstance(scores, dict):
            return {name: value.contiguous().cpu().numpy() for name, value in scores.items()}
        return scores.contiguous().cpu().numpy()

    def predict_labels(self, images: Any) -> Any:
        scores = self.forward_device(self.to_device(images))
        # argmax on the device; only (N, H, W) uint8 labels cross to the host.
        if isinstance(scores, dict):
            return {name: value.argmax(dim=1).to(torch.uint8).cpu().numpy()
                    for name, value in scores.items()}
        return scores.argmax(dim=1).to(torch.uint8).cpu().numpy()

    @torch.inference_mode()
    def forward_blobs(self, images: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        batch = self.to_device(images)
        with devices.precision_scope(self.options.precision, self._device):
            blobs = self.model.blobs(batch, names)  # eager: intermediates are not compiled
        return {name: blob.float().contiguous().cpu().numpy() for name, blob in blobs.items()}

    # -- environment -----------------------------------------------------------------------

    @property
    def device(self) -> str:
        return self._device.type

    def environment(self) -> dict[str, Any]:
        return {**devices.environment(self._device, self.options, self._compile_mode),
                "upsampling": dict(self.upsampling)}

    def reset_peak_memory(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)

    def peak_memory_bytes(self) -> int | None:
        if self._device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self._device))
        return None

    def memory_capacity_bytes(self) -> int | None:
        if self._device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self._device)
            # Memory torch's caching allocator holds but does not use is free for this model.
            reserved = torch.cuda.memory_reserved(self._device)
            return int(free + reserved - torch.cuda.memory_allocated(self._device))
        return None

    @torch.inference_mode()
    def measure_peak(self) -> dict[str, Any]:
        """Matrix-product TFLOP/s in this precision's compute dtype and copy GB/s (roofline)."""
        kind = self._device.type
        n = roofline.MATMUL_N[kind]
        dtype = getattr(torch, devices.compute_dtype(self.options.precision))
        generator = torch.Generator(device=self._device).manual_seed(0)
        a = torch.randn(n, n, device=self._device, dtype=dtype, generator=generator)
        b = torch.randn(n, n, device=self._device, dtype=dtype, generator=generator)
        source = torch.empty(roofline.COPY_BYTES[kind] // 4, device=self._device,
                             dtype=torch.float32).fill_(1.0)
        target = torch.empty_like(source)
        with devices.precision_scope(self.options.precision, self._device):
            result = roofline.measure_ceilings(
                kind, str(dtype).removeprefix("torch."), lambda: torch.mm(a, b),
                lambda: target.copy_(source), self.synchronize, matmul_n=n,
                copy_bytes=roofline.COPY_BYTES[kind])
        if self.options.precision == "tf32":
            result["dtype"] = "float32 (TF32 tensor cores)"
        return result
