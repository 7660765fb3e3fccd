"""bench.data.synthetic: deterministic, VOC/SBD-shaped, learnable tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from bench.data.id_lists import read_id_list
from bench.data.labels import NUM_CLASSES, VOID_LABEL, read_label_png
from bench.data.synthetic import (
    CLASS_COLOURS,
    make_sbd,
    make_voc,
    synthetic_ids,
    synthetic_sample,
    write_split_list,
)
from bench.data.voc import load_image


def _tree_bytes(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first = make_voc(tmp_path / "a", num_images=4, seed=3)
    second = make_voc(tmp_path / "b", num_images=4, seed=3)
    other = make_voc(tmp_path / "c", num_images=4, seed=4)
    assert _tree_bytes(first) == _tree_bytes(second)
    differs = {k for k, v in _tree_bytes(other).items() if _tree_bytes(first)[k] != v}
    assert any(k.suffix == ".jpg" for k in differs)


def test_voc_layout_and_split_lists(tmp_path):
    voc = make_voc(tmp_path, num_images=7, seed=0)
    assert voc == tmp_path / "VOCdevkit" / "VOC2012"
    split_dir = voc / "ImageSets" / "Segmentation"
    lists = {name: read_id_list(split_dir / f"{name}.txt") for name in ("train", "val", "trainval")}
    for name, ids in lists.items():
        text = (split_dir / f"{name}.txt").read_text()
        assert text.endswith("\n") and not text.endswith("\n\n"), name
        assert ids == sorted(ids), name
    assert set(lists["train"]).isdisjoint(lists["val"])
    assert sorted(lists["train"] + lists["val"]) == lists["trainval"] == synthetic_ids(7)
    for image_id in lists["trainval"]:
        rgb = load_image(voc / "JPEGImages" / f"{image_id}.jpg")
        labels = read_label_png(voc / "SegmentationClass" / f"{image_id}.png")
        assert rgb.shape[:2] == labels.shape
        assert 24 <= labels.shape[0] <= 48 and 24 <= labels.shape[1] <= 48
        assert labels.shape[0] % 2 == 1  # odd sizes, like real VOC images (not multiples of 32)


def test_labels_have_objects_and_thin_void_borders():
    for image_id in synthetic_ids(6):
        _, labels = synthetic_sample(image_id, seed=0)
        values = set(np.unique(labels).tolist())
        assert 0 in values and VOID_LABEL in values
        assert values - {0, VOID_LABEL}, "at least one object class"
        assert values <= set(range(NUM_CLASSES)) | {VOID_LABEL}
        _, no_void = synthetic_sample(image_id, seed=0, void=False)
        # void only replaces pixels on object outlines; everything else is identical
        np.testing.assert_array_equal(labels[labels != VOID_LABEL], no_void[labels != VOID_LABEL])
        void_fraction = (labels == VOID_LABEL).mean()
        assert 0 < void_fraction < 0.5


def test_classes_are_learnable_from_colour(tmp_path):
    """Nearest class colour recovers almost every non-void label from the decoded JPEG."""
    voc = make_voc(tmp_path, num_images=6, seed=1)
    correct = total = 0
    for image_id in synthetic_ids(6):
        rgb = load_image(voc / "JPEGImages" / f"{image_id}.jpg").astype(np.float32)
        labels = read_label_png(voc / "SegmentationClass" / f"{image_id}.png")
        distances = ((rgb[:, :, None, :] - CLASS_COLOURS[None, None]) ** 2).sum(-1)
        guess = distances.argmin(-1)
        keep = labels != VOID_LABEL
        correct += int((guess[keep] == labels[keep]).sum())
        total += int(keep.sum())
    assert correct / total > 0.95


def test_voc2011_is_a_subset_of_voc2012_with_identical_files(tmp_path):
    voc12 = make_voc(tmp_path, year="2012", num_images=6)
    voc11 = make_voc(tmp_path, year="2011", num_images=4)
    for path in voc11.rglob("*"):
        if path.is_file() and path.suffix in (".jpg", ".png"):
            assert path.read_bytes() == (voc12 / path.relative_to(voc11)).read_bytes()


def test_sbd_layout_mat_struct_and_lists(tmp_path):
    ids = synthetic_ids(5)
    dataset_dir = make_sbd(tmp_path, ids, seed=0, val_ids=ids[3:])
    assert dataset_dir == tmp_path / "benchmark_RELEASE" / "dataset"
    assert read_id_list(dataset_dir / "train.txt") == ids[:3]
    assert read_id_list(dataset_dir / "val.txt") == ids[3:]
    voc = make_voc(tmp_path, num_images=5, seed=0)
    for image_id in ids:
        mat = scipy.io.loadmat(dataset_dir / "cls" / f"{image_id}.mat")
        segmentation = mat["GTcls"][0, 0]["Segmentation"]  # the real SBD struct access path
        assert segmentation.dtype == np.uint8
        assert VOID_LABEL not in segmentation
        assert (dataset_dir / "img" / f"{image_id}.jpg").read_bytes() == \
            (voc / "JPEGImages" / f"{image_id}.jpg").read_bytes()
        voc_labels = read_label_png(voc / "SegmentationClass" / f"{image_id}.png")
        keep = voc_labels != VOID_LABEL
        np.testing.assert_array_equal(segmentation[keep], voc_labels[keep])


def test_sbd_rejects_val_ids_outside_ids(tmp_path):
    with pytest.raises(ValueError, match="val_ids"):
        make_sbd(tmp_path, ["2007_000001"], val_ids=["2007_000002"])


def test_split_list_helper_is_canonical(tmp_path):
    path = write_split_list(tmp_path / "lists" / "seg.txt", ["b", "a", "b"])
    assert path.read_text() == "a\nb\n"


def test_bad_sizes_rejected():
    with pytest.raises(ValueError, match="min_size"):
        synthetic_sample("x", min_size=30, max_size=20)


# -- the `demo` tree ------------------------------------------------------------------------------

def test_demo_tree_has_voc_sizes_and_the_real_layouts(tmp_path):
    from bench.data.synthetic import DEMO_MAX_SIZE, DEMO_MIN_SIZE, make_demo_tree
    from bench.data.voc import SBDDataset, resolve_split, sbd_dir

    lists = make_demo_tree(tmp_path, num_images=4)
    assert lists["train"] == synthetic_ids(4)[0::2] and lists["val"] == synthetic_ids(4)[1::2]
    val = resolve_split(tmp_path, "val")
    for image_id in val.ids:
        labels = val.load(image_id).label
        assert min(labels.shape) >= DEMO_MIN_SIZE and max(labels.shape) <= DEMO_MAX_SIZE
        assert labels.shape[0] % 2 == 1
        voc2011 = tmp_path / "VOCdevkit" / "VOC2011"
        assert (voc2011 / "JPEGImages" / f"{image_id}.jpg").read_bytes() == (
            val.voc_dir / "JPEGImages" / f"{image_id}.jpg").read_bytes()
    sbd = SBDDataset(sbd_dir(tmp_path), "train")
    assert list(sbd.ids) == lists["train"]  # training never sees a val image
    assert VOID_LABEL not in np.unique(sbd.load_label(sbd.ids[0]))


def test_demo_tree_is_seeded(tmp_path):
    from bench.data.synthetic import make_demo_tree

    make_demo_tree(tmp_path / "a", num_images=2)
    make_demo_tree(tmp_path / "b", num_images=2)
    make_demo_tree(tmp_path / "c", num_images=2, seed=1)
    a, b, c = (_tree_bytes(tmp_path / n) for n in "abc")
    assert a == b and a != c


def test_demo_command_refuses_a_folder_of_real_data_and_keeps_its_weights(tmp_path):
    from click.testing import CliRunner

    from bench.cli.app import cli

    real = tmp_path / "data"
    (real / "VOCdevkit").mkdir(parents=True)
    refused = CliRunner().invoke(cli, ["demo", "--data-root", str(real), "--no-progress"])
    assert refused.exit_code == 2 and "not empty" in refused.output
    args = ["demo", "--data-root", str(tmp_path / "demo"), "--num-images", "2", "--variant",
            "fcn32s", "--width-divisor", "32", "--no-progress"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    weights = tmp_path / "demo" / "weights" / "fcn32s.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and f"kept {weights}" in again.output
    assert weights.stat().st_mtime_ns == stamp
    assert "python cli.py reproduce" in again.output and "python cli.py train" in again.output
