"""`Numpy32Backend`: the FCN forward pass in float32 numpy, behind fcn-bench's Backend contract.

It reuses the layers of fcn-bench's numpy reference (`backends.reference`), run in float32, so
`cli.py parity --backends numpy32,reference` measures float32 accumulation against float64, and
the conformance suite (FCN_BENCH_CONFORMANCE=numpy32) checks the contract.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from backends.reference import forward_checked
from bench.core.contracts import PRECISIONS, Backend, RunOptions, check_inputs, compile_mode
from bench.core.errors import BackendUnavailable, UsageError
from bench.model.init import placeholder_params
from bench.model.spec import FcnSpec
from bench.weights.archive import check_params


class Numpy32Backend(Backend):
    """One FCN in float32 numpy on the host (no device, nothing queued, nothing to compile)."""

    name = "numpy32"

    def __init__(self, spec: FcnSpec, options: RunOptions | None = None):
        super().__init__(spec, options)
        if self.options.device == "cuda":
            raise BackendUnavailable("'cuda' requested but backend 'numpy32' runs on the host "
                                     "only; use --device cpu")
        if self.options.device not in ("auto", "cpu"):
            raise UsageError(f"unknown device {self.options.device!r}; choose from auto, cpu, "
                             "cuda")
        if self.options.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.options.precision!r}; choose from "
                             f"{', '.join(PRECISIONS)}")
        if self.options.precision != "fp32":
            raise UsageError(f"backend 'numpy32' takes precision fp32 only, not "
                             f"{self.options.precision!r}")
        if compile_mode(self.options.compile) is not None:
            raise UsageError("backend 'numpy32' has nothing to compile; run without --compile")
        self._weights = placeholder_params(spec)  # what a fresh net holds, like every backend

    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        check_params(params, self.spec)  # strict: every problem listed, one line
        self._weights = {name: np.array(value, np.float32) for name, value in params.items()}

    def state_params(self) -> dict[str, np.ndarray]:
        return {item.name: self._weights[item.name].copy() for item in self.spec.parameters()}

    def to_device(self, images: Any) -> Any:
        batches = check_inputs(self.spec, images)
        return next(iter(batches.values())) if len(batches) == 1 else batches

    def forward_device(self, batch: Any) -> Any:
        scores = forward_checked(self.spec, self._weights, batch, self.spec.outputs, np.float32)
        return scores[self.spec.output] if len(scores) == 1 else scores

    def synchronize(self, value: Any = None) -> None:
        """numpy has finished when it returns."""

    def predict(self, images: Any) -> Any:
        scores = self.forward_device(self.to_device(images))  # crops are views: copy them out
        if isinstance(scores, dict):
            return {name: np.ascontiguousarray(value) for name, value in scores.items()}
        return np.ascontiguousarray(scores)

    def predict_labels(self, images: Any) -> Any:
        scores = self.predict(images)
        if isinstance(scores, dict):
            return {name: value.argmax(axis=1).astype(np.uint8) for name, value in scores.items()}
        return scores.argmax(axis=1).astype(np.uint8)

    def forward_blobs(self, images: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        return forward_checked(self.spec, self._weights, check_inputs(self.spec, images), names,
                               np.float32)

    @property
    def device(self) -> str:
        return "cpu"

    def environment(self) -> dict[str, Any]:
        return {"framework": "numpy", "framework_version": np.__version__, "device": "cpu",
                "device_name": platform.machine() or "cpu",
                "precision": self.options.precision, "compute_dtype": "float32"}


def create_backend(spec: FcnSpec, options: RunOptions | None = None) -> Numpy32Backend:
    """The entry point: fcn-bench calls it with a spec and the run options."""
    return Numpy32Backend(spec, options)
