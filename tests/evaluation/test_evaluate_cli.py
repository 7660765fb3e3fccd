"""`python cli.py evaluate`: success, the JSON record, and one clear line for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.cli.app import cli
from bench.core.json_text import to_json
from bench.data.labels import VOC_CLASSES, read_label_png, write_label_png
from bench.evaluation.metrics import ConfusionMatrix
from tests.conftest import truncate_file, write_predictions


def _evaluate(voc_root, predictions, *extra):
    args = ["evaluate", "--data-root", str(voc_root), "--split", "val", "--predictions",
            str(predictions), "--no-progress", *extra]
    return CliRunner().invoke(cli, args)


def _assert_clean_failure(result, *fragments, exit_code=1, output=None):
    """Non-zero exit, one 'error:' line naming the file, no traceback, nothing written."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert str(fragment) in errors[0], (fragment, errors[0])
    assert "Traceback" not in result.output
    if output is not None:
        assert not output.exists()
        assert not list(output.parent.glob(f".{output.name}*"))  # no temporary either
    return errors[0]


def test_perfect_predictions_score_100_and_write_the_record(voc_root, perfect_predictions,
                                                            tmp_path):
    output = tmp_path / "out" / "eval.json"
    result = _evaluate(voc_root, perfect_predictions, "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "mean IU %" in result.stdout and "100.00" in result.stdout
    assert "| background" in result.stdout  # github table by default
    record = json.loads(output.read_text())
    assert record["kind"] == "evaluate" and record["schema_version"] == 1
    assert {"utc_time", "git", "packages"} <= set(record["provenance"])
    assert record["split"] == "val" and record["num_images"] == 3
    metrics = record["metrics"]
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert metrics[key] == pytest.approx(1.0), key
    assert list(metrics["per_class_iou"]) == list(VOC_CLASSES)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (21, 21) and matrix.dtype.kind == "i"
    assert np.count_nonzero(matrix - np.diag(np.diag(matrix))) == 0
    assert metrics["num_images"] == 3 and metrics["split"] == "val"
    assert record["predictions"] == str(perfect_predictions)


def test_scores_equal_a_direct_confusion_matrix(voc_root, voc_val, tmp_path):
    shifted = write_predictions(voc_val, tmp_path / "preds", transform=lambda p: (p + 1) % 21)
    output = tmp_path / "eval.json"
    result = _evaluate(voc_root, shifted, "--output", str(output), "--format", "plain",
                       "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "pixel acc. %" in result.stdout and "|" not in result.stdout
    direct = ConfusionMatrix()
    for image_id in voc_val.ids:
        direct.update(voc_val.load_label(image_id), read_label_png(shifted / f"{image_id}.png"))
    metrics = json.loads(output.read_text())["metrics"]
    assert metrics["confusion_matrix"] == direct.matrix.tolist()
    assert metrics["mean_iou"] == pytest.approx(direct.summary()["mean_iou"])
    assert metrics["pixel_accuracy"] < 1.0


@pytest.mark.parametrize("workers", [0, 2])
def test_library_scoring_writes_the_commands_record(voc_root, voc_val, tmp_path, workers):
    """bench.evaluation.predictions is what the command runs: same record bar provenance."""
    from bench.evaluation.predictions import check_predictions, score_voc_predictions

    shifted = write_predictions(voc_val, tmp_path / "preds", transform=lambda p: (p + 2) % 21)
    output = tmp_path / "eval.json"
    result = _evaluate(voc_root, shifted, "--output", str(output), "--workers", str(workers))
    assert result.exit_code == 0, result.output
    check_predictions(voc_val, shifted)
    record = score_voc_predictions(voc_val, shifted, voc_root, workers, False)
    from_command = json.loads(output.read_text())
    for both in (record, from_command):
        both.pop("provenance")
    assert json.loads(to_json(record)) == from_command


def test_library_check_refuses_a_missing_prediction_before_scoring(voc_val, perfect_predictions):
    from bench.core.errors import DataError
    from bench.evaluation.predictions import check_predictions

    (perfect_predictions / f"{voc_val.ids[-1]}.png").unlink()
    with pytest.raises(DataError, match="prediction file"):
        check_predictions(voc_val, perfect_predictions)


def test_unwritable_output_is_one_line(voc_root, perfect_predictions, tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("")
    output = not_a_folder / "eval.json"
    result = _evaluate(voc_root, perfect_predictions, "--output", str(output))
    # QA: the reason used to read "File exists" (from mkdir of the parent that is a file).
    _assert_clean_failure(result, output, f"cannot write the record: {not_a_folder} is a file")


def test_data_root_defaults_to_fcn_bench_data(voc_root, perfect_predictions, monkeypatch,
                                              tmp_path):
    """QA: evaluate ignored $FCN_BENCH_DATA (always ./data) while reproduce honoured it."""
    monkeypatch.setenv("FCN_BENCH_DATA", str(voc_root))
    monkeypatch.chdir(tmp_path)  # no ./data here
    result = CliRunner().invoke(cli, ["evaluate", "--split", "val", "--predictions",
                                      str(perfect_predictions), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "100.00 |" in result.output


def test_help_shows_an_invocation():
    result = CliRunner().invoke(cli, ["evaluate", "--help"])
    assert result.exit_code == 0 and "python cli.py evaluate --data-root" in result.output


# -- bad input: one line naming the file, non-zero exit, no traceback, no output ------------------


def test_missing_prediction_file(voc_root, voc_val, perfect_predictions, tmp_path):
    missing = perfect_predictions / f"{voc_val.ids[1]}.png"
    missing.unlink()
    output = tmp_path / "eval.json"
    _assert_clean_failure(_evaluate(voc_root, perfect_predictions, "--output", str(output)),
                          missing, "prediction file not found", output=output)


def test_missing_predictions_folder(voc_root, tmp_path):
    _assert_clean_failure(_evaluate(voc_root, tmp_path / "nope"), tmp_path / "nope",
                          "predictions folder not found")


@pytest.mark.parametrize("kind", ["label", "image"])
def test_missing_ground_truth_file(voc_root, voc_val, perfect_predictions, tmp_path, kind):
    path = (voc_val.label_path if kind == "label" else voc_val.image_path)(voc_val.ids[0])
    path.unlink()
    output = tmp_path / "eval.json"
    _assert_clean_failure(_evaluate(voc_root, perfect_predictions, "--output", str(output)),
                          path, "file not found", output=output)


def test_label_value_out_of_range(voc_root, voc_val, perfect_predictions, tmp_path):
    path = voc_val.label_path(voc_val.ids[2])
    label = read_label_png(path)
    label[0, 0] = 42
    write_label_png(path, label)
    output = tmp_path / "eval.json"
    _assert_clean_failure(_evaluate(voc_root, perfect_predictions, "--output", str(output)),
                          path, "label values outside 0-20 and 255: 42", output=output)


@pytest.mark.parametrize("bad_value", [21, 255])
def test_prediction_value_out_of_range(voc_root, voc_val, perfect_predictions, tmp_path,
                                       bad_value):
    path = perfect_predictions / f"{voc_val.ids[0]}.png"
    pred = read_label_png(path)
    pred[-1, -1] = bad_value
    write_label_png(path, pred)
    output = tmp_path / "eval.json"
    _assert_clean_failure(_evaluate(voc_root, perfect_predictions, "--output", str(output)),
                          path, f"prediction values outside 0-20: {bad_value}", output=output)


def test_prediction_size_differs_from_label(voc_root, voc_val, perfect_predictions, tmp_path):
    path = perfect_predictions / f"{voc_val.ids[1]}.png"
    write_label_png(path, read_label_png(path)[:, :-2])
    output = tmp_path / "eval.json"
    label_shape = voc_val.load_label(voc_val.ids[1]).shape
    _assert_clean_failure(
        _evaluate(voc_root, perfect_predictions, "--output", str(output)), path,
        voc_val.label_path(voc_val.ids[1]),
        f"prediction is {label_shape[1] - 2}x{label_shape[0]} (WxH)", output=output)


@pytest.mark.parametrize("which", ["prediction", "label"])
def test_truncated_png(voc_root, voc_val, perfect_predictions, tmp_path, which):
    image_id = voc_val.ids[0]
    path = (perfect_predictions / f"{image_id}.png" if which == "prediction"
            else voc_val.label_path(image_id))
    truncate_file(path, 0.5)
    output = tmp_path / "eval.json"
    _assert_clean_failure(_evaluate(voc_root, perfect_predictions, "--output", str(output)),
                          path, output=output)


def test_prediction_not_an_image_or_in_colour(voc_root, voc_val, perfect_predictions):
    path = perfect_predictions / f"{voc_val.ids[0]}.png"
    path.write_text("oops")
    _assert_clean_failure(_evaluate(voc_root, perfect_predictions), path, "cannot decode")
    Image.new("RGB", (4, 4)).save(path)
    _assert_clean_failure(_evaluate(voc_root, perfect_predictions), path, "mode 'RGB'")


def test_empty_split_file(voc_root, perfect_predictions, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = CliRunner().invoke(cli, ["evaluate", "--data-root", str(voc_root), "--split",
                                      str(empty), "--predictions", str(perfect_predictions)])
    _assert_clean_failure(result, empty, "empty")


def test_unknown_split_exits_2(voc_root, perfect_predictions):
    result = CliRunner().invoke(cli, ["evaluate", "--data-root", str(voc_root), "--split",
                                      "seg12", "--predictions", str(perfect_predictions)])
    _assert_clean_failure(result, "unknown split 'seg12'", exit_code=2)


def test_seg11valid_without_data_names_the_downloads(voc_root, perfect_predictions):
    result = CliRunner().invoke(cli, ["evaluate", "--data-root", str(voc_root),
                                      "--predictions", str(perfect_predictions)])
    _assert_clean_failure(result, "seg11valid", "python cli.py download voc2011",
                          "python cli.py download sbd", "python cli.py download seg11valid")


# -- other data sets -------------------------------------------------------------------------------

def _zoo_predictions(root, name, folders):
    """Perfect predictions (void -> class 0) for every head of a generated data set."""
    from bench.data.sets import open_dataset

    dataset = open_dataset(name, root)
    for image_id in dataset.ids:
        for head, label in dataset.load_labels(image_id).items():
            write_label_png(folders[head] / f"{image_id}.png", np.where(label == 255, 0, label))
    return dataset


@pytest.mark.parametrize("name", ["nyud", "pascalcontext", "ade20k"])
def test_other_data_sets_score_perfect_predictions(tmp_path, name):
    from bench.data.synthetic_zoo import WRITERS

    WRITERS[name](tmp_path / "data", 0, 6)
    dataset = _zoo_predictions(tmp_path / "data", name, {"semantic": tmp_path / "pred"})
    output = tmp_path / "record.json"
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", name, "--data-root",
                                      str(tmp_path / "data"), "--predictions",
                                      str(tmp_path / "pred"), "--no-progress", "--output",
                                      str(output)])
    assert result.exit_code == 0, result.output
    record = json.loads(output.read_text())
    assert record["dataset"] == name and record["num_images"] == len(dataset)
    assert record["metrics"]["pixel_accuracy"] == 1.0
    assert record["published_split"] is False  # generated ids are not the published list
    assert "NOT the published list" in result.output
    if name == "pascalcontext":
        assert "background (index 0) is counted" in result.output
    if name == "ade20k":
        assert "benchmark score" in result.output


def test_siftflow_scores_two_heads_and_reports_both_mean_ius(tmp_path):
    from bench.data.synthetic_zoo import write_siftflow_tree

    write_siftflow_tree(tmp_path / "data", 0, 6)
    folders = {"semantic": tmp_path / "sem", "geometric": tmp_path / "geo"}
    _zoo_predictions(tmp_path / "data", "siftflow", folders)
    output = tmp_path / "record.json"
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", "siftflow", "--data-root",
                                      str(tmp_path / "data"), "--predictions", str(folders[
                                          "semantic"]), "--geo-predictions",
                                      str(folders["geometric"]), "--no-progress", "--output",
                                      str(output)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(output.read_text())["metrics"]
    assert metrics["heads"]["geometric"]["pixel_accuracy"] == 1.0
    assert "mean_iou_present" in metrics and "GT-present" in result.output


def test_siftflow_without_geo_predictions_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", "siftflow", "--data-root",
                                      str(tmp_path), "--predictions", str(tmp_path)])
    _assert_clean_failure(result, "--geo-predictions", exit_code=2)


def test_other_data_set_prediction_out_of_range_is_one_line(tmp_path):
    from bench.data.synthetic_zoo import write_nyud_tree

    write_nyud_tree(tmp_path / "data", 0, 6)
    dataset = _zoo_predictions(tmp_path / "data", "nyud", {"semantic": tmp_path / "pred"})
    bad = tmp_path / "pred" / f"{dataset.ids[0]}.png"
    write_label_png(bad, np.full((48, 64), 45, dtype=np.uint8))
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", "nyud", "--data-root",
                                      str(tmp_path / "data"), "--predictions",
                                      str(tmp_path / "pred"), "--no-progress"])
    _assert_clean_failure(result, bad, "outside 0-39")


def test_model_option_prints_the_paper_as_a_reference_point(tmp_path):
    from bench.data.synthetic_zoo import write_nyud_tree

    write_nyud_tree(tmp_path / "data", 0, 6)
    _zoo_predictions(tmp_path / "data", "nyud", {"semantic": tmp_path / "pred"})
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", "nyud", "--data-root",
                                      str(tmp_path / "data"), "--predictions",
                                      str(tmp_path / "pred"), "--no-progress", "--model",
                                      "nyud-fcn32s-color"])
    assert result.exit_code == 0, result.output
    assert "60.0 (CVPR 2015 Table 4)" in result.output
    assert "verdict: reference point (released-heavy weights)" in result.output
