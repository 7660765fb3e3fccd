"""Fidelity of every model: both backends equal the float64 numpy reference, blob by blob.

The narrow parity of every model (channels / 16, an odd-sized input: the geometry of pad 100,
ceil pooling, derived crops, grouped convs, LRN, fusion, two heads is the full one) is in the
conformance suite (tests/backends/test_conformance.py); here: full-width runs of one model per
family (slow), and the layer semantics behind them. Gates are the fp32 parity gates of
bench/evaluation/parity.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import backends
from backends.reference import lrn_caffe, reference_forward
from bench.core.contracts import RunOptions, check_inputs
from bench.core.errors import UsageError
from bench.model.init import random_params
from bench.model.spec import LRN, build_spec
from tests.backends.test_conformance import (
    WIDTH_DIVISOR,
    assert_parity,
    compared_blobs,
    model_inputs,
    narrow_case,
)

NARROW = WIDTH_DIVISOR
# The framework backends; every backend's narrow parity on every model is a conformance test
# (tests/backends/test_conformance.py test_backend_equals_reference_on_every_model).
AVAILABLE = [name for name in backends.available_backends() if name in backends.BACKEND_NAMES]


@pytest.mark.slow
@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("name", ["voc-fcn-alexnet", "nyud-fcn32s-color-hha", "siftflow-fcn16s",
                                  "nyud-fcn32s-color-d", "ade20k-fcn8s"])
def test_full_width_parity(name, backend):
    spec = build_spec(name)
    params = random_params(spec, seed=2)
    images = model_inputs(spec, 19, 23, seed=3)
    reference = reference_forward(spec, params, images, compared_blobs(spec))
    model = backends.create_backend(backend, spec, RunOptions(device="cpu"))
    model.load_params(params)
    assert_parity(spec, reference, model.forward_blobs(images, compared_blobs(spec)), backend)


# ----------------------------------------------------------------------------------------------
# The layer semantics behind the parity, checked on their own


def caffe_lrn_loops(x: np.ndarray, n: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """Caffe lrn_layer.cpp transcribed literally: per channel, the clipped window sum / n."""
    out = np.empty_like(x)
    half = (n - 1) // 2
    for c in range(x.shape[1]):
        window = x[:, max(0, c - half):min(x.shape[1], c + half + 1)]
        out[:, c] = x[:, c] / (k + alpha / n * (window**2).sum(axis=1)) ** beta
    return out


def test_reference_lrn_is_caffes_formula():
    x = np.random.default_rng(0).normal(0, 30, (2, 7, 3, 4))
    np.testing.assert_allclose(lrn_caffe(x, 5, 1e-3, 0.75, 1.0),
                               caffe_lrn_loops(x, 5, 1e-3, 0.75, 1.0), rtol=1e-12)
    # alpha per element (TF's convention) is a different function: the test can tell.
    assert not np.allclose(lrn_caffe(x, 5, 1e-3, 0.75, 1.0), caffe_lrn_loops(x, 1, 1e-3, .75, 1))


@pytest.mark.parametrize("backend", AVAILABLE)
def test_backend_lrn_matches_caffe(backend):
    layer = LRN("norm", "data", local_size=5, alpha=1e-2, beta=0.75, k=2.0)
    x = np.random.default_rng(1).normal(0, 10, (2, 7, 3, 4)).astype(np.float32)
    expected = caffe_lrn_loops(x.astype(np.float64), 5, 1e-2, 0.75, 2.0)
    if backend == "torch":
        import torch

        from backends.torch.model import _make_module

        got = _make_module(layer)(torch.from_numpy(x)).numpy()
    else:
        import tensorflow as tf

        from backends.tensorflow.model import caffe_lrn

        got = caffe_lrn(tf.constant(x.transpose(0, 2, 3, 1)), layer).numpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_late_fusion_averages_the_two_streams():
    spec, params, _, _ = narrow_case("nyud-fcn32s-color-hha")
    same = dict(params)
    for name in params:  # identical trunks: the average of two equal maps is either map
        if name.endswith("hha.weight") or name.endswith("hha.bias"):
            same[name] = params[name.replace("hha", "color")]
    image = model_inputs(build_spec("nyud-fcn32s-hha", width_divisor=NARROW), 21, 25)
    blobs = reference_forward(spec, same, {"color": image, "hha": image},
                              ["score_frcolor", "score_fused"])
    np.testing.assert_allclose(blobs["score_fused"], blobs["score_frcolor"], rtol=1e-12)


def test_early_fusion_puts_log_depth_in_channel_3():
    spec, params, images, _ = narrow_case("nyud-fcn32s-color-d")
    only_depth = dict(params)
    weight = params["conv1_1_bgrd.weight"].copy()
    weight[:, :3] = 0
    only_depth["conv1_1_bgrd.weight"] = weight
    moved = {"color": images["color"] + 50, "depth": images["depth"]}
    a = reference_forward(spec, only_depth, images, ["score"])["score"]
    b = reference_forward(spec, only_depth, moved, ["score"])["score"]
    np.testing.assert_array_equal(a, b)  # colour does not reach it; depth is channel 3


def test_inputs_are_checked_by_name_channels_and_size():
    spec = build_spec("nyud-fcn32s-color-hha", width_divisor=NARROW)
    color = np.zeros((1, 3, 8, 9), np.float32)
    with pytest.raises(UsageError, match="takes 2 inputs \\(color, hha\\): pass a dict"):
        check_inputs(spec, color)
    with pytest.raises(UsageError, match=r"takes inputs color, hha, got color$"):
        check_inputs(spec, {"color": color})
    with pytest.raises(UsageError, match="input 'hha' must be \\(N, 3, H, W\\)"):
        check_inputs(spec, {"color": color, "hha": color[:, :1]})
    with pytest.raises(UsageError, match="differ in batch or size"):
        check_inputs(spec, {"color": color, "hha": color[..., :8]})
    depth = build_spec("nyud-fcn32s-color-d", width_divisor=NARROW)
    checked = check_inputs(depth, {"color": color, "depth": color[:, :1].astype(np.float64)})
    assert checked["depth"].dtype == np.float32 and checked["depth"].shape == (1, 1, 8, 9)
    # One-input models keep taking a plain array.
    assert set(check_inputs(build_spec("fcn8s", width_divisor=NARROW), color)) == {"data"}
