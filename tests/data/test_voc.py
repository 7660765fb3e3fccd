"""bench.data.voc: layouts, splits (incl. seg11valid), REF preprocessing, SBD."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.core.errors import DataError, UsageError
from bench.core.means import MEAN_BGR
from bench.data import voc
from bench.data.id_lists import id_list_sha256, read_id_list
from bench.data.labels import read_label_png, write_label_png
from bench.data.prefetch import prefetch
from bench.data.synthetic import make_sbd, make_voc, synthetic_ids, write_split_list
from bench.data.voc import (
    SBDDataset,
    VOCDataset,
    convert_sbd_labels,
    derive_seg11valid_ids,
    load_image,
    preprocess,
    read_sbd_mat,
    resolve_split,
    seg11valid_ids,
    validate_seg11valid,
)
from tests.conftest import truncate_file

# -- preprocessing ----------------------------------------------------------------------------


def _ref_preprocess(rgb):
    """REF voc_layers.py load_image, verbatim in numpy."""
    in_ = np.array(rgb, dtype=np.float32)
    in_ = in_[:, :, ::-1]
    in_ -= np.array((104.00698793, 116.66876762, 122.67891434))
    return in_.transpose((2, 0, 1))


def test_preprocess_matches_reference_bit_for_bit():
    rgb = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    out = preprocess(rgb)
    assert out.shape == (3, 7, 5) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, _ref_preprocess(rgb))


def test_preprocess_channel_order_and_mean():
    rgb = np.zeros((1, 1, 3), dtype=np.uint8)
    rgb[0, 0] = (10, 20, 30)  # R, G, B
    out = preprocess(rgb)[:, 0, 0]
    expected = np.float32([30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434])  # B, G, R
    np.testing.assert_array_equal(out, expected)
    assert MEAN_BGR.tolist() == [104.00698793, 116.66876762, 122.67891434]


def test_preprocess_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        preprocess(np.zeros((4, 4), dtype=np.uint8))


def test_load_image_rgb_greyscale_and_truncated(tmp_path):
    grey = tmp_path / "grey.jpg"
    Image.fromarray(np.full((6, 9), 128, dtype=np.uint8)).save(grey)
    assert load_image(grey).shape == (6, 9, 3)
    photo = tmp_path / "photo.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(photo, quality=95)
    assert load_image(photo).dtype == np.uint8
    truncate_file(photo, 0.5)
    with pytest.raises(DataError, match="cannot decode") as info:
        load_image(photo)
    assert info.value.path == photo


# -- datasets and splits ------------------------------------------------------------------------


def test_devkit_splits(voc_root):
    lists = {s: resolve_split(voc_root, s) for s in ("train", "val", "trainval")}
    assert [len(d) for d in lists.values()] == [3, 3, 6]
    val = lists["val"]
    assert val.name == "val" and val.voc_dir == voc_root / "VOCdevkit" / "VOC2012"
    sample = val.load(val.ids[0])
    assert sample.id == val.ids[0]
    assert sample.image.dtype == np.float32 and sample.image.shape[0] == 3
    assert sample.label.dtype == np.uint8 and sample.label.shape == sample.image.shape[1:]
    assert [s.id for s in val] == val.ids


def test_split_from_a_list_file(voc_root, tmp_path):
    ids = read_id_list(voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/trainval.txt")[:2]
    list_path = write_split_list(tmp_path / "mine.txt", ids)
    dataset = resolve_split(voc_root, str(list_path))
    assert dataset.ids == ids and dataset.name == "mine.txt" and dataset.source == list_path


def test_unknown_split_is_a_usage_error(voc_root):
    with pytest.raises(UsageError, match=r"unknown split 'valid'.*seg11valid"):
        resolve_split(voc_root, "valid")


def test_missing_list_file_and_data_root(voc_root, tmp_path):
    with pytest.raises(DataError, match="split list not found") as info:
        resolve_split(voc_root, str(tmp_path / "nope.txt"))
    assert info.value.path == tmp_path / "nope.txt"
    with pytest.raises(DataError, match="data root not found"):
        resolve_split(tmp_path / "absent", "val")
    empty_root = tmp_path / "empty_root"
    empty_root.mkdir()
    with pytest.raises(DataError, match="download voc2012"):
        resolve_split(empty_root, "val")


def test_empty_split_names_the_file(voc_root, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty") as info:
        resolve_split(voc_root, str(empty))
    assert info.value.path == empty


def test_missing_files_named_with_count(voc_root):
    voc12 = voc_root / "VOCdevkit" / "VOC2012"
    ids = read_id_list(voc12 / "ImageSets/Segmentation/val.txt")
    (voc12 / "JPEGImages" / f"{ids[0]}.jpg").unlink()
    (voc12 / "SegmentationClass" / f"{ids[1]}.png").unlink()
    with pytest.raises(DataError) as info:
        resolve_split(voc_root, "val")
    message = str(info.value)
    assert info.value.path == voc12 / "JPEGImages" / f"{ids[0]}.jpg"
    assert "file not found" in message and "split 'val'" in message and "1 more missing" in message
    assert f"{ids[1]}.png" in message
    assert f"if {voc12} is damaged, remove it and run `python cli.py download voc2012`" in message


def test_a_missing_folder_is_named_with_its_download_command(voc_root):
    """QA: a data root without SegmentationClass/ listed every label as a missing file, without
    saying which folder was absent or how to get it."""
    import shutil

    voc12 = voc_root / "VOCdevkit" / "VOC2012"
    shutil.rmtree(voc12 / "SegmentationClass")
    with pytest.raises(DataError, match=r"folder not found .*`python cli.py download voc2012`"
                       ) as info:
        resolve_split(voc_root, "val")
    assert info.value.path == voc12 / "SegmentationClass"


def test_a_folder_given_as_split_is_named_as_such(voc_root):
    """QA: `--split some_folder` said "unknown split" as if it were a misspelt name."""
    with pytest.raises(DataError, match="is a folder") as info:
        resolve_split(voc_root, str(voc_root))
    assert info.value.path == voc_root


def test_label_image_size_mismatch_names_both_files(voc_val):
    image_id = voc_val.ids[0]
    label = voc_val.load_label(image_id)
    write_label_png(voc_val.label_path(image_id), label[:-1])
    with pytest.raises(DataError) as info:
        voc_val.load(image_id)
    assert info.value.path == voc_val.label_path(image_id)
    assert str(voc_val.image_path(image_id)) in str(info.value)


def test_read_id_list_rejects_paths(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("2007_000001\n../etc/passwd\n")
    with pytest.raises(DataError, match="not a list of image ids"):
        read_id_list(path)


# -- seg11valid -----------------------------------------------------------------------------------


def _seg11_root(tmp_path, *, with_voc2011=True):
    """VOC2012 with 8 ids, VOC2011 with 6 (val 3), SBD train holding one VOC2011 val id."""
    root = tmp_path / "seg11"
    make_voc(root, year="2012", num_images=8)
    if with_voc2011:
        make_voc(root, year="2011", num_images=6)
    val11 = synthetic_ids(6)[1::2]  # make_voc's val: odd positions of the sorted ids
    sbd_val = sorted(set(synthetic_ids(8)) - set(synthetic_ids(6)))[0]
    make_sbd(root, [val11[0], sbd_val], val_ids=[sbd_val])
    return root, sorted(set(val11) - {val11[0]})


def test_derive_seg11valid_is_val_minus_sbd_train():
    assert derive_seg11valid_ids(["c", "a", "b", "d"], ["b", "x"]) == ["a", "c", "d"]


def test_validation_refuses_wrong_count_and_checksum(tmp_path):
    with pytest.raises(DataError, match=r"has 2 ids, expected 736.*download seg11valid"):
        validate_seg11valid(["2007_000033", "2011_003271"], tmp_path / "seg11valid.txt")
    fake = [f"2007_{i:06d}" for i in range(736)]
    with pytest.raises(DataError, match=r"sha256 .* differs from the reference 4ca991bd72c2"):
        validate_seg11valid(fake, tmp_path / "seg11valid.txt")


def test_checksum_is_of_the_canonical_text():
    assert id_list_sha256(["b", "a"]) == id_list_sha256(["a", "b", "a"])
    import hashlib
    assert id_list_sha256(["a", "b"]) == hashlib.sha256(b"a\nb\n").hexdigest()


def test_generated_lists_derive_but_fail_the_real_validation(tmp_path):
    root, _ = _seg11_root(tmp_path)
    with pytest.raises(DataError, match="has 2 ids, expected 736"):
        resolve_split(root, "seg11valid")
    assert not voc.seg11valid_cache_path(root).exists()  # an invalid list is never cached


def test_missing_data_names_the_download_commands(tmp_path):
    root = tmp_path / "bare"
    make_voc(root, year="2012", num_images=2)
    with pytest.raises(DataError) as info:
        resolve_split(root, "seg11valid")
    message = str(info.value)
    for command in ("download voc2011", "download sbd", "download seg11valid"):
        assert f"python cli.py {command}" in message
    assert "VOC2011/ImageSets/Segmentation/val.txt" in message
    assert "benchmark_RELEASE/dataset/train.txt" in message


@pytest.fixture
def pin_to(monkeypatch):
    """Re-pin the seg11valid count/checksum to a generated list (the real pins need real data)."""
    def pin(ids):
        monkeypatch.setattr(voc, "SEG11VALID_COUNT", len(ids))
        monkeypatch.setattr(voc, "SEG11VALID_SHA256", id_list_sha256(ids))
    return pin


def test_seg11valid_flow_derives_caches_and_reads_voc2011(tmp_path, pin_to):
    root, expected = _seg11_root(tmp_path)
    pin_to(expected)
    dataset = resolve_split(root, "seg11valid")
    assert dataset.ids == expected and dataset.name == "seg11valid"
    assert dataset.voc_dir == root / "VOCdevkit" / "VOC2011"
    cache = voc.seg11valid_cache_path(root)
    assert cache.read_text() == "".join(f"{i}\n" for i in expected)
    assert seg11valid_ids(root) == expected  # now from the cache


def test_seg11valid_images_fall_back_to_voc2012(tmp_path, pin_to):
    root, expected = _seg11_root(tmp_path, with_voc2011=False)
    write_split_list(voc.seg11valid_cache_path(root), expected)
    pin_to(expected)
    dataset = resolve_split(root, "seg11valid")
    assert dataset.voc_dir == root / "VOCdevkit" / "VOC2012"
    assert len(list(prefetch(dataset))) == len(expected)


def test_corrupted_cached_list_is_refused(tmp_path, pin_to):
    root, expected = _seg11_root(tmp_path)
    pin_to(expected)
    write_split_list(voc.seg11valid_cache_path(root), expected[:1])
    with pytest.raises(DataError, match="expected 2") as info:
        resolve_split(root, "seg11valid")
    assert info.value.path == voc.seg11valid_cache_path(root)


# -- SBD ------------------------------------------------------------------------------------------


def test_sbd_reads_mat_then_converted_png(tmp_path):
    ids = synthetic_ids(4)
    dataset_dir = make_sbd(tmp_path, ids, val_ids=ids[3:])
    train = SBDDataset(dataset_dir, "train")
    assert train.ids == ids[:3] and len(SBDDataset(dataset_dir, "val")) == 1
    assert train.label_path(ids[0]).suffix == ".mat"
    from_mat = [train.load(i).label for i in train.ids]
    assert convert_sbd_labels(dataset_dir) == 4
    assert convert_sbd_labels(dataset_dir) == 0  # once
    assert train.label_path(ids[0]) == dataset_dir / "cls_png" / f"{ids[0]}.png"
    for image_id, labels in zip(train.ids, from_mat, strict=True):
        np.testing.assert_array_equal(train.load(image_id).label, labels)
        np.testing.assert_array_equal(read_label_png(train.label_path(image_id)), labels)


def test_sbd_errors(tmp_path):
    dataset_dir = make_sbd(tmp_path, synthetic_ids(2))
    mat = dataset_dir / "cls" / f"{synthetic_ids(2)[0]}.mat"
    truncate_file(mat, 0.3)
    with pytest.raises(DataError) as info:
        read_sbd_mat(mat)
    assert info.value.path == mat
    import scipy.io
    scipy.io.savemat(mat, {"other": np.zeros((2, 2), dtype=np.uint8)})
    with pytest.raises(DataError, match=r"GTcls\.Segmentation"):
        read_sbd_mat(mat)
    scipy.io.savemat(mat, {"GTcls": {"Segmentation": np.full((2, 2), 40, dtype=np.uint8)}})
    with pytest.raises(DataError, match="40"):
        read_sbd_mat(mat)
    with pytest.raises(DataError, match="empty"):
        SBDDataset(dataset_dir, "val")
    with pytest.raises(DataError, match="download sbd"):
        SBDDataset(tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="download sbd"):
        convert_sbd_labels(tmp_path / "nowhere")


def test_voc_dataset_direct_construction(voc_root):
    voc12 = voc_root / "VOCdevkit" / "VOC2012"
    dataset = VOCDataset(voc12, ["2007_000001"])
    assert dataset.image_path("2007_000001") == voc12 / "JPEGImages" / "2007_000001.jpg"
    with pytest.raises(DataError, match=r"2007_999999\.jpg: file not found"):
        VOCDataset(voc12, ["2007_999999"])
    with pytest.raises(DataError, match="empty"):
        VOCDataset(voc12, [])
