"""`convert`: FCN caffemodels, VGG16 (Caffe / torchvision / Keras) -> init, archives, random;
the torchvision input fold, fc6 flatten orders, and one clear line for every bad input."""

from __future__ import annotations

import os
import resource
import time

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.numpy import save_file

import bench.weights.convert
from backends import read_torch_state_dict
from bench.cli.app import cli
from bench.core.errors import UsageError, WeightsError
from bench.core.means import MEAN_BGR
from bench.model.init import bilinear_upsample_weight, random_params
from bench.model.spec import VARIANTS, Conv, Scale, Upsample, build_spec
from bench.weights.archive import load_archive, sha256_file
from bench.weights.convert import convert_random, detect_format
from bench.weights.keras_h5 import KERAS_NAMES
from bench.weights.surgery import (
    TORCHVISION_MEAN_RGB,
    TORCHVISION_NAMES,
    TORCHVISION_STD_RGB,
    TRUNK_LAYERS,
    fold_torchvision_conv1_1,
)
from tests.weights.caffe_writer import write_caffemodel

NARROW = 16  # conv1_1 has 4 filters, fc6/fc7 256: every code path, tiny files

def convert(source, output, **options):
    """bench.weights.convert.convert as the convert command calls it (with the torch .pth
    reader)."""
    return bench.weights.convert.convert(source, output, read_pth=read_torch_state_dict, **options)


def test_library_callers_without_a_pth_reader_get_a_clear_error(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match=r"is a PyTorch file; this caller cannot read \.pth"):
        bench.weights.convert.convert(path, tmp_path / "out.safetensors")



# ----------------------------------------------------------------------------------------------
# Source files generated from the field numbers / documented layouts


CAFFE_TYPES = {"MaxPool": "Pooling", "Sum": "Eltwise"}  # Dropout, Crop keep their names


def fcn_caffe_layers(spec, params):
    """(name, type, blobs) in network order, with blob-less layers as Caffe has them."""
    layers = [("data", "Input", [])]
    for layer in spec.layers:
        if isinstance(layer, Conv):
            blobs = [params[f"{layer.name}.weight"], params[f"{layer.name}.bias"]]
            layers.append((layer.name, "Convolution", blobs))
            if layer.relu:
                layers.append((f"relu_{layer.name}", "ReLU", []))
        elif isinstance(layer, Upsample):
            layers.append((layer.name, "Deconvolution", [params[f"{layer.name}.weight"]]))
        elif isinstance(layer, Scale):
            layers.append((layer.name, "Scale", [params[f"{layer.name}.weight"]]))
        else:
            kind = type(layer).__name__
            layers.append((layer.name, CAFFE_TYPES.get(kind, kind), []))
    return layers


def vgg16_trunk(width_divisor=NARROW, seed=0):
    """Caffe-layout VGG16 weights: convs OIHW, fc6 [O, C*7*7] (C,H,W flatten), fc7/fc8 [O, I]."""
    spec = build_spec("fcn32s", width_divisor=width_divisor)
    rng = np.random.default_rng(seed)
    shapes = spec.param_shapes()
    trunk = {}
    for name in TRUNK_LAYERS:
        shape = shapes[f"{name}.weight"]
        if name.startswith("fc"):
            shape = (shape[0], int(np.prod(shape[1:])))
        trunk[name] = (rng.standard_normal(shape, dtype=np.float32),
                       rng.standard_normal(shape[0], dtype=np.float32))
    fc, classes = shapes["fc7.bias"][0], 1000 // width_divisor  # fc8: the ImageNet classifier
    trunk["fc8"] = (rng.standard_normal((classes, fc), dtype=np.float32),
                    rng.standard_normal(classes, dtype=np.float32))
    return trunk


def write_vgg16_caffemodel(path, trunk):
    """The 2014 VGG16 file's shape: V1 `layers`, legacy 4-D dims, fc as InnerProduct."""
    layers = [(name, "InnerProduct" if name.startswith("fc") else "Convolution", list(blobs))
              for name, blobs in trunk.items()]
    return write_caffemodel(path, layers, legacy_v1=True, legacy_dims=True)


