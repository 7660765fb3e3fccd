"""`cli.py predict`: label PNG, raw scores and overlay written atomically; clear one-line errors.

Uses narrow (width_divisor 16) random-weight archives so every run takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import backends
from bench.cli.app import cli
from bench.data.labels import VOC_PALETTE, read_label_png
from bench.model.init import random_params
from bench.model.spec import MODELS, build_spec
from bench.weights.archive import save_archive

BACKENDS = backends.available_backends()
pytestmark = pytest.mark.skipif(not BACKENDS, reason="neither torch nor tensorflow is installed")


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for variant in ("fcn8s", "fcn32s"):
        spec = build_spec(variant, width_divisor=16)
        paths[variant] = save_archive(folder / f"{variant}.safetensors", random_params(spec, 2),
                                      {"origin": "random:seed=2", "kind": "random"})
    return paths


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rgb = np.random.default_rng(0).integers(0, 256, (29, 35, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"  # PNG: lossless, so the overlay check can be exact
    Image.fromarray(rgb, "RGB").save(path)
    return path


def predict(*args: str):
    return CliRunner().invoke(cli, ["predict", "--device", "cpu", *args])


@pytest.mark.parametrize("name", BACKENDS)
def test_predict_writes_labels_scores_and_overlay(name, archives, photo, tmp_path):
    labels_png, scores_npy, overlay_png = (tmp_path / "out" / f for f in
                                           ("labels.png", "scores.npy", "overlay.png"))
    result = predict("--backend", name, "--weights", str(archives["fcn8s"]), "--image",
                     str(photo), "--out-labels", str(labels_png), "--out-scores",
                     str(scores_npy), "--overlay", str(overlay_png))
    assert result.exit_code == 0, result.output
    assert "35x29, fcn8s" in result.output

    scores = np.load(scores_npy, allow_pickle=False)
    assert scores.shape == (21, 29, 35) and scores.dtype == np.float32
    labels = read_label_png(labels_png)
    np.testing.assert_array_equal(labels, scores.argmax(axis=0))
    assert Image.open(labels_png).mode == "P"

    rgb = np.asarray(Image.open(photo).convert("RGB"))
    blended = np.asarray(Image.open(overlay_png))
    # The photo sits at the top left; the class legend (bench/evaluation/overlay.py) is a panel
    # under it.
    assert blended.shape[0] > rgb.shape[0] and blended.shape[1] >= rgb.shape[1]
    blended = blended[:rgb.shape[0], :rgb.shape[1]]
    background = labels == 0
    np.testing.assert_array_equal(blended[background], rgb[background])
    expected = np.rint(0.5 * rgb[~background] + 0.5 * VOC_PALETTE[labels[~background]])
    np.testing.assert_allclose(blended[~background], expected, atol=1)
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_predict_detects_the_variant_from_the_weights(archives, photo, tmp_path):
    result = predict("--weights", str(archives["fcn32s"]), "--image", str(photo),
                     "--out-labels", str(tmp_path / "l.png"))
    assert result.exit_code == 0, result.output
    assert "fcn32s on" in result.output


def test_predict_refuses_weights_of_another_variant(archives, photo, tmp_path):
    out = tmp_path / "l.png"
    result = predict("--variant", "fcn8s", "--weights", str(archives["fcn32s"]), "--image",
                     str(photo), "--out-labels", str(out))
    assert result.exit_code == 1
    assert "holds fcn32s weights" in result.output and "use --variant fcn32s" in result.output
    assert not out.exists()


def test_predict_reports_a_file_that_is_not_an_image(archives, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a picture")
    out = tmp_path / "l.png"
    result = predict("--weights", str(archives["fcn8s"]), "--image", str(fake),
                     "--out-labels", str(out))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {fake}")
    assert not out.exists()


def test_predict_reports_missing_inputs_and_outputs(archives, photo, tmp_path):
    missing = predict("--weights", str(tmp_path / "none.safetensors"), "--image", str(photo),
                      "--out-labels", str(tmp_path / "l.png"))
    assert missing.exit_code == 1 and "none.safetensors" in missing.output
    nothing = predict("--weights", str(archives["fcn8s"]), "--image", str(photo))
    assert nothing.exit_code == 2 and "nothing to write" in nothing.output
    unknown = predict("--backend", "caffe", "--weights", str(archives["fcn8s"]), "--image",
                      str(photo), "--out-labels", str(tmp_path / "l.png"))
    assert unknown.exit_code == 2 and "choose from torch, tensorflow" in unknown.output


def test_predict_checks_its_outputs_before_the_forward_pass(archives, photo, tmp_path,
                                                            monkeypatch):
    """QA: an output under a file was an OSError traceback after the forward pass, and
    `--out-labels x.jpg` silently wrote PNG bytes into a .jpg."""
    import backends as registry

    monkeypatch.setattr(registry, "create_backend", lambda *a, **k: pytest.fail("ran forward"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    base = ["--weights", str(archives["fcn8s"]), "--image", str(photo)]
    unwritable = predict(*base, "--out-scores", str(blocker / "s.npy"))
    assert unwritable.exit_code == 1 and "Traceback" not in unwritable.output
    assert f"cannot write the scores: {blocker} is a file, not a folder" in unwritable.output
    for option, name in (("--out-labels", "l.jpg"), ("--overlay", "o.tif"),
                         ("--out-scores", "s.txt")):
        wrong = predict(*base, option, str(tmp_path / name))
        assert wrong.exit_code == 2 and f"{option} {tmp_path / name}" in wrong.output
    assert not list(tmp_path.glob("[los].*"))


def test_predict_never_overwrites_its_image_or_one_output_with_another(archives, photo,
                                                                        tmp_path, monkeypatch):
    """Issue 10.4: an output with the image's path overwrote the image, and --out-labels equal
    to --overlay silently kept only the last one."""
    import backends as registry

    monkeypatch.setattr(registry, "create_backend", lambda *a, **k: pytest.fail("ran forward"))
    original = photo.read_bytes()
    base = ["--weights", str(archives["fcn8s"]), "--image", str(photo)]
    itself = predict(*base, "--overlay", str(tmp_path / "x" / ".." / photo.name))
    assert itself.exit_code == 2 and "is the input --image" in itself.output
    same = predict(*base, "--out-labels", str(tmp_path / "o.png"), "--overlay",
                   str(tmp_path / "o.png"))
    assert same.exit_code == 2 and "--overlay" in same.output and "same path" in same.output
    assert "Traceback" not in itself.output + same.output
    assert photo.read_bytes() == original and not (tmp_path / "o.png").exists()


# ----------------------------------------------------------------------------------------------
# Every model: extra inputs by option, two heads, one line for the wrong inputs


@pytest.fixture(scope="module")
def zoo_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from bench.weights.convert import convert_random

    folder = tmp_path_factory.mktemp("zoo")
    return {model: convert_random(folder / f"{model}.safetensors", model, seed=1,
                                  width_divisor=16).output
            for model in ("siftflow-fcn16s", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
                          "nyud-fcn32s-hha")}


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def rgbd(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    return {"image": _png(tmp_path / "rgb.png", rng.integers(0, 256, (29, 35, 3), np.uint8)),
            "hha": _png(tmp_path / "hha.png", rng.integers(0, 256, (29, 35, 3), np.uint8)),
            "depth": _png(tmp_path / "depth.png",
                          rng.integers(500, 6000, (29, 35)).astype(np.uint16))}


def test_two_head_model_writes_both_label_maps(zoo_archives, photo, tmp_path):
    out = tmp_path / "l.png"
    result = predict("--weights", str(zoo_archives["siftflow-fcn16s"]), "--image", str(photo),
                     "--out-labels", str(out), "--out-scores", str(tmp_path / "s.npy"))
    assert result.exit_code == 0, result.output
    assert "semantic classes (score_sem)" in result.output and "class " in result.output
    for suffix, classes in (("_sem", 33), ("_geo", 3)):
        scores = np.load(tmp_path / f"s{suffix}.npy")
        assert scores.shape == (classes, 29, 35)
        labels = read_label_png(tmp_path / f"l{suffix}.png", num_classes=classes)
        np.testing.assert_array_equal(labels, scores.argmax(axis=0))
    assert not out.exists()


def test_rgbd_and_rgb_hha_models_take_their_inputs_by_option(zoo_archives, rgbd, tmp_path):
    ok = predict("--weights", str(zoo_archives["nyud-fcn32s-color-d"]), "--image",
                 str(rgbd["image"]), "--depth", str(rgbd["depth"]), "--out-scores",
                 str(tmp_path / "d.npy"))
    assert ok.exit_code == 0, ok.output
    assert np.load(tmp_path / "d.npy").shape == (40, 29, 35)
    fused = predict("--weights", str(zoo_archives["nyud-fcn32s-color-hha"]), "--image",
                    str(rgbd["image"]), "--hha", str(rgbd["hha"]), "--overlay",
                    str(tmp_path / "o.png"))
    assert fused.exit_code == 0, fused.output
    hha_only = predict("--weights", str(zoo_archives["nyud-fcn32s-hha"]), "--hha",
                       str(rgbd["hha"]), "--out-labels", str(tmp_path / "h.png"))
    assert hha_only.exit_code == 0, hha_only.output


def _one_line(result, *fragments):
    assert result.exit_code in (1, 2), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 or result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def test_wrong_or_missing_inputs_are_one_line(zoo_archives, archives, rgbd, tmp_path):
    out = ["--out-labels", str(tmp_path / "l.png")]
    colour_d = ["--weights", str(zoo_archives["nyud-fcn32s-color-d"])]
    _one_line(predict(*colour_d, "--image", str(rgbd["image"]), *out),
              "nyud-fcn32s-color-d needs --depth FILE")
    _one_line(predict(*colour_d, "--image", str(rgbd["image"]), "--depth", str(rgbd["hha"]),
                      *out), str(rgbd["hha"]), "depth image has 3 channels")
    holes = _png(tmp_path / "holes.png", np.zeros((29, 35), np.uint16))
    _one_line(predict(*colour_d, "--image", str(rgbd["image"]), "--depth", str(holes), *out),
              "1015 depth values are zero")
    small = _png(tmp_path / "small.png", np.full((10, 12), 900, np.uint16))
    _one_line(predict(*colour_d, "--image", str(rgbd["image"]), "--depth", str(small), *out),
              "the inputs differ in size")
    grey = _png(tmp_path / "grey.png", np.zeros((29, 35), np.uint8))
    _one_line(predict("--weights", str(zoo_archives["nyud-fcn32s-hha"]), "--hha", str(grey),
                      *out), str(grey), "HHA image has mode 'L'")
    _one_line(predict("--weights", str(archives["fcn8s"]), "--image", str(rgbd["image"]),
                      "--depth", str(rgbd["depth"]), *out), "fcn8s takes no such input")
    _one_line(predict("--weights", str(archives["fcn8s"]), "--image", str(rgbd["depth"]), *out),
              str(rgbd["depth"]), "the colour input needs an 8-bit RGB photo")
    _one_line(predict("--weights", str(zoo_archives["siftflow-fcn16s"]), "--variant", "fcn16s",
                      "--image", str(rgbd["image"]), *out), "holds siftflow-fcn16s weights")
    assert not list(tmp_path.glob("l*.png"))


def test_inputs_are_encoded_as_their_data_layers():
    from bench.data.inputs import encode
    from bench.model.zoo import NYUD_COLOR, NYUD_HHA, NYUD_LOGD

    pixel = np.array([[[10, 20, 30]]], np.uint8)
    np.testing.assert_allclose(encode(NYUD_COLOR, pixel)[:, 0, 0],
                               np.array([30, 20, 10]) - np.array(NYUD_COLOR.mean), rtol=1e-6)
    np.testing.assert_allclose(encode(NYUD_HHA, pixel)[:, 0, 0],
                               np.array([10, 20, 30]) - np.array(NYUD_HHA.mean), rtol=1e-6)
    np.testing.assert_allclose(encode(NYUD_LOGD, np.array([[2550.0]]))[0, 0, 0],
                               np.log(2550.0) - 7.844, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_predict_runs_every_model(model, rgbd, tmp_path):
    """`convert --random` then `predict` for every released model (narrow nets; the VOC-sized
    bilinear kernels of the 40/60/151-class nets make this the slow part)."""
    from bench.model.spec import resolve_model

    archive = tmp_path / "w.safetensors"
    made = CliRunner().invoke(cli, ["convert", "--random", "--variant", model,
                                    "--width-divisor", "16", str(archive)])
    assert made.exit_code == 0, made.output
    entry = resolve_model(model)
    options = {"bgr": ("--image", rgbd["image"]), "hha": ("--hha", rgbd["hha"]),
               "logd": ("--depth", rgbd["depth"])}
    inputs = [str(part) for item in entry.inputs for part in options[item.kind]]
    result = predict("--weights", str(archive), *inputs, "--out-scores",
                     str(tmp_path / "s.npy"))
    assert result.exit_code == 0, result.output
    for head in entry.heads:
        name = "s.npy" if len(entry.heads) == 1 else f"s{head.suffix}.npy"
        assert np.load(tmp_path / name).shape == (head.classes, 29, 35)
