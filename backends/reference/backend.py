"""`ReferenceBackend`: the float64 numpy forward pass (forward.py) behind the `Backend` contract.

It is the yardstick `parity` and the conformance suite measure every other backend against, so
it stays literal: the host is its device, float64 its arithmetic, and nothing is cached beyond the
weights. Scores leave `predict` as float32 like any backend's; `forward_blobs` keeps float64 so a
parity report measures the other side, not this one's rounding (docs/adding_a_backend.md).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from backends.reference.forward import forward_checked
from bench.core.contracts import PRECISIONS, Backend, RunOptions, check_inputs, compile_mode
from bench.core.errors import BackendUnavailable, UsageError
from bench.model.init import placeholder_params
from bench.model.spec import FcnSpec
from bench.weights.archive import check_params

Scores = np.ndarray | dict[str, np.ndarray]


class ReferenceBackend(Backend):
    """One FCN as the numpy reference: CPU only, fp32 inputs, float64 arithmetic."""

    name = "reference"
    dtype: type = np.float64  # the arithmetic; float32 arrays cross the predict boundary

    def __init__(self, spec: FcnSpec, options: RunOptions | None = None):
        super().__init__(spec, options)
        if self.options.device == "cuda":
            raise BackendUnavailable(f"'cuda' requested but backend {self.name!r} runs on the "
                                     "host only (numpy); use --device cpu")
        if self.options.device not in ("auto", "cpu"):
            raise UsageError(f"unknown device {self.options.device!r}; choose from auto, cpu, "
                             "cuda")
        if self.options.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.options.precision!r}; choose from "
                             f"{', '.join(PRECISIONS)}")
        if self.options.precision != "fp32":
            raise UsageError(f"backend {self.name!r} computes in {np.dtype(self.dtype).name} and "
                             f"takes precision fp32 only, not {self.options.precision!r}")
        if compile_mode(self.options.compile) is not None:
            raise UsageError(f"backend {self.name!r} has nothing to compile; run without "
                             "--compile")
        # Until weights are loaded: what the reference surgery writes on a fresh net.
        self._weights = self._as_weights(placeholder_params(spec))

    def _as_weights(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.array(value, dtype=self.dtype) for name, value in params.items()}

    # -- weights ---------------------------------------------------------------------------

    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        check_params(params, self.spec)
        self._weights = self._as_weights(params)

    def state_params(self) -> dict[str, np.ndarray]:
        # Loaded tensors are float32, so float64 -> float32 gives them back bit for bit.
        return {item.name: self._weights[item.name].astype(np.float32)
                for item in self.spec.parameters()}

    # -- timing hooks ----------------------------------------------------------------------

    def to_device(self, images: np.ndarray | Mapping[str, np.ndarray]) -> Any:
        """A checked host copy of the input(s): the host is this backend's device."""
        batches = {name: value.copy() for name, value in check_inputs(self.spec, images).items()}
        return next(iter(batches.values())) if len(batches) == 1 else batches

    def forward_device(self, batch: Any) -> Scores:
        """Input(s) -> scores in the arithmetic dtype (one array, or one per head)."""
        blobs = forward_checked(self.spec, self._weights, batch, self.spec.outputs, self.dtype)
        return blobs[self.spec.output] if len(blobs) == 1 else blobs

    def synchronize(self, value: Any = None) -> None:
        """Nothing queued: numpy returns when the work is done."""

    # -- inference -------------------------------------------------------------------------

    def predict(self, images: Any) -> Scores:
        scores = self.forward_device(self.to_device(images))
        if isinstance(scores, dict):
            return {name: value.astype(np.float32) for name, value in scores.items()}
        return scores.astype(np.float32)

    def predict_labels(self, images: Any) -> Any:
        scores = self.forward_device(self.to_device(images))
        if isinstance(scores, dict):
            return {name: value.argmax(axis=1).astype(np.uint8) for name, value in scores.items()}
        return scores.argmax(axis=1).astype(np.uint8)

    def forward_blobs(self, images: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The named blobs in the arithmetic dtype (float64 here; parity compares in float64)."""
        return forward_checked(self.spec, self._weights, images, names, self.dtype)

    # -- environment -----------------------------------------------------------------------

    @property
    def device(self) -> str:
        return "cpu"

    def environment(self) -> dict[str, Any]:
        return {"framework": "numpy", "framework_version": np.__version__, "device": "cpu",
                "device_name": platform.processor() or platform.machine() or "cpu",
                "precision": self.options.precision,
                "compute_dtype": np.dtype(self.dtype).name, "compile": None}


def create_backend(spec: FcnSpec, options: RunOptions | None = None) -> ReferenceBackend:
    """The registry's factory for `reference` (the signature every backend factory has)."""
    return ReferenceBackend(spec, options)


# Registry metadata (backends/registry.py): numpy only, and forward_blobs keeps float64.
create_backend.blob_bytes_per_value = 8