def write_torchvision_pth(path, trunk):
    torch = pytest.importorskip("torch")
    state = {}
    for name, (weight, bias) in trunk.items():
        module = TORCHVISION_NAMES.get(name, "classifier.6")
        state[f"{module}.weight"] = torch.from_numpy(weight)
        state[f"{module}.bias"] = torch.from_numpy(bias)
    torch.save(state, path)
    return path


def keras_kernel(name, weight):
    """Caffe layout -> Keras: conv [kH, kW, in, out]; fc1 [H*W*C, out] (H,W,C flatten)."""
    if weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)
    if name == "fc6":
        channels = weight.shape[1] // 49
        return weight.reshape(-1, channels, 7, 7).transpose(2, 3, 1, 0).reshape(-1,
                                                                               weight.shape[0])
    return weight.T


def write_keras_h5(path, trunk, scheme):
    """A Keras 2 save_weights file: attrs layer_names / weight_names, datasets per scheme:
    "kernel" = `block1_conv1/kernel:0` (Keras >= 2.1), "W" = `block1_conv1_W_1:0` (older)."""
    h5py = pytest.importorskip("h5py")
    keras_names = {**KERAS_NAMES, "fc8": "predictions"}
    with h5py.File(path, "w") as handle:
        layer_names = ["input_1", *keras_names.values(), "flatten"]
        handle.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        handle.attrs["keras_version"] = b"2.2.4"
        for name in ("input_1", "flatten"):
            handle.create_group(name).attrs["weight_names"] = np.array([], dtype="S8")
        for name, (weight, bias) in trunk.items():
            keras = keras_names[name]
            group = handle.create_group(keras)
            if scheme == "kernel":
                names = [f"{keras}/kernel:0", f"{keras}/bias:0"]
            else:
                names = [f"{keras}_W_1:0", f"{keras}_b_1:0"]
            group.create_dataset(names[0], data=keras_kernel(name, weight))
            group.create_dataset(names[1], data=bias)
            encoded = np.array([n.encode() for n in names])
            if scheme == "W" and keras == "block1_conv1":  # Keras chunks long attrs
                group.attrs["weight_names0"] = encoded[:1]
                group.attrs["weight_names1"] = encoded[1:]
            else:
                group.attrs["weight_names"] = encoded
    return path


def conv_valid(x, weight, bias):
    """Cross-correlation without padding, float64: (C, H, W) x [O, C, k, k] -> (O, H', W')."""
    k = weight.shape[-1]
    windows = sliding_window_view(x.astype(np.float64), (k, k), axis=(1, 2))  # C, H', W', k, k
    return np.einsum("chwij,ocij->ohw", windows, weight.astype(np.float64)) + bias[:, None, None]


def check_init(params, spec, trunk):
    """The reference surgery: trunk copied, fc reshaped, score zero, upsampling bilinear."""
    shapes = spec.param_shapes()
    assert list(params) == [p.name for p in spec.parameters()]
    for name in TRUNK_LAYERS:
        np.testing.assert_array_equal(params[f"{name}.bias"], trunk[name][1])
        np.testing.assert_array_equal(params[f"{name}.weight"],
                                      trunk[name][0].reshape(shapes[f"{name}.weight"]))
    for layer in spec.layers:
        if isinstance(layer, Conv) and layer.zero_init:
            assert not params[f"{layer.name}.weight"].any()
            assert not params[f"{layer.name}.bias"].any()
        elif isinstance(layer, Upsample):
            np.testing.assert_array_equal(params[f"{layer.name}.weight"],
                                          bilinear_upsample_weight(layer.channels, layer.kernel))
        elif isinstance(layer, Scale):
            np.testing.assert_array_equal(params[f"{layer.name}.weight"],
                                          np.full(layer.channels, layer.value, np.float32))


# ----------------------------------------------------------------------------------------------
# FCN caffemodels


