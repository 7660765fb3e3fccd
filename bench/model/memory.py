"""Refuse a forward pass that cannot fit in memory, before anything is allocated.

`predict` on a 5000x7000 photo and `parity --size 50000x50000` allocated gigabytes and died in
a framework traceback. The need is estimated from the spec with bench/model/budget.py's
estimate (the same one `latency` uses, same wording) and compared with the host's available
memory (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from bench.core.host import available_memory_bytes
from bench.model.budget import WORKSPACE_FACTOR, check_fits, estimate_cell, peak_live_elements
from bench.model.spec import FcnSpec


def forward_bytes(spec: FcnSpec, height: int, width: int, *, batch: int = 1,
                  precision: str = "fp32", kept_blobs: Iterable[str] = (),
                  kept_bytes_per_element: int = 4, weights_loaded: bool = False) -> int:
    """Estimated host bytes of one forward: weights (unless `weights_loaded`: already held, so
    no longer available), peak live activations, input, scores, plus any blobs the caller keeps
    after the forward (parity keeps every compared blob)."""
    estimate = estimate_cell(spec, height, width, batch, precision)
    if weights_loaded:
        estimate = replace(estimate, weights_bytes=0)
    shapes = spec.blob_shapes(height, width)
    kept = 0
    for name in kept_blobs:
        elements = batch
        for size in shapes[name]:
            elements *= size
        kept += elements * kept_bytes_per_element
    return estimate.device_bytes + estimate.input_bytes + kept


def check_forward_memory(what: str, needed: int, device: str = "cpu",
                         available: int | None = None, *,
                         advice: str = "use a smaller image or --size") -> None:
    """Refuse `needed` bytes beyond the host's available memory with one line. On a GPU the
    device's own memory is the framework's to report (cli.py maps its allocation failure)."""
    if device.startswith(("cuda", "gpu")):
        return
    check_fits(what, needed, available if available is not None else available_memory_bytes(),
               "host", advice)


def training_bytes(spec: FcnSpec, height: int, width: int) -> int:
    """Estimated host bytes of one training step beyond the loaded weights, gradients and
    momentum: every blob is kept for the backward pass, plus the gradients alive at its peak
    (float32, with the same workspace allowance as the forward)."""
    shapes = spec.blob_shapes(height, width)
    kept = sum(_numel(shape) for shape in shapes.values())
    peak = peak_live_elements(spec, height, width)
    return int((kept + peak) * 4 * WORKSPACE_FACTOR)


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


class ImageMemoryCheck:
    """Per-image check for loops over a data set (reproduce, train): each new image size is
    estimated once, with the weights already loaded, before its forward allocates."""

    def __init__(self, spec: FcnSpec | None, device: str, precision: str = "fp32", *,
                 training: bool = False):
        self.spec, self.device, self.precision = spec, device, precision
        self.training = training
        self._checked: set[tuple[int, int]] = set()

    def __call__(self, height: int, width: int, image_id: str = "") -> None:
        if self.spec is None or (height, width) in self._checked:
            return
        step = "training on" if self.training else "on"
        what = f"{self.spec.variant} {step} the {width}x{height} image {image_id}".rstrip()
        needed = (training_bytes(self.spec, height, width) if self.training else
                  forward_bytes(self.spec, height, width, precision=self.precision,
                                weights_loaded=True))
        check_forward_memory(f"{what} ({self.precision})", needed, self.device,
                             advice="remove or shrink that image")
        self._checked.add((height, width))
