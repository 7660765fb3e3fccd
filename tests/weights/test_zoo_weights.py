"""Weights for every released model: detection from the tensors (names, class count, --variant
where shapes are identical), caffemodel conversion, ImageNet inits (VGG16 / CaffeNet, the
colour-D surgery), the late-fusion transplant, download content checks, and one clear line for
weights of another model. Narrow networks (channels / 16) keep every file small."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.core.errors import DownloadError, UsageError, WeightsError
from bench.downloads.catalog import CATALOG
from bench.downloads.checks import check_content
from bench.model.init import random_params
from bench.model.spec import MODELS, Conv, Scale, Upsample, build_spec, resolve_model
from bench.weights.archive import detect_variant, load_archive, load_weights, model_from_tensors
from bench.weights.convert import convert, convert_random
from bench.weights.fusion import convert_fused
from tests.weights.caffe_writer import write_caffemodel

NARROW = 16


def header(model: str, **options) -> dict[str, dict]:
    """A safetensors-header-like {tensor: {"shape": ...}} for a narrow `model`."""
    spec = build_spec(model, width_divisor=NARROW, **options)
    return {name: {"shape": list(shape)} for name, shape in spec.param_shapes().items()}


def caffe_layers(spec, params):
    """(name, type, blobs) for write_caffemodel, with a blob-less input and ReLU layers."""
    layers = [("data", "Data", [])]
    for layer in spec.layers:
        if isinstance(layer, Conv):
            layers.append((layer.name, "Convolution",
                           [params[f"{layer.name}.weight"], params[f"{layer.name}.bias"]]))
            layers.append((f"relu_{layer.name}", "ReLU", []))
        elif isinstance(layer, (Upsample, Scale)):
            kind = "Deconvolution" if isinstance(layer, Upsample) else "Scale"
            layers.append((layer.name, kind, [params[f"{layer.name}.weight"]]))
    return layers


def write_fcn_caffemodel(path, model, seed=0, **options):
    spec = build_spec(model, width_divisor=NARROW)
    params = random_params(spec, seed)
    write_caffemodel(path, caffe_layers(spec, params), **options)
    return spec, params


AMBIGUOUS = {"nyud-fcn32s-color", "nyud-fcn32s-hha"}


@pytest.mark.parametrize("model", MODELS)
def test_every_model_is_detected_from_its_tensors(model):
    key = resolve_model(model).key
    if key in AMBIGUOUS:
        with pytest.raises(WeightsError, match=r"identical names and shapes.*--variant"):
            model_from_tensors("x", header(key))
        assert model_from_tensors("x", header(key), requested=key) == key
    else:
        assert model_from_tensors("x", header(key)) == key
    assert model_from_tensors("x", header(key), {"variant": model}) == key


def test_a_class_count_no_released_model_has_stays_with_the_voc_structure():
    assert model_from_tensors("x", header("fcn32s", num_classes=5)) == "fcn32s"
    assert model_from_tensors("x", header("fcn8s-atonce", num_classes=7)) == "fcn8s-atonce"


def test_metadata_of_another_structure_is_one_line():
    with pytest.raises(WeightsError, match="metadata says variant 'siftflow-fcn8s'"):
        model_from_tensors("w.safetensors", header("fcn8s"), {"variant": "siftflow-fcn8s"})


@pytest.mark.parametrize("model", ["siftflow-fcn8s", "voc-fcn-alexnet", "nyud-fcn32s-color-d"])
def test_random_archive_round_trips_for_zoo_models(tmp_path, model):
    out = tmp_path / "w.safetensors"
    convert_random(out, model, seed=2, width_divisor=NARROW)
    spec, params, metadata = load_weights(out)
    assert spec == build_spec(model, width_divisor=NARROW) and metadata["variant"] == model
    expected = random_params(spec, 2)
    assert all(np.array_equal(params[k], expected[k]) for k in expected)


@pytest.mark.parametrize(("model", "legacy"), [("siftflow-fcn16s", False),
                                                ("voc-fcn-alexnet", True),
                                                ("nyud-fcn32s-color-d", False)])
def test_zoo_caffemodels_convert_exactly(tmp_path, model, legacy):
    source = tmp_path / "net.caffemodel"
    spec, params = write_fcn_caffemodel(source, model, legacy_v1=legacy, legacy_dims=legacy)
    result = convert(source, tmp_path / "w.safetensors")
    loaded, metadata = load_archive(result.output, spec)
    assert result.variant == model and metadata["variant_source"] == "detected from the tensors"
    assert all(np.array_equal(loaded[k], params[k]) for k in params)


def test_identical_nyud_tensors_need_variant_which_is_recorded(tmp_path):
    source = tmp_path / "hha.caffemodel"
    write_fcn_caffemodel(source, "nyud-fcn32s-hha")
    with pytest.raises(WeightsError, match="fit nyud-fcn32s-color and nyud-fcn32s-hha"):
        convert(source, tmp_path / "a.safetensors")
    result = convert(source, tmp_path / "b.safetensors", variant="nyud-fcn32s-hha")
    _, _, metadata = load_weights(result.output)
    assert metadata["variant"] == "nyud-fcn32s-hha"
    assert metadata["variant_source"].startswith("--variant")
    assert detect_variant(result.output) == "nyud-fcn32s-hha"
    with pytest.raises(WeightsError, match=r"holds nyud-fcn32s-hha weights .* but "
                                           "nyud-fcn32s-color was requested"):
        load_weights(result.output, "nyud-fcn32s-color")


def test_caffemodel_of_one_family_given_for_another_is_one_line(tmp_path):
    source = tmp_path / "siftflow.caffemodel"
    write_fcn_caffemodel(source, "siftflow-fcn32s")
    result = CliRunner().invoke(cli, ["convert", str(source), str(tmp_path / "o.safetensors"),
                                      "--variant", "pascalcontext-fcn32s"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "holds siftflow-fcn32s weights" in lines[0]
    assert str(source) in lines[0] and not (tmp_path / "o.safetensors").exists()


def test_two_head_weights_for_a_one_head_model_is_one_line(tmp_path):
    out = tmp_path / "sift.safetensors"
    convert_random(out, "siftflow-fcn8s", width_divisor=NARROW)
    with pytest.raises(WeightsError, match=r"holds siftflow-fcn8s weights .* fcn8s was requested"):
        load_weights(out, "fcn8s")


def test_context_and_ade_are_told_from_voc_by_class_count(tmp_path):
    for model, voc in (("pascalcontext-fcn16s", "fcn16s"),):
        source = tmp_path / f"{model}.caffemodel"
        write_fcn_caffemodel(source, model)
        assert convert(source, tmp_path / f"{model}.safetensors").variant == model
        with pytest.raises(WeightsError, match=f"holds {model} weights"):
            convert(source, tmp_path / "x.safetensors", variant=voc)
    assert model_from_tensors("x", header("fcn8s-atonce", num_classes=151)) == "ade20k-fcn8s"


# ----------------------------------------------------------------------------------------------
# ImageNet inits


def vgg16_caffe_layers(seed=0):
    spec = build_spec("fcn32s", width_divisor=NARROW)
    params = random_params(spec, seed)
    layers = []
    for layer in spec.layers:
        if isinstance(layer, Conv) and not layer.zero_init:
            weight = params[f"{layer.name}.weight"]
            if layer.name.startswith("fc"):
                weight = weight.reshape(weight.shape[0], -1)  # InnerProduct
            layers.append((layer.name, "Convolution" if layer.name.startswith("conv")
                           else "InnerProduct", [weight, params[f"{layer.name}.bias"]]))
    layers.append(("fc8", "InnerProduct", [np.ones((10, 256), np.float32),
                                           np.zeros(10, np.float32)]))
    return layers


def caffenet_layers(seed=0):
    spec = build_spec("voc-fcn-alexnet", width_divisor=NARROW)
    params = random_params(spec, seed)
    layers = []
    for layer in spec.layers:
        if isinstance(layer, Conv) and not layer.zero_init:
            weight = params[f"{layer.name}.weight"]
            if layer.name.startswith("fc"):
                weight = weight.reshape(weight.shape[0], -1)
            layers.append((layer.name, "Convolution", [weight, params[f"{layer.name}.bias"]]))
    return layers


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "VGG_ILSVRC_16_layers.caffemodel"
    write_caffemodel(path, vgg16_caffe_layers(), legacy_dims=True)
    return path


@pytest.mark.parametrize("model", [m for m in MODELS if resolve_model(m).trunk == "vgg16"])
def test_init_for_every_vgg_model(tmp_path, vgg16_file, model):
    result = convert(vgg16_file, tmp_path / "init.safetensors", init_for=model)
    spec, params, metadata = load_weights(result.output, model)
    assert metadata["kind"] == "init" and spec.variant == resolve_model(model).key
    trunk = {name: blobs for name, _, blobs in vgg16_caffe_layers()}
    entry = resolve_model(model)
    if entry.fusion == "early":
        conv = params["conv1_1_bgrd.weight"]
        np.testing.assert_array_equal(conv[:, :3], trunk["conv1_1"][0])
        np.testing.assert_allclose(conv[:, 3], trunk["conv1_1"][0].mean(axis=1), rtol=1e-6)
        np.testing.assert_array_equal(params["conv1_1_bgrd.bias"], trunk["conv1_1"][1])
    elif entry.fusion == "late":
        for suffix in ("color", "hha"):
            np.testing.assert_array_equal(params[f"conv5_3{suffix}.weight"], trunk["conv5_3"][0])
            assert not params[f"score_fr{suffix}.weight"].any()
    else:
        np.testing.assert_array_equal(params["fc6.weight"].reshape(trunk["fc6"][0].shape),
                                      trunk["fc6"][0])
    for name in spec.output_classes():
        assert name in spec.outputs


def test_caffenet_init_for_fcn_alexnet_and_wrong_trunk_is_one_line(tmp_path, vgg16_file):
    source = tmp_path / "bvlc_reference_caffenet.caffemodel"
    write_caffemodel(source, caffenet_layers(), legacy_dims=True)
    result = convert(source, tmp_path / "alex.safetensors")
    spec, params, _ = load_weights(result.output)
    assert spec.variant == "voc-fcn-alexnet"
    fc6 = dict((n, b) for n, _, b in caffenet_layers())["fc6"][0]
    np.testing.assert_array_equal(params["fc6.weight"].reshape(fc6.shape), fc6)
    with pytest.raises(UsageError, match="built on AlexNet"):
        convert(vgg16_file, tmp_path / "x.safetensors", init_for="voc-fcn-alexnet")
    with pytest.raises(UsageError, match="built on VGG16"):
        convert(source, tmp_path / "y.safetensors", init_for="fcn8s")


# ----------------------------------------------------------------------------------------------
# Late fusion


def test_fuse_two_single_stream_archives(tmp_path):
    color, hha = tmp_path / "color.safetensors", tmp_path / "hha.safetensors"
    convert_random(color, "nyud-fcn32s-color", seed=1, width_divisor=NARROW)
    convert_random(hha, "nyud-fcn32s-hha", seed=2, width_divisor=NARROW)
    result = CliRunner().invoke(cli, ["convert", "--fuse", f"color={color}", "--fuse",
                                      f"hha={hha}", "--variant", "nyud-fcn32s-color-hha",
                                      str(tmp_path / "fused.safetensors")])
    assert result.exit_code == 0, result.output
    spec, params, metadata = load_weights(tmp_path / "fused.safetensors")
    assert spec.variant == "nyud-fcn32s-color-hha" and metadata["kind"] == "init"
    _, color_params, _ = load_weights(color)
    _, hha_params, _ = load_weights(hha)
    np.testing.assert_array_equal(params["conv1_1color.weight"], color_params["conv1_1.weight"])
    np.testing.assert_array_equal(params["score_frhha.bias"], hha_params["score_fr.bias"])
    np.testing.assert_array_equal(params["upscore.weight"], color_params["upscore.weight"])
    assert "color:" in metadata["source_sha256"] and "hha:" in metadata["source_sha256"]


def test_fuse_refuses_the_wrong_archives_in_one_line(tmp_path):
    voc, hha = tmp_path / "voc.safetensors", tmp_path / "hha.safetensors"
    convert_random(voc, "fcn32s", width_divisor=NARROW)
    convert_random(hha, "nyud-fcn32s-hha", width_divisor=NARROW)
    with pytest.raises(WeightsError, match=r"holds fcn32s weights .* nyud-fcn32s-color"):
        convert_fused(tmp_path / "o.safetensors", {"color": voc, "hha": hha},
                      "nyud-fcn32s-color-hha")
    with pytest.raises(UsageError, match="needs --fuse color=ARCHIVE --fuse hha=ARCHIVE"):
        convert_fused(tmp_path / "o.safetensors", {"color": hha}, "nyud-fcn32s-color-hha")
    with pytest.raises(UsageError, match="not one"):
        convert_fused(tmp_path / "o.safetensors", {"color": hha}, "fcn32s")
    assert not (tmp_path / "o.safetensors").exists()


# ----------------------------------------------------------------------------------------------
# Downloads


def test_every_released_model_has_a_download_entry():
    for model in MODELS:
        entry = resolve_model(model)
        named = [s for s in CATALOG.values() if s.variant == entry.key]
        assert len(named) == (entry.weights_url is not None), model
        if named:
            assert named[0].urls[-1] == entry.weights_url
    assert CATALOG["alexnet-caffe"].content == "alexnet-caffemodel"


def test_content_check_validates_zoo_caffemodels(tmp_path):
    source = tmp_path / "sift.caffemodel"
    write_fcn_caffemodel(source, "siftflow-fcn32s")
    good = dataclasses.replace(CATALOG["siftflow-fcn32s"], width_divisor=NARROW)
    assert "siftflow-fcn32s" in check_content(good, source)
    other = dataclasses.replace(CATALOG["siftflow-fcn8s"], width_divisor=NARROW)
    with pytest.raises(DownloadError, match="not the siftflow-fcn8s Caffe model"):
        check_content(other, source)
    caffenet = tmp_path / "caffenet.caffemodel"
    write_caffemodel(caffenet, caffenet_layers())
    alex = dataclasses.replace(CATALOG["alexnet-caffe"], width_divisor=NARROW)
    assert "CaffeNet" in check_content(alex, caffenet)


def test_scalar_tensors_are_a_clear_error_not_a_crash(tmp_path):
    """A 0-d `upscore.weight` or first convolution (a crafted header) used to index an empty
    shape; now the strict shape check names it."""
    from safetensors.numpy import save_file

    params = random_params(build_spec("fcn32s", width_divisor=NARROW))
    params["upscore.weight"] = np.zeros((), np.float32)
    params["conv1_1.weight"] = np.zeros((), np.float32)
    path = tmp_path / "w.safetensors"
    save_file(params, str(path))
    with pytest.raises(WeightsError, match="conv1_1"):
        load_weights(path)