@pytest.mark.parametrize("variant", VARIANTS)
def test_fcn_caffemodel_round_trip_detects_the_variant(tmp_path, variant):
    spec = build_spec(variant, width_divisor=NARROW)
    params = random_params(spec, seed=5)
    source = write_caffemodel(tmp_path / "weights.caffemodel", fcn_caffe_layers(spec, params))
    result = convert(source, tmp_path / "out.safetensors")
    loaded, metadata = load_archive(result.output, spec)
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value)
    assert (result.variant, result.kind, result.source_format) == (variant, "trained",
                                                                   "caffemodel")
    assert metadata["origin"] == "caffe:weights"
    assert metadata["source_sha256"] == sha256_file(source) == result.source_sha256
    assert result.archive_sha256 == sha256_file(result.output)
    assert result.parameters == spec.num_parameters() and result.tensors == len(params)


def test_fcn_caffemodel_in_v1_format_with_legacy_dims(tmp_path):
    spec = build_spec("fcn8s", width_divisor=NARROW, num_classes=5)
    params = random_params(spec, seed=1)
    # V1 has no Input or Crop layer types (FCN's V1-era nets used Data and Split instead).
    layers = [(name, {"Input": "Data", "Crop": "Split"}.get(kind, kind), blobs)
              for name, kind, blobs in fcn_caffe_layers(spec, params)]
    source = write_caffemodel(tmp_path / "v1.caffemodel", layers, legacy_v1=True,
                              legacy_dims=True, packed=False)
    loaded, metadata = load_archive(convert(source, tmp_path / "out.safetensors").output)
    assert metadata["num_classes"] == "5"
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_every_caffe_mismatch_is_listed_once(tmp_path):
    spec = build_spec("fcn16s", width_divisor=NARROW)
    params = random_params(spec)
    params["fc7.weight"] = params["fc7.weight"][:, :-1]
    layers = [layer for layer in fcn_caffe_layers(spec, params) if layer[0] != "score_pool4"]
    layers.append(("extra_conv", "Convolution", [np.zeros((2, 2, 1, 1), np.float32)]))
    layers = [(n, t, b[:1] if n == "upscore2" else b) for n, t, b in layers]
    layers = [(n, t, [*b, b[0]] if n == "upscore16" else b) for n, t, b in layers]
    source = write_caffemodel(tmp_path / "bad.caffemodel", layers)
    with pytest.raises(WeightsError) as error:
        convert(source, tmp_path / "out.safetensors")
    message = str(error.value)
    for fragment in ("not a valid fcn16s Caffe model", "fc7.weight has shape [256, 255, 1, 1]",
                     "missing layer score_pool4", "layer upscore16 has 2 blobs, expected 1",
                     "unexpected layer extra_conv with 1 blobs"):
        assert fragment in message
    assert not (tmp_path / "out.safetensors").exists()


def test_variant_option_must_agree_with_the_file(tmp_path):
    spec = build_spec("fcn32s", width_divisor=NARROW)
    source = write_caffemodel(tmp_path / "fcn8s.caffemodel",
                              fcn_caffe_layers(spec, random_params(spec)))
    with pytest.raises(WeightsError, match=r"holds fcn32s weights .*not guessed from its name"):
        convert(source, tmp_path / "out.safetensors", variant="fcn8s")


# ----------------------------------------------------------------------------------------------
# VGG16 -> FCN init


@pytest.mark.parametrize("init_for", [None, "fcn8s-atonce"])
def test_caffe_vgg16_v1_legacy_dims_to_init(tmp_path, init_for):
    trunk = vgg16_trunk()
    source = write_vgg16_caffemodel(tmp_path / "VGG_ILSVRC_16_layers.caffemodel", trunk)
    result = convert(source, tmp_path / "init.safetensors", init_for=init_for)
    spec = build_spec(init_for or "fcn32s", width_divisor=NARROW)
    params, metadata = load_archive(result.output, spec)
    check_init(params, spec, trunk)  # Caffe VGG16 is already BGR 0-255: copied as is
    assert metadata["kind"] == "init" and metadata["origin"] == "caffe:VGG_ILSVRC_16_layers"
    assert "input_fold" not in metadata


