"""The model catalogue as specs: names, derived crop offsets, blob inventories, parameter counts.

Expected numbers are those of the reference prototxts and net.py files (docs/fidelity.md lists
them with their sources); the spec never types an offset or a count, it derives them.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.core.errors import UsageError
from bench.model.spec import (
    LRN,
    MODEL_NAMES,
    MODELS,
    VARIANTS,
    Concat,
    Conv,
    MaxPool,
    Sum,
    Upsample,
    build_spec,
    get_spec,
    resolve_model,
)
from bench.model.zoo import MODEL_ENTRIES

# Offsets of each family as written in the reference's generated prototxts (Crop offset).
OFFSETS_32S = {"score": 19}
OFFSETS_16S = {"score_pool4c": 5, "score": 27}
OFFSETS_8S = {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
EXPECTED_OFFSETS = {
    "voc-fcn32s": OFFSETS_32S, "voc-fcn16s": OFFSETS_16S, "voc-fcn8s": OFFSETS_8S,
    "voc-fcn8s-atonce": OFFSETS_8S, "voc-fcn-alexnet": {"score": 18},
    "nyud-fcn32s-color": OFFSETS_32S, "nyud-fcn32s-hha": OFFSETS_32S,
    "nyud-fcn32s-color-d": OFFSETS_32S, "nyud-fcn32s-color-hha": OFFSETS_32S,
    "siftflow-fcn32s": {"score_sem": 19, "score_geo": 19},
    "siftflow-fcn16s": {"score_pool4_semc": 5, "score_sem": 27, "score_pool4_geoc": 5,
                        "score_geo": 27},
    "siftflow-fcn8s": {"score_pool4_semc": 5, "score_pool3_semc": 9, "score_sem": 31,
                       "score_pool4_geoc": 5, "score_pool3_geoc": 9, "score_geo": 31},
    "pascalcontext-fcn32s": OFFSETS_32S, "pascalcontext-fcn16s": OFFSETS_16S,
    "pascalcontext-fcn8s": OFFSETS_8S,
    "ade20k-fcn8s": OFFSETS_8S,  # CSAIL deploy_FCN.prototxt: offsets 5, 9, 31
}

# Parameter totals summed over the blob shapes of each net.py / prototxt (docs/fidelity.md).
EXPECTED_PARAMETERS = {
    "voc-fcn32s": 136_152_917, "voc-fcn16s": 134_815_994, "voc-fcn8s": 134_489_759,
    "voc-fcn8s-atonce": 134_490_527, "voc-fcn-alexnet": 58_704_590,
    "nyud-fcn32s-color": 140_978_024, "nyud-fcn32s-hha": 140_978_024,
    "nyud-fcn32s-color-d": 140_978_600, "nyud-fcn32s-color-hha": 275_402_448,
    "siftflow-fcn32s": 138_905_444, "siftflow-fcn16s": 135_568_424,
    "siftflow-fcn8s": 134_751_980, "pascalcontext-fcn32s": 149_251_964,
    "pascalcontext-fcn16s": 138_281_144, "pascalcontext-fcn8s": 135_589_364,
    "ade20k-fcn8s": 141_562_917,
}


def test_the_catalogue_has_every_released_model_and_the_voc_aliases():
    assert tuple(EXPECTED_OFFSETS) == MODELS
    assert set(MODEL_NAMES) == set(MODELS) | set(VARIANTS)
    assert VARIANTS == ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")  # default matrices
    for alias, name in zip(VARIANTS, MODELS[:4], strict=True):
        assert resolve_model(alias) is resolve_model(name)
        assert build_spec(alias) == build_spec(name)
        assert build_spec(name).variant == alias  # archives and records keep their key


@pytest.mark.parametrize("name", MODELS)
def test_crop_offsets_are_derived_as_in_the_reference_prototxts(name):
    assert get_spec(name).crop_offsets == EXPECTED_OFFSETS[name]
    # Narrow test networks keep the geometry.
    assert build_spec(name, width_divisor=16).crop_offsets == EXPECTED_OFFSETS[name]


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_match_the_reference_blobs(name):
    assert get_spec(name).num_parameters() == EXPECTED_PARAMETERS[name]


def test_alexnet_blob_inventory():
    shapes = get_spec("voc-fcn-alexnet").param_shapes()
    assert {name: shape for name, shape in shapes.items() if name.endswith(".weight")} == {
        "conv1.weight": (96, 3, 11, 11), "conv2.weight": (256, 48, 5, 5),
        "conv3.weight": (384, 256, 3, 3), "conv4.weight": (384, 192, 3, 3),
        "conv5.weight": (256, 192, 3, 3), "fc6.weight": (4096, 256, 6, 6),
        "fc7.weight": (4096, 4096, 1, 1), "score_fr.weight": (21, 4096, 1, 1),
        "upscore.weight": (21, 21, 63, 63)}
    spec = get_spec("voc-fcn-alexnet")
    # CaffeNet order: pooling before LRN; LRN 5 / 1e-4 / 0.75 / k 1.
    names = [layer.name for layer in spec.layers]
    assert names[:8] == ["conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4"]
    assert spec.layer("norm1") == LRN("norm1", "pool1", 5, 1e-4, 0.75, 1.0)
    assert spec.layer("conv1").pad == 100 and spec.layer("conv1").stride == 4
    assert [spec.layer(f"conv{i}").group for i in range(1, 6)] == [1, 2, 1, 2, 2]
    assert spec.layer("pool5") == MaxPool("pool5", "conv5", kernel=3, stride=2)


def test_nyud_late_fusion_names_and_average():
    spec = get_spec("nyud-fcn32s-color-hha")
    assert spec.input_names == ("color", "hha")
    names = list(spec.param_shapes())
    assert names[:2] == ["conv1_1color.weight", "conv1_1color.bias"]
    assert "score_frcolor.weight" in names and "fc7hha.weight" in names
    assert names.index("score_frcolor.weight") < names.index("conv1_1hha.weight")
    assert names[-1] == "upscore.weight" and spec.param_shapes()[names[-1]] == (40, 40, 64, 64)
    assert spec.layer("score_fused") == Sum("score_fused", ("score_frcolor", "score_frhha"),
                                            coeffs=(0.5, 0.5))
    assert spec.layer("score").reference == "color"
    assert spec.layer("pool1hha").bottom == "conv1_2hha"


def test_nyud_early_fusion_concatenates_bgr_then_log_depth():
    spec = get_spec("nyud-fcn32s-color-d")
    assert spec.input_names == ("color", "depth")
    assert [i.channels for i in spec.inputs] == [3, 1]
    assert spec.layers[0] == Concat("data", ("color", "depth"))
    assert spec.param_shapes()["conv1_1_bgrd.weight"] == (64, 4, 3, 3)
    assert spec.layer("conv1_2").bottom == "conv1_1_bgrd"
    assert spec.layer("score").reference == "data"


def test_siftflow_has_two_heads_on_one_trunk_in_caffe_order():
    spec = get_spec("siftflow-fcn8s")
    assert spec.outputs == ("score_sem", "score_geo") and spec.output == "score_sem"
    assert spec.output_classes() == {"score_sem": 33, "score_geo": 3}
    names = [name.rsplit(".", 1)[0] for name in spec.param_shapes()]
    sem = [n for n in names if n.endswith("_sem")]
    geo = [n for n in names if n.endswith("_geo")]
    assert sem == ["score_fr_sem", "score_fr_sem", "upscore2_sem", "score_pool4_sem",
                   "score_pool4_sem", "upscore_pool4_sem", "score_pool3_sem", "score_pool3_sem",
                   "upscore8_sem"]
    assert names.index(geo[0]) > names.index(sem[-1])  # the whole semantic head comes first
    assert spec.param_shapes()["upscore2_geo.weight"] == (3, 3, 4, 4)
    assert spec.layer("score_pool4_geo").bottom == "pool4"  # both heads share the trunk


def test_context_and_ade_class_counts_and_atonce_scales():
    assert get_spec("pascalcontext-fcn8s").param_shapes()["upscore8.weight"] == (60, 60, 16, 16)
    ade = get_spec("ade20k-fcn8s")
    assert ade.num_classes == 151
    assert ade.layer("scale_pool4").value == 0.01 and ade.layer("scale_pool3").value == 1e-4


def test_blob_sizes_at_the_typical_sizes():
    # SIFT Flow 256x256: pool3/pool4/pool5 57/29/15, score_fr 9x9, upscore 320 >= 19 + 256.
    shapes = get_spec("siftflow-fcn32s").blob_shapes(256, 256)
    assert [shapes[p][1] for p in ("pool3", "pool4", "pool5", "score_fr_sem")] == [57, 29, 15, 9]
    assert shapes["upscore_sem"][1:] == (320, 320) and shapes["score_geo"] == (3, 256, 256)
    shapes = get_spec("voc-fcn-alexnet").blob_shapes(500, 500)
    assert shapes["score"] == (21, 500, 500)
    for entry in MODEL_ENTRIES:  # every model fits its data set's images
        height, width = entry.typical_size
        shapes = get_spec(entry.name).blob_shapes(height, width)
        assert all(shapes[o][1:] == (height, width) for o in entry.outputs)


def test_flops_count_one_group_per_grouped_convolution():
    spec = get_spec("voc-fcn-alexnet")
    conv2 = spec.layer("conv2")
    assert isinstance(conv2, Conv) and conv2.group == 2
    _, h, w = spec.blob_shapes(500, 500)["conv2"]
    grouped = 2 * 48 * 25 * 256 * h * w
    ungrouped = build_spec("voc-fcn8s").flops(500, 500)
    assert spec.flops(500, 500) < ungrouped / 3  # AlexNet is far cheaper than VGG16
    assert grouped < spec.flops(500, 500)


def test_num_classes_override_is_for_single_head_models_only():
    assert build_spec("nyud-fcn32s-color", 5).output_classes() == {"score": 5}
    with pytest.raises(UsageError, match="2 heads"):
        build_spec("siftflow-fcn8s", 5)
    assert build_spec("siftflow-fcn8s", 33) == get_spec("siftflow-fcn8s")


def test_every_catalogue_entry_is_complete():
    for entry in MODEL_ENTRIES:
        assert entry.dataset and entry.typical_size and entry.inputs and entry.heads
        assert all(len(i.mean) == i.channels for i in entry.inputs)
        assert entry.weights_url or entry.name == "nyud-fcn32s-color-d"  # none released
        spec = get_spec(entry.name)
        assert sum(isinstance(layer, Upsample) for layer in spec.layers) >= len(entry.heads)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.sampled_from(MODELS))
def test_every_model_gives_full_size_scores_for_any_input(height, width, name):
    spec = get_spec(name)
    shapes = spec.blob_shapes(height, width)  # raises if any crop left its bottom blob
    for output, classes in spec.output_classes().items():
        assert shapes[output] == (classes, height, width)


@pytest.mark.parametrize("divisor", [1, 3, 7, 32, 64, 128])
def test_every_model_builds_at_any_width(divisor):
    """Narrow nets keep every grouped conv divisible (AlexNet's conv1 feeds conv2's 2 groups)."""
    for name in MODELS:
        spec = build_spec(name, width_divisor=divisor)
        for layer in spec.layers:
            group = getattr(layer, "group", 1)
            if group > 1:
                assert layer.in_channels % group == 0 and layer.out_channels % group == 0
