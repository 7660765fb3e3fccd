"""Caffe semantics, checked independently: the numpy reference against hand-derived values, then
both backends against the reference on every variant and every blob.

The reference (backends/reference/forward.py) shares no code with the backends beyond the spec;
the golden tests below check it (and the backends) against numbers worked out by hand from Caffe's
definitions (pooling_layer.cpp, coord_map.py, deconvolution = conv transpose).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import pytest

import backends
from backends.reference.forward import (
    caffe_pooled_size,
    conv2d,
    deconv2d,
    max_pool_caffe,
    reference_forward,
)
from bench.core.contracts import RunOptions
from bench.model.init import bilinear_filter, random_params
from bench.model.spec import (
    VARIANTS,
    Conv,
    Crop,
    FcnSpec,
    MaxPool,
    Upsample,
    build_spec,
    coord_maps,
)

BACKENDS = backends.available_backends()
WIDTH_DIVISOR = 16
# Max |backend - reference| / max |reference| per blob: float32 backends against a float64
# reference through <= 19 layers; see bench/evaluation/parity.py TOLERANCES for the derivation.
MAX_REL = 1e-4


def random_images(height: int, width: int, seed: int = 0, batch: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((batch, 3, height, width)) * 60
            ).astype(np.float32)


def run_backend(name: str, spec: FcnSpec, params: dict, images: np.ndarray,
                names: list[str]) -> dict[str, np.ndarray]:
    backend = backends.create_backend(name, spec, RunOptions(device="cpu"))
    backend.load_params(params)
    return backend.forward_blobs(images, names)


# -- the reference's building blocks against their definitions ---------------------------------


def test_conv2d_is_the_textbook_cross_correlation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    weight = rng.standard_normal((4, 3, 3, 3))
    bias = rng.standard_normal(4)
    out = conv2d(x, weight, bias, stride=2, pad=1)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 4, 3, 3))
    for n, o, i, j in np.ndindex(*expected.shape):
        window = padded[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
        expected[n, o, i, j] = (window * weight[o]).sum() + bias[o]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_deconv2d_is_the_adjoint_of_the_strided_convolution():
    """Caffe defines deconvolution as the gradient of convolution: <D x, y> = <x, C y>."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((3, 2, 4, 4))  # [C_in, C_out, k, k]
    x = rng.standard_normal((1, 3, 3, 5))
    y = rng.standard_normal((1, 2, 2 * 2 + 4, 2 * 4 + 4))  # (n - 1) * s + k
    conv_y = conv2d(y, weight, np.zeros(3), stride=2, pad=0)  # [O=C_in, I=C_out, k, k]
    assert deconv2d(x, weight, stride=2).shape == y.shape
    np.testing.assert_allclose((deconv2d(x, weight, 2) * y).sum(), (x * conv_y).sum(),
                               rtol=1e-12)


@pytest.mark.parametrize(("size", "pooled"), [
    # docs/fidelity.md "Ceil pooling", from Caffe's ceil((in - 2) / 2) + 1 = ceil(in / 2)
    (698, 349), (349, 175), (175, 88), (88, 44), (44, 22), (199, 100), (25, 13), (13, 7),
])
def test_caffe_pooled_size_rounds_up(size, pooled):
    assert caffe_pooled_size(size, 2, 2) == pooled


def test_ceil_pooling_of_3x3_is_2x2_with_a_one_row_last_window():
    # Negative values: a last window padded with zeros (instead of clipped) would give 0.
    x = -np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    expected = np.array([[[[-1, -3], [-7, -9]]]], dtype=np.float64)
    np.testing.assert_array_equal(max_pool_caffe(x, 2, 2), expected)


# -- golden geometry, through the reference and every backend ----------------------------------


def implementations(spec: FcnSpec, params: dict, images: np.ndarray, names: list[str]):
    """(name, blobs) of the reference and every available backend."""
    yield "reference", reference_forward(spec, params, images, names)
    for name in BACKENDS:
        yield name, run_backend(name, spec, params, images, names)


def test_every_implementation_pools_with_caffe_windows_on_odd_sizes():
    """2x2/2 ceil pooling (TF: SAME) and a 3x3/2 pool (TF: the explicit -inf padding path)."""
    x = -np.arange(3 * 5 * 7, dtype=np.float32).reshape(1, 3, 5, 7)  # 5x7: odd both ways
    pool2 = FcnSpec("golden-pool2", 3, (MaxPool("score", "data"),))
    pool3 = FcnSpec("golden-pool3", 3, (MaxPool("score", "data", kernel=3, stride=2),))
    # Caffe windows: rows [0,2) [2,4) [4,5); cols [0,2) [2,4) [4,6) [6,7): the top-left cell
    # of each window is its maximum since values decrease.
    expected2 = x[:, :, ::2, ::2]
    # 3x3/2: ceil((5 - 3) / 2) + 1 = 2 rows, ceil((7 - 3) / 2) + 1 = 3 columns (SAME gives 3, 4).
    expected3 = x[:, :, 0:3:2, 0:5:2]
    for name, blobs in implementations(pool2, {}, x, ["score"]):
        np.testing.assert_array_equal(blobs["score"], expected2, err_msg=name)
    for name, blobs in implementations(pool3, {}, x, ["score"]):
        np.testing.assert_array_equal(blobs["score"], expected3, err_msg=name)


