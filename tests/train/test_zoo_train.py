"""`train` for the released models beyond VOC on generated data (bench.data.synthetic_zoo): each
model's own training split and recipe, multi-input (NYUD colour + HHA), two losses of weight 1
(SIFT Flow), ADE20K's ignored class 0, FCN-AlexNet's 20-image accumulation, colour-D surgery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.core.errors import WeightsError
from bench.data.sets import open_dataset
from bench.data.synthetic import make_sbd, make_voc
from bench.data.synthetic_zoo import write_nyud_tree, write_siftflow_tree
from bench.model.spec import build_spec
from bench.train.data import TrainingView
from bench.train.init_weights import BGRD_LAYER, initial_params
from bench.train.log import LOG_NAME, read_log
from bench.train.recipes import ALEXNET, HEAVY, default_recipe

NARROW = 16


def _train(*args: str) -> str:
    result = CliRunner().invoke(cli, ["train", "--width-divisor", str(NARROW), "--no-progress",
                                      "--threads", "1", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _most_frequent_class_iou(data_root: Path, dataset: str, split: str) -> float:
    """Mean IU of predicting the most frequent class everywhere: a net that learned nothing."""
    data = open_dataset(dataset, data_root, split)
    confusion = data.confusions()["semantic"]
    labels = [data.load_labels(i)["semantic"] for i in data.ids]
    ignored = list(data.heads[0].ignore_labels) or [255]  # ADE20K: 0 "other" is not scored
    valid = np.concatenate([label[~np.isin(label, ignored)] for label in labels])
    common = np.bincount(valid).argmax()
    for label in labels:
        confusion.update(label, np.full_like(label, common))
    return confusion.summary()["mean_iou"]


def test_recipes_per_model_are_the_released_solvers():
    # REF solver.prototxt base_lr: 8s nets of SIFT Flow 1e-12, of Context 1e-14; colour-HHA 1e-12.
    assert HEAVY.base_lr["siftflow-fcn8s"] == 1e-12
    assert HEAVY.base_lr["pascalcontext-fcn8s"] == 1e-14
    assert HEAVY.base_lr["nyud-fcn32s-color-hha"] == 1e-12
    assert HEAVY.base_lr["ade20k-fcn8s"] == 1e-14
    assert default_recipe("voc-fcn-alexnet") is ALEXNET
    assert (ALEXNET.iter_size, ALEXNET.momentum, ALEXNET.loss_normalization,
            ALEXNET.base_lr["voc-fcn-alexnet"]) == (20, 0.9, "valid", 1e-4)
    assert default_recipe("siftflow-fcn16s") is HEAVY


def test_color_d_surgery_adds_the_mean_colour_filter_for_depth():
    spec = build_spec("nyud-fcn32s-color-d", width_divisor=NARROW)
    rng = np.random.default_rng(0)
    shapes = spec.param_shapes()
    trunk = {name.replace(BGRD_LAYER, "conv1_1"): rng.normal(size=shape).astype(np.float32)
             for name, shape in shapes.items()
             if not name.startswith(("score", "upscore"))}
    trunk["conv1_1.weight"] = trunk["conv1_1.weight"][:, :3]
    params, unused = initial_params(spec, trunk, "vgg16", "<trunk>")
    weight = params[f"{BGRD_LAYER}.weight"]
    np.testing.assert_array_equal(weight[:, :3], trunk["conv1_1.weight"])
    np.testing.assert_allclose(weight[:, 3], trunk["conv1_1.weight"].mean(axis=1), rtol=1e-6)
    assert not unused


def test_training_view_ignores_ade20k_other_class(tmp_path):
    from bench.data.synthetic_zoo import write_ade20k_tree

    write_ade20k_tree(tmp_path, n=2)
    view = TrainingView(open_dataset("ade20k", tmp_path, "training"))
    sample = view.load(view.ids[0])
    raw = open_dataset("ade20k", tmp_path, "training").load_labels(view.ids[0])["semantic"]
    assert np.array_equal(sample.label == 255, (raw == 0) | (raw == 255))


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_siftflow_two_heads_and_nyud_two_inputs_train_in_both_backends(tmp_path, backend):
    pytest.importorskip(backend)
    write_siftflow_tree(tmp_path / "data", n=2)
    write_nyud_tree(tmp_path / "data", n=3)
    for model in ("siftflow-fcn32s", "nyud-fcn32s-color-hha"):
        out = tmp_path / model
        _train("--variant", model, "--backend", backend, "--data-root", str(tmp_path / "data"),
               "--init", "random", "--out", str(out), "--lr", "1e-7", "--iters", "2",
               "--eval-every", "2", "--snapshot-every", "2")
        record = json.loads((out / "train_record.json").read_text())
        assert record["iterations"] == 2
        losses = [float(row["loss"]) for row in read_log(out / LOG_NAME)
                  if row["phase"] == "train"]
        assert losses and all(np.isfinite(losses))


def test_alexnet_accumulates_twenty_images_per_update(tmp_path):
    pytest.importorskip("torch")
    make_voc(tmp_path / "data", num_images=4, seed=0)
    make_sbd(tmp_path / "data", [f"2008_{k:06d}" for k in range(1, 5)], seed=0)
    out = tmp_path / "run"
    text = _train("--variant", "voc-fcn-alexnet", "--data-root", str(tmp_path / "data"),
                  "--init", "random", "--out", str(out), "--lr", "1e-6", "--iters", "1",
                  "--val-limit", "0", "--snapshot-every", "1")
    record = json.loads((out / "train_record.json").read_text())
    assert record["config"]["recipe"]["name"] == "alexnet"
    assert record["config"]["recipe"]["iter_size"] == 20 and "x 20 image(s)" in text


def test_short_nyud_training_learns(tmp_path):
    """Beats predicting the most frequent class: the loss, inputs and labels line up."""
    pytest.importorskip("torch")
    root = tmp_path / "data"
    write_nyud_tree(root, n=3)
    out = tmp_path / "run"
    _train("--variant", "nyud-fcn32s-color", "--data-root", str(root), "--init", "random",
           "--out", str(out), "--lr", "2e-7", "--iters", "120", "--eval-every", "120",
           "--snapshot-every", "120", "--train-split", "test", "--val-split", "test")
    evaluation = json.loads((out / "eval" / "iter_0000120.json").read_text())
    baseline = _most_frequent_class_iou(root, "nyud", "test")
    assert evaluation["metrics"]["mean_iou"] > 2 * baseline, (evaluation["metrics"], baseline)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "dataset", "split", "lr"), [
    ("pascalcontext-fcn32s", "pascalcontext", "val", "2e-7"),
    ("ade20k-fcn8s", "ade20k", "validation", "2e-7"),
    ("siftflow-fcn32s", "siftflow", "test", "5e-9"),
])
def test_short_training_learns_every_family(tmp_path, model, dataset, split, lr):
    """The other families, on their own scored split (few images, so it is learnable)."""
    pytest.importorskip("torch")
    from bench.data.synthetic_zoo import WRITERS

    root = tmp_path / "data"
    WRITERS[dataset](root, n=2)
    out = tmp_path / "run"
    _train("--variant", model, "--data-root", str(root), "--init", "random", "--out", str(out),
           "--lr", lr, "--iters", "120", "--eval-every", "120", "--snapshot-every", "120",
           "--train-split", split, "--val-split", split)
    evaluation = json.loads((out / "eval" / "iter_0000120.json").read_text())
    baseline = _most_frequent_class_iou(root, dataset, split)
    assert evaluation["metrics"]["mean_iou"] > 1.5 * baseline, (evaluation["metrics"], baseline)


def test_color_hha_starts_from_a_colour_and_an_hha_fcn32s(tmp_path):
    """REF's suffix transplant: conv1_1 of the colour net -> conv1_1color, of HHA -> conv1_1hha."""
    from bench.model.init import random_params
    from bench.train.init_weights import load_init
    from bench.weights.archive import archive_metadata, save_archive

    archives = {}
    for seed, model in enumerate(("nyud-fcn32s-color", "nyud-fcn32s-hha")):
        spec = build_spec(model, width_divisor=NARROW)
        archives[model] = random_params(spec, seed)
        save_archive(tmp_path / f"{model}.safetensors", archives[model],
                     archive_metadata(spec, kind="trained", origin="test"))
    fused = build_spec("nyud-fcn32s-color-hha", width_divisor=NARROW)
    paths = ",".join(str(tmp_path / f"{m}.safetensors") for m in archives)
    params, info = load_init(fused, paths, 0)
    np.testing.assert_array_equal(params["conv1_1color.weight"],
                                  archives["nyud-fcn32s-color"]["conv1_1.weight"])
    np.testing.assert_array_equal(params["score_frhha.bias"],
                                  archives["nyud-fcn32s-hha"]["score_fr.bias"])
    assert info["init_kind"] == "nyud-fcn32s-color+nyud-fcn32s-hha"
    swapped = ",".join(reversed(paths.split(",")))
    with pytest.raises(WeightsError, match="starts from nyud-fcn32s-color weights"):
        load_init(fused, swapped, 0)
