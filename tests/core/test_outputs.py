"""bench.core.outputs.check_outputs: no output may be, contain or sit inside an input, or repeat."""

from __future__ import annotations

import os

import pytest

from bench.core.errors import DataError
from bench.core.outputs import OutputConflict, check_outputs, folder


@pytest.fixture
def tree(tmp_path):
    labels = tmp_path / "VOC" / "SegmentationClass"
    labels.mkdir(parents=True)
    (labels / "a.png").write_bytes(b"label")
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"jpeg")
    return tmp_path, labels, image


def test_distinct_outputs_pass_and_are_returned(tree):
    root, labels, image = tree
    paths = check_outputs({"--output": root / "out" / "r.json", "--plots": folder(root / "figs"),
                           "--csv": None}, {"labels": labels, "--image": image})
    assert paths == {"--output": root / "out" / "r.json", "--plots": root / "figs"}
    assert not (root / "figs").exists()  # nothing is created by the check


@pytest.mark.parametrize("make", [
    lambda root, labels, image: folder(labels),                      # the input folder itself
    lambda root, labels, image: folder(root / "VOC"),                # a folder containing it
    lambda root, labels, image: labels / "a.png",                    # a file inside it
    lambda root, labels, image: folder(labels / "sub"),              # a folder inside it
    lambda root, labels, image: labels / ".." / "SegmentationClass" / "b.png",  # via ..
    lambda root, labels, image: image,                               # the image
    lambda root, labels, image: root / "x" / ".." / "photo.jpg",
])
def test_outputs_touching_an_input_are_refused(tree, make):
    root, labels, image = tree
    (root / "x").mkdir()
    with pytest.raises(OutputConflict, match="overwrite"):
        check_outputs({"--out": make(root, labels, image)}, {"labels": labels, "--image": image})
    assert (labels / "a.png").read_bytes() == b"label" and image.read_bytes() == b"jpeg"


def test_symlinks_and_hard_links_are_seen_through(tree):
    root, labels, image = tree
    (root / "alias").symlink_to(labels, target_is_directory=True)
    with pytest.raises(OutputConflict, match="is the input labels"):
        check_outputs({"--save-predictions": folder(root / "alias")}, {"labels": labels})
    (root / "photo-link.jpg").symlink_to(image)
    with pytest.raises(OutputConflict, match="is the input --image"):
        check_outputs({"--overlay": root / "photo-link.jpg"}, {"--image": image})
    os.link(image, root / "hard.jpg")
    with pytest.raises(OutputConflict, match="is the input --image"):
        check_outputs({"--overlay": root / "hard.jpg"}, {"--image": image})


def test_two_outputs_with_the_same_path_are_refused(tree):
    root, _, _ = tree
    with pytest.raises(OutputConflict, match=r"--overlay .* and --out-labels are the same path"):
        check_outputs({"--out-labels": root / "o.png", "--overlay": root / "." / "o.png"})


def test_an_unwritable_output_is_still_refused(tree):
    _, _, image = tree
    with pytest.raises(DataError, match="is a file"):
        check_outputs({"--output": image / "r.json"})


def test_dataset_inputs_protect_every_label_and_image_folder(tmp_path):
    from bench.core.outputs import dataset_inputs
    from bench.data.synthetic import make_voc

    root = tmp_path / "data"
    make_voc(root, num_images=4)
    from bench.data.voc import resolve_split

    dataset = resolve_split(root, "val")
    inputs = dataset_inputs(dataset)
    labels = dataset.label_path(dataset.ids[0]).parent
    assert {labels, dataset.image_path(dataset.ids[0]).parent} <= set(inputs.values())
    with pytest.raises(OutputConflict, match=r"SegmentationClass.* is the input labels folder"):
        check_outputs({"--save-predictions": folder(labels)}, inputs)


# Every command that writes refuses an output aimed at one of its inputs, before any work.


def _invoke(*args: str):
    from click.testing import CliRunner

    from bench.cli.app import cli

    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def voc(tmp_path):
    from bench.data.synthetic import make_voc

    make_voc(tmp_path / "data", num_images=4)
    return tmp_path / "data" / "VOCdevkit" / "VOC2012"


def test_evaluate_refuses_a_record_inside_its_predictions_or_labels(voc, tmp_path):
    labels = voc / "SegmentationClass"
    for output in (labels / "eval.json", voc / ".." / "VOC2012" / "JPEGImages" / "e.json"):
        result = _invoke("evaluate", "--data-root", str(tmp_path / "data"), "--split", "val",
                         "--predictions", str(labels), "--output", str(output), "--no-progress")
        assert result.exit_code == 2 and "would overwrite it" in result.output, result.output
        assert not output.exists()


def test_convert_never_replaces_its_input(tmp_path):
    from bench.model.init import random_params
    from bench.model.spec import build_spec
    from bench.weights.archive import archive_metadata, save_archive

    spec = build_spec("fcn32s", width_divisor=16)
    source = save_archive(tmp_path / "w.safetensors", random_params(spec, 0),
                          archive_metadata(spec, kind="random", origin="random:seed=0"))
    before = source.read_bytes()
    (tmp_path / "alias.safetensors").symlink_to(source)
    result = _invoke("convert", str(source), str(tmp_path / "alias.safetensors"), "--force")
    assert result.exit_code == 2 and "is the input INPUT" in result.output
    assert source.read_bytes() == before
    result = _invoke("parity", "--weights", str(source), "--output", str(source))
    assert result.exit_code == 2 and "is the input --weights" in result.output


def test_golden_latency_history_and_compare_refuse_overlaps(tmp_path):
    from bench.ci.golden import GOLDEN_BASELINE

    before = GOLDEN_BASELINE.read_bytes()
    result = _invoke("golden", "--output", str(GOLDEN_BASELINE))
    assert result.exit_code == 2 and "is the input --baseline" in result.output
    assert GOLDEN_BASELINE.read_bytes() == before
    same = str(tmp_path / "lat.json")
    result = _invoke("latency", "--output", same, "--output", same)
    assert result.exit_code == 2 and "same path" in result.output
    records = tmp_path / "records"
    records.mkdir()
    (records / "a.json").write_text("{}")
    result = _invoke("history", str(records), "--csv", str(records / "a.json"))
    assert result.exit_code == 2 and "is inside the input DIRECTORY" in result.output
    result = _invoke("compare", str(records / "a.json"), str(records / "a.json"), "--output",
                     str(records / "a.json"))
    assert result.exit_code == 2 and "is the input BASELINE" in result.output
    assert (records / "a.json").read_text() == "{}"