def test_an_impulse_lands_where_the_coordinate_map_says():
    """score_fr -> 64/32 bilinear upscore -> top-left crop, as in FCN-32s, on a 1-cell impulse.

    A 2x2/32 conv with its weight on tap (0, 0) picks data[32u, 32v] into score_fr cell (u, v);
    coord_map puts that cell's centre at image coordinate 32u + 0.5. The bilinear kernel peaks on
    its two middle taps, so after the crop the impulse must peak at rows/cols 32u and 32u + 1.
    """
    layers = (Conv("score_fr", "data", 3, 3, kernel=2, stride=32, relu=False),
              Upsample("upscore", "score_fr", 3, kernel=64, stride=32),
              Crop("score", "upscore", reference="data"))
    from bench.model.spec import derive_crop_offsets

    spec = FcnSpec("golden-impulse", 3, derive_crop_offsets(layers))
    # Hand-derived: upscore cell x sits at image coordinate 32 * (x - 63/2) / 32 + 1/2 = x - 31.
    assert spec.crop_offsets == {"score": 31}
    score_fr_map = coord_maps(spec.layers)["score_fr"]
    assert (score_fr_map.scale, score_fr_map.shift) == (32, Fraction(1, 2))

    weight = np.zeros((3, 3, 2, 2), np.float32)
    weight[np.arange(3), np.arange(3), 0, 0] = 1  # identity over channels, tap (0, 0)
    params = {"score_fr.weight": weight, "score_fr.bias": np.zeros(3, np.float32),
              "upscore.weight": np.zeros((3, 3, 64, 64), np.float32)}
    params["upscore.weight"][np.arange(3), np.arange(3)] = bilinear_filter(64)
    images = np.zeros((1, 3, 40, 40), np.float32)
    images[0, :, 32, 32] = 1  # score_fr cell (1, 1)

    # Hand-derived: upscore[32:96, 32:96] = kernel; the crop at 31 shifts it by -31, so
    # score[y, x] = kernel[y - 1, x - 1] for y, x >= 1 and 0 on row/column 0.
    expected = np.zeros((1, 3, 40, 40), np.float32)
    expected[0, :, 1:, 1:] = bilinear_filter(64)[:39, :39]
    centre = float(score_fr_map.scale * 1 + score_fr_map.shift)  # 32.5
    for name, blobs in implementations(spec, params, images, ["score"]):
        score = blobs["score"]
        np.testing.assert_allclose(score, expected, rtol=1e-6, atol=1e-7, err_msg=name)
        peak_rows = np.flatnonzero(score[0, 0].max(axis=1) == score[0, 0].max())
        assert peak_rows.tolist() == [32, 33], name
        assert peak_rows.mean() == centre, name  # a centred crop would move it by 3 cells


def test_shapes_for_a_1x1_input_match_the_hand_derived_table():
    """docs/fidelity.md "Blob sizes", input 1: conv1 199, pools 100/50/25/13/7, fc6 1, upscore 64,
    upscore2 4, upscore16 80, upscore_pool4 10, upscore8 88 (narrow net: same geometry)."""
    expected = {"conv1_1": 199, "pool1": 100, "pool2": 50, "pool3": 25, "pool4": 13,
                "pool5": 7, "fc6": 1, "upscore": 64, "upscore2": 4, "upscore16": 80,
                "upscore_pool4": 10, "upscore8": 88, "score": 1}
    for variant in VARIANTS:
        spec = build_spec(variant, width_divisor=WIDTH_DIVISOR)
        blobs = reference_forward(spec, random_params(spec, 0), random_images(1, 1))
        for name, size in expected.items():
            if name in blobs:
                assert blobs[name].shape[2:] == (size, size), (variant, name)


# -- both backends equal the reference on every variant and every blob -------------------------


@functools.cache
def reference_blobs(variant: str, height: int, width: int) -> dict[str, np.ndarray]:
    spec = build_spec(variant, width_divisor=WIDTH_DIVISOR)
    return reference_forward(spec, random_params(spec, 0), random_images(height, width, seed=2))


@pytest.mark.parametrize("size", [(37, 53), (1, 1)], ids=["37x53", "1x1"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", BACKENDS)
def test_backend_equals_the_reference_on_every_blob(name, variant, size):
    spec = build_spec(variant, width_divisor=WIDTH_DIVISOR)
    expected = reference_blobs(variant, *size)
    names = list(spec.blob_names)
    got = run_backend(name, spec, random_params(spec, 0), random_images(*size, seed=2), names)
    for blob in names:
        scale = np.abs(expected[blob]).max()
        assert got[blob].shape == expected[blob].shape, blob
        assert np.abs(got[blob] - expected[blob]).max() <= MAX_REL * scale, blob
    np.testing.assert_array_equal(got["score"].argmax(axis=1),
                                  expected["score"].argmax(axis=1))