def test_fc6_flatten_order_caffe_and_torchvision_are_c_h_w(tmp_path):
    trunk = vgg16_trunk()
    fc6 = trunk["fc6"][0]  # [256, 32*7*7]
    sources = [write_vgg16_caffemodel(tmp_path / "vgg.caffemodel", trunk)]
    if _has_torch():
        sources.append(write_torchvision_pth(tmp_path / "vgg.pth", trunk))
    for index, source in enumerate(sources):
        params, _ = load_archive(convert(source, tmp_path / f"{index}.safetensors",
                                         pth_convention="caffe").output)
        for o, c, h, w in [(0, 0, 0, 1), (3, 2, 5, 6), (255, 31, 6, 0), (17, 9, 1, 4)]:
            assert params["fc6.weight"][o, c, h, w] == fc6[o, c * 49 + h * 7 + w]
        assert params["fc7.weight"][5, 7, 0, 0] == trunk["fc7"][0][5, 7]


@pytest.mark.parametrize("scheme", ["kernel", "W"])
def test_keras_h5_both_naming_schemes_fc1_is_h_w_c(tmp_path, scheme):
    trunk = vgg16_trunk(seed=2)
    source = write_keras_h5(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5", trunk,
                            scheme)
    assert detect_format(source) == "hdf5"
    result = convert(source, tmp_path / "init.safetensors", init_for="fcn16s")
    spec = build_spec("fcn16s", width_divisor=NARROW)
    params, metadata = load_archive(result.output, spec)
    check_init(params, spec, trunk)  # Keras VGG16 weights are Caffe's: no channel reversal
    assert metadata["origin"].startswith("keras:")
    # The raw Keras fc1 kernel: row h*7*C + w*C + c, column o.
    fc1 = keras_kernel("fc6", trunk["fc6"][0])
    channels = 32
    for o, c, h, w in [(0, 0, 0, 1), (3, 2, 5, 6), (255, 31, 6, 0)]:
        assert params["fc6.weight"][o, c, h, w] == fc1[h * 7 * channels + w * channels + c, o]
    # ... and conv kernels [kH, kW, in, out] -> OIHW:
    kernel = keras_kernel("conv1_1", trunk["conv1_1"][0])
    assert params["conv1_1.weight"][3, 2, 0, 1] == kernel[0, 1, 2, 3]


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_torchvision_fold_matches_the_original_on_interior_pixels():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 3, 3, 3), dtype=np.float32) * 0.2
    bias = rng.standard_normal(64, dtype=np.float32) * 0.1
    folded_weight, folded_bias = fold_torchvision_conv1_1(weight, bias)
    rgb = rng.uniform(0, 255, (3, 9, 11))                      # an RGB 0-255 image
    x_tv = (rgb / 255 - TORCHVISION_MEAN_RGB[:, None, None]) / TORCHVISION_STD_RGB[:, None, None]
    x_fcn = rgb[::-1] - MEAN_BGR[:, None, None]                # BGR minus the FCN mean
    expected = conv_valid(x_tv, weight, bias)
    got = conv_valid(x_fcn.astype(np.float32), folded_weight, folded_bias)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-4)
    # The documented caveat: with zero padding, border windows differ (padding means
    # "FCN mean colour" after the fold, "ImageNet mean" before).
    pad = ((0, 0), (1, 1), (1, 1))
    padded_expected = conv_valid(np.pad(x_tv, pad), weight, bias)
    padded_got = conv_valid(np.pad(x_fcn, pad), folded_weight, folded_bias)
    np.testing.assert_allclose(padded_got[:, 1:-1, 1:-1], padded_expected[:, 1:-1, 1:-1],
                               rtol=1e-5, atol=2e-4)
    assert not np.allclose(padded_got[:, 0], padded_expected[:, 0], atol=1e-2)


def test_torchvision_pth_to_init_folds_conv1_1(tmp_path):
    pytest.importorskip("torch")
    trunk = vgg16_trunk(seed=4)
    source = write_torchvision_pth(tmp_path / "vgg16-397923af.pth", trunk)
    assert detect_format(source) == "torch"
    result = convert(source, tmp_path / "init.safetensors", init_for="fcn8s-atonce")
    spec = build_spec("fcn8s-atonce", width_divisor=NARROW)
    params, metadata = load_archive(result.output, spec)
    folded = fold_torchvision_conv1_1(*trunk["conv1_1"])
    np.testing.assert_array_equal(params["conv1_1.weight"], folded[0])
    np.testing.assert_array_equal(params["conv1_1.bias"], folded[1])
    check_init(params, spec, {**trunk, "conv1_1": folded})
    assert metadata["origin"] == "torchvision:vgg16-397923af" and "input_fold" in metadata


