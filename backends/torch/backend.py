"""`TorchBackend`: the backends.base.Backend contract over `FcnModule` (imports torch).

Mirrors backends/tensorflow/backend.py. numpy NCHW float32 in, numpy NCHW float32 out; the
whole forward pass (and the argmax of `predict_labels`) stays on the device. Multi-input models
take a dict {input name: array}; multi-head models give a dict {output blob: array}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from backends.base import Backend, RunOptions
from backends.torch import device as devices
from backends.torch.model import FcnModule
from bench.errors import BackendUnavailable
from bench.reference_forward import check_inputs
from bench.spec import FcnSpec


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
        self.model = FcnModule(spec).to(self._device, memory_format=self._memory_format).eval()
        self._compile_mode = "default" if self.options.compile else None
        # torch.compile is lazy: it compiles (and may fail) on the first call, see forward_device.
        self._forward = torch.compile(self.model) if self.options.compile else self.model
        self._compiled_once = False

    # -- weights ---------------------------------------------------------------------------

    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        self.model.load_canonical(params)

    def state_params(self) -> dict[str, np.ndarray]:
        return self.model.canonical_params()

    # -- timing hooks ------------------------------------------------------------------------

    def to_device(self, images: np.ndarray | Mapping[str, np.ndarray]) -> Any:
        """Host NCHW input(s) -> a device tensor (one-input models) or a dict of them."""
        batches = {name: torch.from_numpy(value).to(self._device).contiguous(
                       memory_format=self._memory_format)
                   for name, value in check_inputs(self.spec, images).items()}
        return next(iter(batches.values())) if len(batches) == 1 else batches

    @torch.inference_mode()
    def forward_device(self, batch: Any) -> Any:
        """Device NCHW images -> device NCHW float32 scores (nothing copied back)."""
        with devices.precision_scope(self.options.precision, self._device):
            if self._compiled_once or not self.options.compile:
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
                                     f"model on {self._device.type}: {first_line}; run without "
                                     f"--compile") from error
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
        return devices.environment(self._device, self.options, self._compile_mode)

    def reset_peak_memory(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)

    def peak_memory_bytes(self) -> int | None:
        if self._device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self._device))
        return None
