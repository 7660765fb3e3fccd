"""Test helper: write and read weight archives of every zoo model before bench.weights tells
them apart by their tensors (branch zoo2). A no-op once it does; remove it then."""

from __future__ import annotations

import pytest

from bench.spec import build_spec


def zoo_weights_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until bench.weights tells every zoo model apart by its tensors (branch zoo2), trust the
    archive's `variant` metadata for zoo models; a no-op once the archives load as they are."""
    import bench.weights as weights
    from bench.spec import MODEL_NAMES

    spec = build_spec("siftflow-fcn16s", width_divisor=16)
    try:
        weights.infer_spec(spec.param_shapes(), {"variant": spec.variant})
        return
    except Exception:
        pass
    original = weights._variant_of
    monkeypatch.setattr(weights, "VARIANTS", MODEL_NAMES)
    monkeypatch.setattr(weights, "_variant_of", lambda path, keys, metadata: (
        metadata.get("variant") if metadata.get("variant") in MODEL_NAMES
        else original(path, keys, metadata)))