def test_legacy_non_zip_pth_is_read_too(tmp_path):
    torch = pytest.importorskip("torch")
    trunk = vgg16_trunk()
    state = {f"{TORCHVISION_NAMES.get(n, 'classifier.6')}.{kind}": torch.from_numpy(a)
             for n, blobs in trunk.items() for kind, a in zip(("weight", "bias"), blobs,
                                                              strict=True)}
    path = tmp_path / "old.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert detect_format(path) == "torch"
    result = convert(path, tmp_path / "init.safetensors", pth_convention="caffe")
    check_init(load_archive(result.output)[0], build_spec("fcn32s", width_divisor=NARROW), trunk)


def test_canonical_fcn_pth_needs_variant_only_for_atonce(tmp_path):
    torch = pytest.importorskip("torch")
    spec = build_spec("fcn8s-atonce", width_divisor=NARROW)
    params = random_params(spec, seed=9)
    # pytorch-fcn's FCN8sAtOnce multiplies by 0.01 / 1e-4 in code: no scale tensors on disk.
    state = {k: torch.from_numpy(v) for k, v in params.items() if not k.startswith("scale_")}
    torch.save({"model_state_dict": state, "epoch": 3}, tmp_path / "atonce.pth")
    as_fcn8s = convert(tmp_path / "atonce.pth", tmp_path / "a.safetensors")
    assert as_fcn8s.variant == "fcn8s"
    result = convert(tmp_path / "atonce.pth", tmp_path / "b.safetensors", variant="fcn8s-atonce")
    loaded, _ = load_archive(result.output, spec)
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value)


# ----------------------------------------------------------------------------------------------
# Archives and random


def test_existing_archive_is_revalidated_and_keeps_its_metadata(tmp_path):
    first = convert_random(tmp_path / "a.safetensors", "fcn16s", seed=2, width_divisor=NARROW)
    _, before = load_archive(first.output)
    second = convert(first.output, tmp_path / "b.safetensors")
    params, after = load_archive(second.output)
    assert after == before and after["origin"] == "random:seed=2"
    np.testing.assert_array_equal(params["fc6.weight"], load_archive(first.output)[0]["fc6.weight"])


def test_random_is_deterministic_and_records_its_seed(tmp_path):
    a = convert_random(tmp_path / "a.safetensors", "fcn8s", seed=3, width_divisor=NARROW)
    b = convert_random(tmp_path / "b.safetensors", "fcn8s", seed=3, width_divisor=NARROW)
    c = convert_random(tmp_path / "c.safetensors", "fcn8s", seed=4, width_divisor=NARROW)
    pa, pb, pc = (load_archive(r.output)[0] for r in (a, b, c))
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert not np.array_equal(pa["conv1_1.weight"], pc["conv1_1.weight"])
    assert load_archive(a.output)[1]["origin"] == "random:seed=3"
    assert a.source_sha256 == "none" and a.kind == "random"


def test_output_must_not_exist_without_force(tmp_path):
    out = convert_random(tmp_path / "a.safetensors", "fcn32s", width_divisor=NARROW).output
    with pytest.raises(UsageError, match="exists; pass --force"):
        convert_random(out, "fcn32s", seed=1, width_divisor=NARROW)
    convert_random(out, "fcn32s", seed=1, width_divisor=NARROW, force=True)
    with pytest.raises(UsageError, match=r"must end in \.safetensors"):
        convert_random(tmp_path / "a.pth", "fcn32s", width_divisor=NARROW)


