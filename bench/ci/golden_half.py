"""The half-precision gate of the golden suite (docs/latency.md): labels of a bf16/fp16 run agree
with the same backend's fp32 labels on the decided pixels of the golden set."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.ci.golden import (
    GOLDEN_SPLIT,
    GoldenConfig,
    GoldenImage,
    default_spec_factory,
    golden_params,
)
from bench.ci.golden_zoo import ZooSample, make_zoo_samples, zoo_scores
from bench.core.contracts import Backend
from bench.core.errors import describe_error
from bench.model.spec import VARIANTS, FcnSpec

# ----------------------------------------------------------------------------------------------
# The half-precision gate (docs/latency.md): labels agree with fp32's on the golden set


HalfFactory = Callable[[str, FcnSpec, str], Backend]  # (backend name, spec, precision)


_NO_KERNEL = "No OpKernel was registered"  # TensorFlow's message for a missing dtype kernel


def _half_row(identity: dict[str, Any], spec: FcnSpec, params: dict[str, np.ndarray],
              backend_factory: HalfFactory, precision: str,
              samples: Sequence[ZooSample]) -> dict[str, Any]:
    """One network's gate row: fp32 scores and half-precision labels of every head."""
    from bench.evaluation.parity import half_precision_gate

    backend = identity["backend"]
    try:
        reference = backend_factory(backend, spec, "fp32")
        reference.load_params(params)
        scores = [head for sample in samples for head in zoo_scores(reference, sample)]
        half = backend_factory(backend, spec, precision)
        half.load_params(params)
        labels = [head.argmax(axis=0) for sample in samples
                  for head in zoo_scores(half, sample)]
    except Exception as error:  # a crash is this row's verdict; the other rows still run
        if isinstance(error, NotImplementedError) or _NO_KERNEL in str(error):
            # The framework has no kernel for a layer in this type on this device (torch's
            # CPU LRN, TF's LRN in bf16): shown and noted, not a numerical verdict.
            return {**identity, "status": "unsupported", "error": describe_error(error),
                    "passed": None}
        return {**identity, "status": "failed", "error": describe_error(error), "passed": False}
    return {**identity, "status": "ok", "error": None,
            **half_precision_gate(scores, labels, precision)}


def half_precision_rows(backend_factory: HalfFactory, backend: str, precision: str,
                        images: Sequence[GoldenImage], *, variants: Sequence[str] = VARIANTS,
                        models: Sequence[str] = (), config: GoldenConfig | None = None,
                        progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per VOC variant (on `images`) and per zoo model (on its own generated data, every
    head): labels in `precision` against fp32 (same backend, same golden weights) on the decided
    pixels, gated by bench.evaluation.parity.half_precision_gate (docs/latency.md). The fp32 gates
    of the suite are unchanged; this is an extra check for half-precision runs."""
    config = config or GoldenConfig()
    voc = [ZooSample(item.id, {"data": item.image}, {}) for item in images]
    rows = []
    for name in [*variants, *models]:
        if progress:
            progress(f"{name} {backend} {precision} against fp32")
        spec = default_spec_factory(name, config.width_divisor)
        params = golden_params(spec, config.weights_seed)
        identity = {"variant": name, "backend": backend, "precision": precision,
                    "width_divisor": config.width_divisor, "split": GOLDEN_SPLIT}
        if name in VARIANTS:
            rows.append(_half_row(identity, spec, params, backend_factory, precision, voc))
            continue
        with tempfile.TemporaryDirectory(prefix="fcn-golden-zoo-") as workdir:
            split, samples, _ = make_zoo_samples(
                name, workdir, seed=config.data_seed, num_images=config.zoo_images,
                voc_samples=images, voc_split=GOLDEN_SPLIT)
        rows.append(_half_row({**identity, "split": split}, spec, params, backend_factory,
                              precision, samples))
    return rows
