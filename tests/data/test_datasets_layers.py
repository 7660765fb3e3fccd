"""NYUDv2, SIFT Flow, PASCAL-Context and ADE20K layers on generated trees: inputs preprocessed as
the reference data layers, label encodings, split lists, and one clear line for bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
from PIL import Image

from bench.core.errors import DataError
from bench.data.base import canonical_sha256, read_split_file
from bench.data.nyud import MEAN_COLOR_BGR, MEAN_HHA, PINS, open_nyud
from bench.data.pascalcontext import RAW_NAMES, RAW_TO_TASK, TASK_NAMES
from bench.data.sets import open_dataset
from bench.data.siftflow import SUB
from bench.data.synthetic_zoo import WRITERS


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    for writer in WRITERS.values():
        writer(root, 0, 6)
    return root


@pytest.fixture
def root(template, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(template, copy)
    return copy


def _savemat(path, key, array):
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {key: array})
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_generated_tree_loads_with_inputs_matching_labels(template, name):
    dataset = open_dataset(name, template)
    assert len(dataset) >= 1
    sample = dataset.load(dataset.ids[0])
    assert set(sample.labels) == {head.name for head in dataset.heads}
    for array in sample.inputs.values():
        assert array.dtype == np.float32 and array.ndim == 3
        assert array.shape[1:] == next(iter(sample.labels.values())).shape


def test_nyud_preprocessing_is_the_reference_layers(template):
    dataset = open_nyud(template, "test", inputs=("color", "hha", "depth", "color_depth"))
    image_id = dataset.ids[0]
    sample = dataset.load(image_id)
    base = template / "nyud" / "data"
    rgb = np.array(Image.open(base / "images" / f"img_{image_id}.png"), dtype=np.float32)
    expected = (rgb[:, :, ::-1] - MEAN_COLOR_BGR).transpose(2, 0, 1)
    np.testing.assert_array_equal(sample.inputs["color"], expected)
    hha = np.array(Image.open(base / "hha" / f"img_{image_id}.png"), dtype=np.float32)
    np.testing.assert_array_equal(sample.inputs["hha"], (hha - MEAN_HHA).transpose(2, 0, 1))
    depth = np.array(Image.open(base / "depth" / f"img_{image_id}.png"), dtype=np.float32)
    np.testing.assert_allclose(sample.inputs["depth"][0], np.log(depth) - np.float32(7.844),
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(sample.inputs["color_depth"][:3], sample.inputs["color"])
    np.testing.assert_array_equal(sample.inputs["color_depth"][3], sample.inputs["depth"][0])


def test_nyud_labels_shift_down_and_void_becomes_255(template):
    dataset = open_nyud(template, "test")
    image_id = dataset.ids[0]
    raw = scipy.io.loadmat(template / "nyud" / "segmentation" / f"img_{image_id}.mat")[
        "segmentation"]
    label = dataset.load_labels(image_id)["semantic"]
    assert (label[raw == 0] == 255).all()
    np.testing.assert_array_equal(label[raw > 0], raw[raw > 0] - 1)


def test_nyud_trainval_is_train_plus_val_and_published_lists_ship(tmp_path):
    (tmp_path / "nyud").mkdir()
    dataset = open_nyud(tmp_path, "trainval", check_files=False)
    assert len(dataset) == 795 and dataset.split.published
    test = open_nyud(tmp_path, "test", check_files=False)
    assert len(test) == 654 and canonical_sha256(test.ids) == PINS["test"][1]


def test_siftflow_geometric_void_is_minus_one(template):
    dataset = open_dataset("siftflow", template)
    image_id = dataset.ids[0]
    raw = scipy.io.loadmat(template / "SiftFlow" / "GeoLabels" / SUB / f"{image_id}.mat")["S"]
    label = dataset.load_labels(image_id)["geometric"]
    assert (raw == -1).any()
    assert (label[raw == -1] == 255).all()
    np.testing.assert_array_equal(label[raw > 0], raw[raw > 0] - 1)


def test_context_mapping_derived_from_names_with_three_renames():
    by_name = {name: number for number, name in RAW_NAMES.items()}
    assert RAW_TO_TASK[by_name["aeroplane"]] == 1
    assert RAW_TO_TASK[by_name["table"]] == list(TASK_NAMES.values()).index("diningtable")
    assert RAW_TO_TASK[by_name["bedclothes"]] == list(TASK_NAMES.values()).index("bedcloth")
    assert RAW_TO_TASK[by_name["cloth"]] == list(TASK_NAMES.values()).index("clothes")
    assert RAW_TO_TASK[0] == 0 and np.count_nonzero(RAW_TO_TASK) == 59
    assert sorted(RAW_TO_TASK[RAW_TO_TASK > 0]) == list(range(1, 60))


def test_ade20k_ignores_other_and_scores_150_classes(template):
    dataset = open_dataset("ade20k", template)
    confusion = dataset.confusions()["semantic"]
    label = np.array([[0, 1, 2]], dtype=np.uint8)
    confusion.update(label, np.array([[5, 1, 0]], dtype=np.uint8))
    summary = confusion.summary()
    assert confusion.num_pixels == 2  # the 'other' pixel is not counted
    assert summary["pixel_accuracy"] == 0.5
    assert len(summary["per_class_iou"]) == 150 and "other" not in summary["per_class_iou"]


# -- bad input: one DataError naming the file ----------------------------------------------------

def test_nyud_missing_hha_names_the_file(root):
    dataset = open_nyud(root, "test", check_files=False)
    victim = root / "nyud" / "data" / "hha" / f"img_{dataset.ids[0]}.png"
    victim.unlink()
    with pytest.raises(DataError, match="file not found") as error:
        open_nyud(root, "test", inputs=("color", "hha"))
    assert error.value.path == victim
    open_nyud(root, "test", inputs=("color",))  # colour-only models do not need it


def test_nyud_missing_depth_names_the_file(root):
    victim = root / "nyud" / "data" / "depth" / "img_5005.png"
    victim.unlink()
    with pytest.raises(DataError) as error:
        open_nyud(root, "test", inputs=("color_depth",))
    assert error.value.path == victim


def test_siftflow_label_out_of_range(root):
    dataset = open_dataset("siftflow", root)
    path = root / "SiftFlow" / "SemanticLabels" / SUB / f"{dataset.ids[0]}.mat"
    _savemat(path, "S", np.full((256, 256), 40, dtype=np.uint8))
    with pytest.raises(DataError, match="outside 0-33: 40") as error:
        dataset.load_labels(dataset.ids[0])
    assert error.value.path == path


def test_context_label_above_459(root):
    dataset = open_dataset("pascalcontext", root)
    path = root / "pascal-context" / "trainval" / f"{dataset.ids[0]}.mat"
    _savemat(path, "LabelMap", np.full((48, 64), 460, dtype=np.uint16))
    with pytest.raises(DataError, match="outside 0-459: 460") as error:
        dataset.load_labels(dataset.ids[0])
    assert error.value.path == path


def test_ade20k_annotation_of_the_wrong_size(root):
    dataset = open_dataset("ade20k", root)
    path = root / "ADEChallengeData2016" / "annotations" / "validation" / f"{dataset.ids[0]}.png"
    Image.fromarray(np.ones((10, 10), dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match="annotation is 10x10") as error:
        dataset.load(dataset.ids[0])
    assert error.value.path == path


def test_split_file_of_another_data_set(root):
    wrong = root / "nyud" / "test.txt"
    wrong.write_text("coast_natu975\ninsidecity_art947\n")
    with pytest.raises(DataError, match="not NYUDv2 ids") as error:
        open_nyud(root, "test")
    assert error.value.path == wrong


def test_mat_with_wrong_key_or_not_a_mat(root, tmp_path):
    dataset = open_nyud(root, "test")
    path = root / "nyud" / "segmentation" / f"img_{dataset.ids[0]}.mat"
    _savemat(path, "S", np.ones((48, 64), dtype=np.uint8))
    with pytest.raises(DataError, match="no variable 'segmentation'"):
        dataset.load_labels(dataset.ids[0])
    path.write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(DataError, match=r"not a MATLAB 5 \.mat file"):
        dataset.load_labels(dataset.ids[0])


def test_split_file_reader_refuses_huge_and_empty(tmp_path):
    empty = tmp_path / "e.txt"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty"):
        read_split_file(empty, r"\d+", "NYUDv2")


def test_nyud_inputs_take_a_model_s_blob_names_and_kinds(template):
    late = open_nyud(template, "test", inputs={"color": "bgr", "hha": "hha"})
    sample = late.load(late.ids[0])
    assert list(sample.inputs) == ["color", "hha"]
    hha_only = open_nyud(template, "test", inputs={"data": "hha"})
    np.testing.assert_array_equal(hha_only.load(late.ids[0]).inputs["data"], sample.inputs["hha"])
    with pytest.raises(Exception, match="unknown NYUDv2 input 'rgb'"):
        open_nyud(template, "test", inputs={"data": "rgb"})


def test_paths_for_fingerprints(template):
    dataset = open_dataset("siftflow", template)
    image_id = dataset.ids[0]
    assert dataset.label_path(image_id).parent.parent.name == "SemanticLabels"
    assert dataset.image_path(image_id).suffix == ".jpg"


def test_mat_declaring_a_huge_array_is_refused_before_decompression(root):
    """A small compressed all-zero variable that would be 64 MB in memory."""
    dataset = open_nyud(root, "test")
    path = root / "nyud" / "segmentation" / f"img_{dataset.ids[0]}.mat"
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"segmentation": np.zeros((8000, 8000), np.uint8)},
                     do_compression=True)
    path.write_bytes(buffer.getvalue())
    assert path.stat().st_size < 2_000_000
    with pytest.raises(DataError, match="declares shape"):
        dataset.load_labels(dataset.ids[0])


def test_evaluate_cli_context_label_above_459_is_one_line(root, tmp_path):
    from click.testing import CliRunner

    from bench.cli.app import cli
    from bench.data.labels import write_label_png

    dataset = open_dataset("pascalcontext", root)
    for image_id in dataset.ids:
        write_label_png(tmp_path / "pred" / f"{image_id}.png", np.zeros((48, 64), np.uint8))
    bad = root / "pascal-context" / "trainval" / f"{dataset.ids[0]}.mat"
    _savemat(bad, "LabelMap", np.full((48, 64), 999, dtype=np.uint16))
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", "pascalcontext", "--data-root",
                                      str(root), "--predictions", str(tmp_path / "pred"),
                                      "--no-progress"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0] and "outside 0-459: 999" in errors[0]
    assert "Traceback" not in result.output


def test_voc_through_the_common_interface_matches_bench_voc(voc_root, voc_val):
    dataset = open_dataset("voc", voc_root, "val")
    image_id = dataset.ids[0]
    sample, direct = dataset.load(image_id), voc_val.load(image_id)
    np.testing.assert_array_equal(sample.inputs["data"], direct.image)
    np.testing.assert_array_equal(sample.labels["semantic"], direct.label)
    confusions = dataset.confusions()
    confusions["semantic"].update(direct.label, np.where(direct.label == 255, 0, direct.label))
    assert dataset.summarize(confusions)["pixel_accuracy"] == 1.0


def test_ade20k_nearest_resize_matches_pixel_centre_rule():
    from bench.data.ade20k import resize_nearest

    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(resize_nearest(labels, (3, 4)), labels)
    up = resize_nearest(labels, (6, 8))
    np.testing.assert_array_equal(up, np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1))
    # 4 -> 3 columns: centres 0.5, 1.5, 2.5 of 3 map to 0.67, 2.0, 3.33 -> 0, 2, 3
    np.testing.assert_array_equal(resize_nearest(labels, (3, 3))[0], [0, 2, 3])


def test_ade20k_labels_alone_are_enough_to_score(root):
    import shutil

    shutil.rmtree(root / "ADEChallengeData2016" / "images")
    dataset = open_dataset("ade20k", root, check_files=False)
    assert len(dataset) == 6 and dataset.load_labels(dataset.ids[0])["semantic"].ndim == 2
    with pytest.raises(DataError, match="folder not found"):
        open_dataset("ade20k", root)