def test_unwritable_output_is_refused_before_reading_the_source(tmp_path, monkeypatch):
    """QA: OUTPUT under a file (or an unwritable folder) was an OSError traceback, raised only
    after the whole source had been hashed and converted."""
    import bench.weights.convert as converter

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setattr(converter, "sha256_file", lambda *a, **k: pytest.fail("read source"))
    result = run_cli(tmp_path / "missing-is-fine.caffemodel", blocker / "out.safetensors")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot write the weights archive: {blocker} is a file" in result.output
    random_run = run_cli("--random", "--variant", "fcn32s", blocker / "out.safetensors")
    assert random_run.exit_code == 1 and "is a file, not a folder" in random_run.output


# ----------------------------------------------------------------------------------------------
# The CLI: every source, and one clear line for every bad input


def run_cli(*args):
    return CliRunner().invoke(cli, ["convert", *map(str, args)])


def test_cli_converts_each_source(tmp_path):
    spec = build_spec("fcn8s", width_divisor=NARROW)
    trunk = vgg16_trunk()
    sources = {
        "fcn.caffemodel": write_caffemodel(tmp_path / "fcn.caffemodel",
                                           fcn_caffe_layers(spec, random_params(spec))),
        "vgg.caffemodel": write_vgg16_caffemodel(tmp_path / "vgg.caffemodel", trunk),
        "vgg.h5": write_keras_h5(tmp_path / "vgg.h5", trunk, "kernel"),
    }
    if _has_torch():
        sources["vgg.pth"] = write_torchvision_pth(tmp_path / "vgg.pth", trunk)
    expected_variant = {"fcn.caffemodel": "fcn8s"}
    for name, source in sources.items():
        out = tmp_path / f"{name}.safetensors"
        result = run_cli(source, out, "--init-for", "fcn16s") if name.startswith("vgg") \
            else run_cli(source, out)
        assert result.exit_code == 0, result.output
        line = result.output.strip()
        assert "\n" not in line
        variant = expected_variant.get(name, "fcn16s")
        assert f"{out}: {variant} (" in line and "parameters" in line
        assert sha256_file(out) in line and "MiB/s" in line
    result = run_cli("--random", "--variant", "fcn32s", "--seed", "3", "--width-divisor", NARROW,
                     tmp_path / "random.safetensors")
    assert result.exit_code == 0 and "random:seed=3" in result.output


