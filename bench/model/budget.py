"""How much memory a latency cell needs, from the spec, before anything is allocated.

`latency --batch 3000000 --size 64x64` was killed by the kernel at 23.5 GB and `--size
100000x100000` ended in a MemoryError traceback: the harness allocated first and found out later.
Here the need is estimated from the spec (weights in the precision's storage dtype, plus the
largest set of activations alive at once during a forward, per image, times the batch), so the
command can refuse a cell that cannot fit with one line giving the estimate (docs/latency.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import FcnBenchError
from bench.model.spec import FcnSpec, layer_inputs

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Framework workspaces (cuDNN/oneDNN scratch, allocator rounding) come on top of the live blobs;
# 25 % is a floor, not a bound: the estimate says "at least".
WORKSPACE_FACTOR = 1.25


class MemoryBudgetError(FcnBenchError):
    """A cell would need more memory than the device (or host) has: refused before allocating."""


def _storage_bytes(precision: str) -> int:
    return 2 if precision in ("bf16", "fp16") else 4


def _compute_bytes(precision: str) -> int:
    return 2 if precision in ("bf16", "fp16", "amp-bf16", "amp-fp16") else 4


def peak_live_elements(spec: FcnSpec, height: int, width: int) -> int:
    """The most activation elements alive at once in one image's forward (blobs are freed after
    their last reader, as backends/torch/model.py does; every input counts while it is read).

    Layer kinds need no case of their own: a Concat or LRN output is one more blob alive beside
    its inputs, a Sum reads several; late fusion's two trunks run one after the other."""
    shapes = spec.blob_shapes(height, width)
    last_use: dict[str, int] = {}
    for index, layer in enumerate(spec.layers):
        for name in layer_inputs(layer):
            last_use[name] = index
    live = set(spec.input_names)
    peak = 0
    for index, layer in enumerate(spec.layers):
        live.add(layer.name)
        peak = max(peak, sum(_numel(shapes[name]) for name in live))
        live -= {name for name in layer_inputs(layer) if last_use.get(name) == index}
    return peak


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


@dataclass(frozen=True)
class CellMemory:
    """Estimated bytes of one cell on its device and on the host."""

    weights_bytes: int
    activations_bytes: int
    input_bytes: int

    @property
    def device_bytes(self) -> int:
        return int((self.weights_bytes + self.activations_bytes + self.input_bytes)
                   * WORKSPACE_FACTOR)

    @property
    def host_bytes(self) -> int:
        """The synthetic input batch (uint8 pixels, then float32) and float32 weights staged."""
        return self.input_bytes * 2 + self.weights_bytes_fp32

    weights_bytes_fp32: int = 0


def estimate_cell(spec: FcnSpec, height: int, width: int, batch: int,
                  precision: str) -> CellMemory:
    """Weights in the storage dtype (amp-* keeps float32 weights and adds the per-call half
    copies), the peak of live activations in the compute dtype, the float32 input batch."""
    params = spec.num_parameters()
    weights = params * _storage_bytes(precision)
    if precision.startswith("amp-"):
        weights += params * 2  # autocast's half copies of the weights, made on every call
    activations = peak_live_elements(spec, height, width) * batch * _compute_bytes(precision)
    classes = sum(spec.output_classes().values())  # every head's float32 scores handed back
    scores = classes * height * width * batch * 4
    channels = sum(item.channels for item in spec.inputs)  # one float32 input per named input
    return CellMemory(weights, activations + scores, channels * height * width * batch * 4,
                      weights_bytes_fp32=params * 4)


def gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def check_fits(what: str, needed: int, available: int | None, where: str,
               advice: str = "use a smaller --batch or --size") -> None:
    """Refuse `needed` bytes beyond `available` (None: unknown, nothing refused)."""
    if available is not None and needed > available:
        raise MemoryBudgetError(f"{what} needs at least {gib(needed)} of {where} memory "
                                f"(estimated from the spec: weights + largest live activations "
                                f"x batch) but {gib(available)} is available; {advice}")
