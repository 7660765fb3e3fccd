"""Initialisation surgery: staged transplants, zero score layers, bilinear upsampling, the bare
trunk and the random start (bench/train/init_weights.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.errors import FcnBenchError, WeightsError
from bench.model.init import bilinear_upsample_weight
from bench.model.spec import Conv, Upsample, build_spec
from bench.train.init_weights import (
    RANDOM_INPUT_SCALE,
    initial_params,
    load_init,
    random_initial_params,
)
from bench.train.recipes import CVPR, HEAVY
from tests.train.test_train import NARROW, _trunk, _write


def test_vgg16_surgery_zero_scores_bilinear_upsampling_copied_trunk():
    spec = build_spec("fcn8s-atonce", width_divisor=NARROW)
    trunk = _trunk(spec)
    params, unused = initial_params(spec, trunk, "vgg16", "trunk.safetensors")
    assert unused == ["fc8.weight"]
    for layer in spec.layers:
        if isinstance(layer, Conv) and layer.zero_init:
            assert not params[f"{layer.name}.weight"].any()
            assert not params[f"{layer.name}.bias"].any()
        elif isinstance(layer, Conv):
            np.testing.assert_array_equal(params[f"{layer.name}.weight"],
                                          trunk[f"{layer.name}.weight"])
        elif isinstance(layer, Upsample):
            np.testing.assert_array_equal(params[f"{layer.name}.weight"],
                                          bilinear_upsample_weight(layer.channels, layer.kernel))
    assert np.allclose(params["scale_pool4.weight"], 0.01)
    assert np.allclose(params["scale_pool3.weight"], 1e-4)


def test_staged_fcn16s_copies_score_fr_from_fcn32s_and_zeroes_score_pool4():
    source_spec = build_spec("fcn32s", width_divisor=NARROW)
    source = random_initial_params(source_spec, 3)
    source["score_fr.weight"] += 1.0  # a trained scorer, not the surgery's zeros
    spec = build_spec("fcn16s", width_divisor=NARROW)
    params, unused = initial_params(spec, source, "fcn32s", "fcn32s.safetensors")
    np.testing.assert_array_equal(params["score_fr.weight"], source["score_fr.weight"])
    assert not params["score_pool4.weight"].any()
    assert unused == ["upscore.weight"]


def test_cvpr_staging_keeps_a_learned_upscore2_and_resets_fixed_ones():
    source_spec = build_spec("fcn16s", width_divisor=NARROW)
    source = random_initial_params(source_spec, 3)
    source["upscore2.weight"] = source["upscore2.weight"] + 0.5  # learned under cvpr
    source["upscore16.weight"] = source["upscore16.weight"] + 0.5
    spec = build_spec("fcn8s", width_divisor=NARROW)
    cvpr, _ = initial_params(spec, source, "fcn16s", "x", CVPR.learned_upsampling)
    heavy, _ = initial_params(spec, source, "fcn16s", "x", HEAVY.learned_upsampling)
    np.testing.assert_array_equal(cvpr["upscore2.weight"], source["upscore2.weight"])
    np.testing.assert_array_equal(heavy["upscore2.weight"], bilinear_upsample_weight(21, 4))


def test_missing_trunk_tensors_are_all_listed():
    spec = build_spec("fcn32s", width_divisor=NARROW)
    trunk = _trunk(spec)
    del trunk["fc7.weight"], trunk["conv3_2.bias"]
    with pytest.raises(WeightsError, match=r"missing conv3_2\.bias, fc7\.weight"):
        initial_params(spec, trunk, "vgg16", "trunk.safetensors")


def test_load_init_refuses_another_variants_archive(tmp_path):
    fcn8s = build_spec("fcn8s", width_divisor=NARROW)
    path = _write(tmp_path / "fcn8s.safetensors", "fcn8s", random_initial_params(fcn8s, 0))
    with pytest.raises(WeightsError, match="is a fcn8s archive; fcn16s training starts from a "
                                           "fcn32s archive"):
        load_init(build_spec("fcn16s", width_divisor=NARROW), str(path), 0)


def test_load_init_reads_a_bare_vgg16_trunk_and_a_staged_snapshot(tmp_path):
    spec32 = build_spec("fcn32s", width_divisor=NARROW)
    trunk_path = tmp_path / "vgg16.safetensors"
    from safetensors.numpy import save_file

    save_file(_trunk(spec32), str(trunk_path))
    params, info = load_init(spec32, str(trunk_path), 0)
    assert info["init_kind"] == "vgg16" and info["init_unused_tensors"] == ["fc8.weight"]
    snapshot = _write(tmp_path / "fcn32s.safetensors", "fcn32s", params)
    params16, info16 = load_init(build_spec("fcn16s", width_divisor=NARROW), str(snapshot), 0)
    assert info16["init_kind"] == "fcn32s"
    np.testing.assert_array_equal(params16["fc7.weight"], params["fc7.weight"])


def test_random_init_is_scaled_for_unit_inputs():
    spec = build_spec("fcn32s", width_divisor=NARROW)
    from bench.model.init import random_params

    np.testing.assert_allclose(random_initial_params(spec, 0)["conv1_1.weight"] *
                               RANDOM_INPUT_SCALE, random_params(spec, 0)["conv1_1.weight"],
                               rtol=1e-6)



def test_init_archive_of_another_width_names_the_option(tmp_path):
    """A narrow archive given to a full-width run says which --width-divisor it needs."""
    from bench.weights.convert import convert_random

    narrow = tmp_path / "narrow.safetensors"
    convert_random(narrow, "fcn32s", 0, width_divisor=8)
    with pytest.raises(FcnBenchError, match="--width-divisor 8"):
        load_init(build_spec("fcn32s"), str(narrow), 0)
    with pytest.raises(FcnBenchError, match="without --width-divisor"):
        full = tmp_path / "full.safetensors"
        convert_random(full, "fcn32s", 0, width_divisor=1)
        load_init(build_spec("fcn32s", width_divisor=8), str(full), 0)
