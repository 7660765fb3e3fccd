"""Initialisers: bilinear kernels as Caffe's surgery writes them, deterministic random weights."""

from __future__ import annotations

import numpy as np
import pytest

from bench.model.init import (
    bilinear_filter,
    bilinear_upsample_weight,
    fixed_params,
    new_layer_params,
    placeholder_params,
    random_params,
)
from bench.model.spec import VARIANTS, build_spec


def test_bilinear_filters_match_surgery_upsample_filt():
    np.testing.assert_allclose(bilinear_filter(4)[1] / 0.75, [0.25, 0.75, 0.75, 0.25])
    k16 = bilinear_filter(16)
    np.testing.assert_allclose(k16[7, :8] / k16[7, 7], (2 * np.arange(8) + 1) / 15)
    k64 = bilinear_filter(64)
    np.testing.assert_allclose(np.diag(k64)[:32], ((2 * np.arange(32) + 1) / 64) ** 2)
    k3 = bilinear_filter(3)  # odd kernel: centre weight 1
    assert k3[1, 1] == 1.0 and k3[0, 0] == 0.25


def test_bilinear_weight_is_diagonal_only():
    weight = bilinear_upsample_weight(21, 4)
    off_diagonal = weight.copy()
    off_diagonal[np.arange(21), np.arange(21)] = 0
    assert not off_diagonal.any()  # no class mixing (docs/fidelity.md "Heads: FCN-32s, ...")
    assert np.array_equal(weight[5, 5], bilinear_filter(4))


def test_fixed_params_cover_upsampling_and_scales():
    params = fixed_params(build_spec("fcn8s-atonce"))
    assert set(params) == {"upscore2.weight", "upscore_pool4.weight", "upscore8.weight",
                           "scale_pool4.weight", "scale_pool3.weight"}
    assert np.all(params["scale_pool3.weight"] == np.float32(1e-4))


@pytest.mark.parametrize("variant", VARIANTS)
def test_random_params_are_complete_deterministic_and_seed_dependent(variant):
    spec = build_spec(variant, width_divisor=32)
    first, again, other = (random_params(spec, seed) for seed in (3, 3, 4))
    assert {k: v.shape for k, v in first.items()} == spec.param_shapes()
    assert all(v.dtype == np.float32 for v in first.values())
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["conv1_1.weight"], other["conv1_1.weight"])
    assert np.array_equal(first["upscore2.weight" if variant != "fcn32s" else "upscore.weight"],
                          fixed_params(spec)["upscore2.weight" if variant != "fcn32s"
                                             else "upscore.weight"])


def test_random_params_are_he_scaled():
    spec = build_spec("fcn32s", width_divisor=4)
    weight = random_params(spec, 0)["conv3_2.weight"]
    fan_in = weight.shape[1] * 9
    assert abs(weight.std() - np.sqrt(2 / fan_in)) < 0.05 * np.sqrt(2 / fan_in)


def test_new_layer_params_are_the_reference_surgery():
    spec = build_spec("fcn8s-atonce", width_divisor=16)
    params = new_layer_params(spec)
    assert set(params) == {"score_fr.weight", "score_fr.bias", "score_pool4.weight",
                           "score_pool4.bias", "score_pool3.weight", "score_pool3.bias",
                           *fixed_params(spec)}
    assert not any(params[name].any() for name in params if name.startswith("score"))
    placeholder = placeholder_params(spec)
    assert {k: v.shape for k, v in placeholder.items()} == spec.param_shapes()
    assert not placeholder["conv1_1.weight"].any()
    assert np.array_equal(placeholder["upscore8.weight"], params["upscore8.weight"])