def _bad_inputs(tmp_path):
    """(name, INPUT path, expected message fragment) for each kind of bad input."""
    spec = build_spec("fcn32s", width_divisor=NARROW)
    good = write_caffemodel(tmp_path / "good.caffemodel",
                            fcn_caffe_layers(spec, random_params(spec)))
    data = good.read_bytes()
    (tmp_path / "truncated.caffemodel").write_bytes(data[: len(data) // 2])
    write_caffemodel(tmp_path / "lenet.caffemodel",
                     [("conv1", "Convolution", [np.ones((2, 1, 5, 5), np.float32)]),
                      ("ip1", "InnerProduct", [np.ones((10, 4), np.float32)])])
    params = random_params(spec)
    del params["score_fr.bias"]
    save_file(params, str(tmp_path / "missing.safetensors"))
    (tmp_path / "text.caffemodel").write_text("this is not a caffemodel\n" * 40)
    cases = [
        ("truncated.caffemodel", "truncated at byte"),
        ("lenet.caffemodel", "no FCN, VGG16 or AlexNet layers"),
        ("missing.safetensors", "1 problem: missing score_fr.bias"),
        ("text.caffemodel", "is a text file, not weights"),
        ("absent.caffemodel", "no such file"),
    ]
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_group("dense_1").create_dataset("dense_1/kernel:0", data=np.ones((2, 2)))
        handle.attrs["layer_names"] = np.array([b"dense_1"])
    cases.append(("other.h5", "not a Keras VGG16 weights file: no layer(s) block1_conv1"))
    if _has_torch():
        import torch

        marker = tmp_path / "pwned"

        class Payload:
            def __reduce__(self):
                return (os.mkdir, (str(marker),))

        torch.save({"w": torch.ones(2), "payload": Payload()}, tmp_path / "evil.pth")
        cases.append(("evil.pth", "refused: the file needs arbitrary unpickling"))
    return cases


def test_cli_bad_inputs_give_one_line_and_write_nothing(tmp_path):
    for name, fragment in _bad_inputs(tmp_path):
        out = tmp_path / f"out-{name}.safetensors"
        result = run_cli(tmp_path / name, out)
        assert result.exit_code == 1, (name, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, result.output)
        assert fragment in lines[0] and str(tmp_path / name) in lines[0], (name, lines[0])
        assert "Traceback" not in result.output
        assert not out.exists()
    assert not (tmp_path / "pwned").exists()  # the pickled payload never ran
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_usage_errors(tmp_path):
    out = tmp_path / "a.safetensors"
    assert run_cli("--random", "--variant", "fcn32s", "--width-divisor", NARROW,
                   out).exit_code == 0
    before = out.read_bytes()
    result = run_cli("--random", "--variant", "fcn32s", "--width-divisor", NARROW, out)
    assert result.exit_code == 2 and "exists; pass --force" in result.output
    assert out.read_bytes() == before
    assert run_cli("--random", "--variant", "fcn32s", "--width-divisor", NARROW, "--seed", 1,
                   "--force", out).exit_code == 0
    assert out.read_bytes() != before
    assert run_cli("--random", out).exit_code == 2                 # no --variant
    assert run_cli(out).exit_code == 2                             # no OUTPUT
    result = run_cli(out, tmp_path / "b.safetensors", "--init-for", "fcn8s")
    assert result.exit_code == 2 and "already holds fcn32s weights" in result.output


def test_init_for_and_variant_are_checked_against_the_source(tmp_path):
    spec = build_spec("fcn32s", width_divisor=NARROW)
    fcn = write_caffemodel(tmp_path / "fcn.caffemodel", fcn_caffe_layers(spec,
                                                                        random_params(spec)))
    with pytest.raises(UsageError, match="already holds fcn32s weights; --init-for is for"):
        convert(fcn, tmp_path / "a.safetensors", init_for="fcn8s")
    vgg = write_vgg16_caffemodel(tmp_path / "vgg.caffemodel", vgg16_trunk())
    with pytest.raises(UsageError, match="no FCN variant; use --init-for fcn8s"):
        convert(vgg, tmp_path / "b.safetensors", variant="fcn8s")


# ----------------------------------------------------------------------------------------------
# Full size, once


@pytest.mark.slow
def test_full_size_vgg16_caffemodel_to_atonce_init(tmp_path):
    """The real shapes end to end: a full-size V1 / legacy-dims VGG16 caffemodel (~553 MB, as
    the 2014 file) written to tmp, converted to a full fcn8s-atonce init (~538 MB)."""
    trunk = vgg16_trunk(width_divisor=1, seed=0)
    assert trunk["fc6"][0].shape == (4096, 25088)
    source = write_vgg16_caffemodel(tmp_path / "VGG_ILSVRC_16_layers.caffemodel", trunk)
    try:
        _check_full_size(tmp_path, source, trunk)
    finally:  # pytest keeps the tmp dirs of recent runs: do not leave 1.1 GB behind
        for path in tmp_path.iterdir():
            path.unlink()


def _check_full_size(tmp_path, source, trunk):
    size = source.stat().st_size
    assert 553_000_000 < size < 554_000_000  # the real file: 553,432,081 bytes
    started = time.perf_counter()
    result = convert(source, tmp_path / "init.safetensors", init_for="fcn8s-atonce")
    seconds = time.perf_counter() - started
    spec = build_spec("fcn8s-atonce")
    params, _ = load_archive(result.output, spec)
    assert {k: v.shape for k, v in params.items()} == spec.param_shapes()
    assert result.parameters == spec.num_parameters() == 134_490_527
    fc6 = trunk["fc6"][0]
    for o, c, h, w in [(4095, 511, 6, 6), (1234, 300, 3, 2), (0, 0, 0, 0)]:
        assert params["fc6.weight"][o, c, h, w] == fc6[o, c * 49 + h * 7 + w]
    check_init(params, spec, trunk)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nfull-size VGG16 caffemodel: {size / 2**20:.0f} MiB converted in {seconds:.1f} s "
          f"({size / 2**20 / seconds:.0f} MiB/s), process peak RSS {peak_mib:.0f} MiB")
