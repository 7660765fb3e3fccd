"""The shared spec: derived crop offsets, Caffe geometry, parameter inventory, variant errors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.core.errors import UsageError
from bench.model.spec import (
    VARIANTS,
    Conv,
    Crop,
    MaxPool,
    Scale,
    Sum,
    Upsample,
    build_spec,
    coord_maps,
    derive_crop_offsets,
    get_spec,
)


def test_crop_offsets_are_derived_as_in_the_reference_prototxts():
    # docs/fidelity.md "Crop offsets": 19; 5 and 27; 5, 9 and 31 (never typed into the spec).
    assert get_spec("fcn32s").crop_offsets == {"score": 19}
    assert get_spec("fcn16s").crop_offsets == {"score_pool4c": 5, "score": 27}
    assert get_spec("fcn8s").crop_offsets == {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
    assert get_spec("fcn8s-atonce").crop_offsets == get_spec("fcn8s").crop_offsets


def test_offsets_come_from_geometry_not_from_the_layer_table():
    """Change the geometry and the derived offset follows (e.g. FCN-AlexNet's k63 upscore -> 18)."""
    layers = tuple(dataclasses.replace(layer, offset=None) if isinstance(layer, Crop) else layer
                   for layer in get_spec("fcn32s").layers)
    alexnet_like = tuple(dataclasses.replace(layer, kernel=63)
                         if isinstance(layer, Upsample) else layer for layer in layers)
    # k63 on the VGG trunk: upscore maps to u - 18.5 + ... -> not integral -> refused clearly.
    with pytest.raises(ValueError, match="no integral"):
        derive_crop_offsets(alexnet_like)
    assert derive_crop_offsets(layers)[-1].offset == 19
    # One pixel less padding on conv1_1 shifts every blob by one input pixel: offset 18.
    less_pad = tuple(dataclasses.replace(layer, pad=99) if layer.name == "conv1_1" else layer
                     for layer in layers)
    assert derive_crop_offsets(less_pad)[-1].offset == 18


def test_coordinate_maps_match_the_hand_derivation():
    maps = coord_maps(get_spec("fcn8s").layers)

    def affine(blob):
        return float(maps[blob].scale), float(maps[blob].shift)

    assert affine("conv1_1") == (1, -99)
    assert affine("pool1") == (2, -98.5)
    assert affine("pool3") == (8, -95.5)
    assert affine("pool4") == (16, -91.5)
    assert affine("pool5") == (32, -83.5)
    assert affine("fc6") == (32, 12.5)
    assert affine("upscore2") == (16, -11.5)
    assert affine("upscore_pool4") == (8, -23.5)
    assert affine("upscore8") == (1, -31)


@pytest.mark.parametrize(
    ("size", "expected"),
    [  # docs/fidelity.md "Blob sizes": conv1, pool1..5, fc6, upscore2/16, upscore_pool4, upscore8
        (500, (698, 349, 175, 88, 44, 22, 16, 34, 560, 70, 568)),
        (375, (573, 287, 144, 72, 36, 18, 12, 26, 432, 54, 440)),
        (224, (422, 211, 106, 53, 27, 14, 8, 18, 304, 38, 312)),
        (1, (199, 100, 50, 25, 13, 7, 1, 4, 80, 10, 88)),
    ],
)
def test_blob_sizes_follow_caffe_ceil_pooling(size, expected):
    s8 = get_spec("fcn8s").blob_shapes(size, size)
    s16 = get_spec("fcn16s").blob_shapes(size, size)
    got = (s8["conv1_1"][1], *(s8[f"pool{i}"][1] for i in range(1, 6)), s8["fc6"][1],
           s8["upscore2"][1], s16["upscore16"][1], s8["upscore_pool4"][1], s8["upscore8"][1])
    assert got == expected
    assert get_spec("fcn32s").blob_shapes(size, size)["upscore"][1] == {500: 544, 375: 416,
                                                                       224: 288, 1: 64}[size]


@given(st.integers(1, 600), st.integers(1, 600), st.sampled_from(VARIANTS))
def test_every_input_size_gives_a_full_size_score(height, width, variant):
    shapes = build_spec(variant).blob_shapes(height, width)
    assert shapes["score"] == (21, height, width)  # crops always in bounds thanks to pad 100


def test_parameter_inventory_matches_the_caffemodels():
    # docs/fidelity.md "Parameter counts" (summed over the reference blob shapes).
    counts = {v: get_spec(v).num_parameters() for v in VARIANTS}
    assert counts == {"fcn32s": 136_152_917, "fcn16s": 134_815_994, "fcn8s": 134_489_759,
                      "fcn8s-atonce": 134_490_527}
    shapes = get_spec("fcn8s-atonce").param_shapes()
    assert shapes["conv1_1.weight"] == (64, 3, 3, 3)
    assert shapes["fc6.weight"] == (4096, 512, 7, 7)
    assert shapes["fc7.weight"] == (4096, 4096, 1, 1)
    assert shapes["score_fr.weight"] == (21, 4096, 1, 1)
    assert shapes["upscore2.weight"] == (21, 21, 4, 4)
    assert shapes["upscore8.weight"] == (21, 21, 16, 16)
    assert shapes["scale_pool4.weight"] == (512,)
    assert shapes["scale_pool3.weight"] == (256,)
    assert "upscore8.bias" not in shapes  # deconvolutions have no bias


def test_learning_multipliers_follow_the_reference_solver():
    params = {p.name: p for p in get_spec("fcn8s-atonce").parameters()}
    assert (params["conv3_1.weight"].lr_mult, params["conv3_1.weight"].decay_mult) == (1, 1)
    assert (params["conv3_1.bias"].lr_mult, params["conv3_1.bias"].decay_mult) == (2, 0)
    assert not params["upscore8.weight"].trainable
    assert not params["scale_pool3.weight"].trainable


def test_layer_kinds_and_caffe_details():
    spec = get_spec("fcn8s-atonce")
    conv1_1 = spec.layer("conv1_1")
    assert isinstance(conv1_1, Conv) and conv1_1.pad == 100
    assert all(layer.pad == 1 for layer in spec if isinstance(layer, Conv)
               and layer.kernel == 3 and layer.name != "conv1_1")
    fc6 = spec.layer("fc6")
    assert (fc6.kernel, fc6.pad) == (7, 0)
    assert [layer.name for layer in spec if isinstance(layer, MaxPool)] == [
        f"pool{i}" for i in range(1, 6)]
    assert {layer.name: layer.value for layer in spec if isinstance(layer, Scale)} == {
        "scale_pool4": 0.01, "scale_pool3": 0.0001}
    assert spec.layer("score_pool4").bottom == "scale_pool4"
    assert get_spec("fcn8s").layer("score_pool4").bottom == "pool4"
    assert [layer.bottoms for layer in spec if isinstance(layer, Sum)] == [
        ("upscore2", "score_pool4c"), ("upscore_pool4", "score_pool3c")]
    assert not any(layer.relu for layer in spec if isinstance(layer, Conv)
                   and layer.name.startswith("score"))


def test_flops_count_convolutions_and_deconvolutions():
    spec = build_spec("fcn32s", width_divisor=64)
    shapes = spec.blob_shapes(1, 1)
    expected = 0
    for layer in spec:
        if isinstance(layer, Conv):
            _, h, w = shapes[layer.name]
            expected += 2 * layer.in_channels * layer.out_channels * layer.kernel**2 * h * w
        if isinstance(layer, Upsample):
            _, h, w = shapes[layer.bottom]
            expected += 2 * layer.channels**2 * layer.kernel**2 * h * w
    assert spec.flops(1, 1) == expected
    assert 360e9 < get_spec("fcn8s").flops(500, 500) < 366e9


def test_narrow_specs_keep_the_geometry():
    narrow = build_spec("fcn8s", width_divisor=16)
    assert narrow.crop_offsets == get_spec("fcn8s").crop_offsets
    assert narrow.layer("conv5_3").out_channels == 32
    assert narrow.blob_shapes(37, 53)["score"] == (21, 37, 53)


def test_unknown_variant_lists_the_choices():
    with pytest.raises(UsageError, match=r"unknown variant 'fcn4s'; choose from voc-fcn32s, "
                                         r"voc-fcn16s, .*, ade20k-fcn8s, fcn32s, fcn16s, fcn8s, "
                                         r"fcn8s-atonce$"):
        get_spec("fcn4s")


def test_bad_input_sizes_are_refused():
    with pytest.raises(UsageError, match="at least 1x1"):
        get_spec("fcn8s").blob_shapes(0, 5)
