"""bench.outputs.check_outputs: no output may be, contain or sit inside an input, or repeat."""

from __future__ import annotations

import os

import pytest

from bench.errors import DataError
from bench.outputs import OutputConflict, check_outputs, folder


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
    from bench.outputs import dataset_inputs
    from bench.synthetic import make_voc

    root = tmp_path / "data"
    make_voc(root, num_images=4)
    from bench.voc import resolve_split

    dataset = resolve_split(root, "val")
    inputs = dataset_inputs(dataset)
    labels = dataset.label_path(dataset.ids[0]).parent
    assert {labels, dataset.image_path(dataset.ids[0]).parent} <= set(inputs.values())
    with pytest.raises(OutputConflict, match=r"SegmentationClass.* is the input labels folder"):
        check_outputs({"--save-predictions": folder(labels)}, inputs)
