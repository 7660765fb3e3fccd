"""`reproduce` end to end on generated VOC data with deterministic random weights (narrow nets).

The real backends run here (torch always where installed, tensorflow in the side-by-side test);
networks are `width_divisor` 16 and images at most 48x48, so a forward pass costs milliseconds.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.data.synthetic import make_voc
from bench.model.init import random_params
from bench.model.spec import build_spec
from bench.weights.archive import archive_metadata, save_archive

pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def _template(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce_voc")
    make_voc(root / "data", num_images=6, seed=1)
    for variant, seed in (("fcn32s", 0), ("fcn32s", 1), ("fcn8s", 0)):
        spec = build_spec(variant, width_divisor=16)
        save_archive(root / f"{variant}-{seed}.safetensors", random_params(spec, seed),
                     archive_metadata(spec, kind="random", origin=f"random:seed={seed}"))
    return root


@pytest.fixture
def work(_template, tmp_path, monkeypatch):
    shutil.copytree(_template, tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("FCN_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FCN_BENCH_DATA", raising=False)
    return tmp_path


def _reproduce(work: Path, *args: str, weights: str = "fcn32s-0", variant: str = "fcn32s"):
    base = ["reproduce", "--variant", variant, "--weights", str(work / f"{weights}.safetensors"),
            "--data-root", str(work / "data"), "--threads", "1", "--no-progress",
            "--device", "cpu"]
    return CliRunner().invoke(cli, [*base, *args])


def _record(path: Path) -> dict:
    return json.loads(path.read_text())


def test_all_backends_side_by_side_and_predictions_rescore(work):
    pytest.importorskip("tensorflow")
    result = _reproduce(work, "--backend", "all", "--split", "val", "--output",
                        str(work / "out.json"), "--save-predictions", str(work / "preds"),
                        "--plots", str(work / "plots"))
    assert result.exit_code == 0, result.output
    assert re.search(r"\| metric +\| paper % \(source\) +\|.*torch %.*\| +Δ torch \(points\)"
                     r".*tensorflow %", result.output)
    record = _record(work / "out.json")
    assert record["kind"] == "reproduce" and record["split"] == "val"
    assert [row["backend"] for row in record["rows"]] == ["torch", "tensorflow"]
    torch_cm, tf_cm = (np.array(row["metrics"]["confusion_matrix"]) for row in record["rows"])
    assert torch_cm.sum() > 0
    # Same spec, same weights, fp32 on CPU: the label maps agree pixel for pixel here.
    assert np.array_equal(torch_cm, tf_cm), "torch and tensorflow predictions differ"
    assert "identical confusion matrices" in result.output
    for row in record["rows"]:
        assert row["verdict"] == "no reference" and row["images_per_s"] > 0
        assert row["timing"]["forward_s"] > 0
        rescored = CliRunner().invoke(cli, [
            "evaluate", "--data-root", str(work / "data"), "--split", "val", "--predictions",
            str(work / "preds" / row["backend"]), "--output", str(work / "eval.json"),
            "--no-progress"])
        assert rescored.exit_code == 0, rescored.output
        metrics = _record(work / "eval.json")["metrics"]
        assert metrics["confusion_matrix"] == row["metrics"]["confusion_matrix"]
        assert metrics["mean_iou"] == row["metrics"]["mean_iou"]
    pngs = sorted(p.name for p in (work / "plots").iterdir())
    assert pngs == ["fcn32s-val-per-class-iou.png", "fcn32s-val-tensorflow-confusion.png",
                    "fcn32s-val-torch-confusion.png"]
    assert all((work / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_resume_after_a_corrupt_image_equals_an_uninterrupted_run(work):
    args = ("--backend", "torch", "--split", "trainval", "--checkpoint-every", "1")
    fresh = _reproduce(work, *args, "--output", str(work / "fresh.json"))
    assert fresh.exit_code == 0, fresh.output

    ids = (work / "data/VOCdevkit/VOC2012/ImageSets/Segmentation/trainval.txt").read_text().split()
    bad = work / "data/VOCdevkit/VOC2012/JPEGImages" / f"{ids[3]}.jpg"
    original = bad.read_bytes()
    bad.write_bytes(original[:200])
    broken = _reproduce(work, *args)
    assert broken.exit_code == 1
    assert f"{bad.name}: cannot decode" in broken.output
    assert "checkpoint kept at" in broken.output and "(3 of 6 images done)" in broken.output

    # A checkpoint from other weights is refused, naming what differs.
    bad.write_bytes(original)
    other = _reproduce(work, *args, "--resume", weights="fcn32s-1")
    assert other.exit_code == 2 and "weights_sha256 was" in other.output

    resumed = _reproduce(work, *args, "--resume", "--output", str(work / "resumed.json"))
    assert resumed.exit_code == 0, resumed.output
    fresh_row, resumed_row = (_record(work / f"{n}.json")["rows"][0] for n in ("fresh", "resumed"))
    assert resumed_row["resumed_from"] == 3 and resumed_row["timing"]["images"] == 3
    assert resumed_row["metrics"]["confusion_matrix"] == fresh_row["metrics"]["confusion_matrix"]


def test_seg11valid_compares_with_the_paper_and_gives_a_verdict(work, monkeypatch):
    import bench.data.voc

    val_ids = (work / "data/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").read_text().split()
    # The real list has 736 ids and a pinned checksum; stand in the synthetic val ids.
    monkeypatch.setattr(bench.data.voc, "seg11valid_ids", lambda data_root: val_ids)
    result = _reproduce(work, "--backend", "torch", "--output", str(work / "out.json"))
    assert result.exit_code == 1, "random weights cannot reproduce 63.6 mean IU"
    assert "fcn.berkeleyvision.org README" in result.output
    assert "CVPR 2015 Table 2" in result.output
    assert "verdict torch: differs" in result.output
    row = _record(work / "out.json")["rows"][0]
    assert row["verdict"] == "differs"
    deciding = [r for r in row["references"] if r["verdict"] in ("differs", "reproduced within "
                                                                  "tolerance")]
    assert [(r["metric"], r["tolerance_points"]) for r in deciding] == [("mean_iou", 1.0)]

    subset = _reproduce(work, "--backend", "torch", "--limit", "2")
    assert subset.exit_code == 0, subset.output
    assert "verdict torch: not comparable (subset)" in subset.output
    assert "2 of the 3 images" in subset.output


def test_weights_of_another_variant_are_refused(work):
    result = _reproduce(work, "--backend", "torch", "--split", "val", variant="fcn8s")
    assert result.exit_code == 1
    assert "holds fcn32s weights" in result.output and "--variant fcn32s" in result.output


def test_missing_default_weights_say_how_to_get_them(work):
    result = CliRunner().invoke(cli, ["reproduce", "--variant", "fcn8s", "--data-root",
                                      str(work / "data"), "--split", "val"])
    assert result.exit_code == 1
    assert "python cli.py download weights fcn8s" in result.output


def test_missing_or_incomplete_data_root_names_the_download(work):
    result = _reproduce(work, "--data-root", str(work / "nowhere"), "--split", "val")
    assert result.exit_code == 1 and "download voc2012" in result.output
    shutil.rmtree(work / "data/VOCdevkit/VOC2012/SegmentationClass")
    result = _reproduce(work, "--split", "val")
    assert result.exit_code == 1 and "SegmentationClass" in result.output


def test_unknown_split_lists_the_choices(work):
    result = _reproduce(work, "--split", "test2007")
    assert result.exit_code == 2 and "seg11valid" in result.output


def test_table_for_official_weights_shows_both_reevaluations_and_the_verdict():
    from bench.evaluation.published import acceptance, compare
    from bench.evaluation.report import BackendRun, comparison_table

    summary = {r.metric: r.value for r, _ in acceptance("fcn16s", "seg11valid")
               if r.evaluated_by == "Chainer (converted)"}
    comparisons = compare(summary, "fcn16s", "seg11valid", "released-heavy")
    run = BackendRun("torch", "cpu", {}, None, summary, comparisons, "")
    table = comparison_table([run], subset=False)
    assert re.match(r"\| metric +\| paper % \(source\) +\| +this run % \| +Δ points \|", table)
    assert "65.0050 (wkentaro/fcn README, Chainer (converted))" in table
    assert "65.01 (wkentaro/pytorch-fcn README v1.7.0, PyTorch (converted))" in table
    assert table.count("reproduced within tolerance (±0.05)") == 8
    assert "62.4 (CVPR 2015 Table 2, authors (Caffe))" in table
    assert "context (cvpr2015 weights)" in table


@pytest.mark.parametrize("option", ["--output", "--save-predictions", "--plots"])
def test_unwritable_outputs_are_refused_before_the_run(work, option, monkeypatch):
    """QA: each of these was an OSError traceback, and --output/--plots only after every image
    had been evaluated."""
    import bench.evaluation.runner

    monkeypatch.setattr(bench.evaluation.runner, "run_evaluation",
                        lambda *a, **k: pytest.fail("ran"))
    blocker = work / "a-file"
    blocker.write_text("x")
    result = _reproduce(work, "--split", "val", option, str(blocker / "out"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: {blocker / 'out'}: cannot write the" in result.output
    assert f"{blocker} is a file, not a folder" in result.output


def test_ctrl_c_names_the_checkpoint_and_how_to_resume(work, monkeypatch):
    """QA: Ctrl-C printed only a generic "interrupted" line; the user had to guess where the
    finished work was and that --resume continues it."""
    import functools

    import bench.evaluation.runner

    def interrupt_after_two(done, image_id):
        if done == 2:
            raise KeyboardInterrupt

    real = bench.evaluation.runner.run_evaluation
    monkeypatch.setattr(bench.evaluation.runner, "run_evaluation",
                        functools.partial(real, on_image=interrupt_after_two))
    args = ("--split", "trainval", "--checkpoint-every", "5")
    result = _reproduce(work, *args)
    assert result.exit_code == 130
    (checkpoint,) = (work / "cache/checkpoints").glob("reproduce-fcn32s-torch-trainval-*.json")
    assert f"checkpoint {checkpoint}; rerun the same command with --resume" in result.output
    assert len(_record(checkpoint)["ids_done"]) == 2

    monkeypatch.setattr(bench.evaluation.runner, "run_evaluation", real)
    resumed = _reproduce(work, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "4 images in" in resumed.output and "2 images from the checkpoint" in resumed.output
    assert not checkpoint.exists()  # a finished run's checkpoint is removed


def test_predictions_are_refused_where_they_would_overwrite_the_ground_truth(work, monkeypatch):
    """Issue 10.4: --save-predictions into SegmentationClass overwrote the labels, so a rerun
    scored 100 %."""
    import bench.evaluation.runner

    monkeypatch.setattr(bench.evaluation.runner, "run_evaluation",
                        lambda *a, **k: pytest.fail("ran"))
    labels = work / "data/VOCdevkit/VOC2012/SegmentationClass"
    before = {p.name: p.read_bytes() for p in labels.iterdir()}
    for target in (labels, work / "data/VOCdevkit", labels / ".." / "JPEGImages"):
        result = _reproduce(work, "--split", "val", "--save-predictions", str(target))
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "writing there would overwrite it" in result.output
    (work / "link").symlink_to(labels, target_is_directory=True)
    result = _reproduce(work, "--split", "val", "--save-predictions", str(work / "link"))
    assert result.exit_code == 2 and "is the input labels folder" in result.output
    result = _reproduce(work, "--split", "val", "--output", str(work / "fcn32s-0.safetensors"))
    assert result.exit_code == 2 and "is the input --weights" in result.output
    assert {p.name: p.read_bytes() for p in labels.iterdir()} == before


def test_two_split_files_with_the_same_name_keep_their_own_checkpoints(work, monkeypatch):
    """Issue 10.7: the checkpoint was keyed by the split file's base name, so a run on another
    `list.txt` destroyed the interrupted run's progress."""
    import functools

    import bench.evaluation.runner

    ids = (work / "data/VOCdevkit/VOC2012/ImageSets/Segmentation/trainval.txt").read_text().split()
    first, second = work / "a" / "list.txt", work / "b" / "list.txt"
    for path, chosen in ((first, ids[:4]), (second, ids[2:])):
        path.parent.mkdir()
        path.write_text("\n".join(chosen) + "\n")
    fresh = _reproduce(work, "--split", str(first), "--output", str(work / "fresh.json"))
    assert fresh.exit_code == 0, fresh.output

    def interrupt_after_two(done, image_id):
        if done == 2:
            raise KeyboardInterrupt

    real = bench.evaluation.runner.run_evaluation
    monkeypatch.setattr(bench.evaluation.runner, "run_evaluation",
                        functools.partial(real, on_image=interrupt_after_two))
    args = ("--split", str(first), "--checkpoint-every", "1")
    assert _reproduce(work, *args).exit_code == 130
    monkeypatch.setattr(bench.evaluation.runner, "run_evaluation", real)
    other = _reproduce(work, "--split", str(second), "--keep-checkpoint")
    assert other.exit_code == 0, other.output
    assert len(list((work / "cache/checkpoints").glob("*.json"))) == 2  # both kept

    resumed = _reproduce(work, *args, "--resume", "--output", str(work / "resumed.json"))
    assert resumed.exit_code == 0, resumed.output
    fresh_row, resumed_row = (_record(work / f"{n}.json")["rows"][0] for n in ("fresh", "resumed"))
    assert resumed_row["resumed_from"] == 2
    assert resumed_row["metrics"]["confusion_matrix"] == fresh_row["metrics"]["confusion_matrix"]
    assert len(list((work / "cache/checkpoints").glob("*.json"))) == 1  # only --keep-checkpoint's


def test_figures_mark_undefined_classes_instead_of_drawing_zero(tmp_path, monkeypatch):
    """QA: a class absent from ground truth and predictions (IU undefined, NaN) was drawn as a
    0 % bar, indistinguishable from a real 0, and the heat map's blank rows were unexplained."""
    import bench.evaluation.plots

    figures = []
    monkeypatch.setattr(bench.evaluation.plots, "_save",
                        lambda figure, path: figures.append(figure))
    iou = {"background": 0.5, "aeroplane": float("nan"), "bicycle": 0.0}
    bench.evaluation.plots.per_class_iou_bars(tmp_path / "bars.png", {"torch": iou}, list(iou),
                                              title="t")
    bench.evaluation.plots.confusion_heatmap(tmp_path / "cm.png", np.array([[3, 1, 0], [0, 0, 0],
                                                                 [1, 0, 2]]), list(iou), title="t")
    bars, heatmap = (figure.axes[0] for figure in figures)
    assert [text.get_text() for text in bars.texts] == ["n/a"]  # aeroplane only, not bicycle
    assert "n/a: class absent" in bars.get_title()
    assert "torch (mean IU 25.00%)" in [t.get_text() for t in bars.get_legend().get_texts()]
    assert "blank rows: class absent from ground truth" in heatmap.get_title()


def test_the_weights_header_is_read_once_and_the_file_hashed_once(work, monkeypatch):
    """Following --variant through reproduce opens the archive once (bench.weights.archive
    open_archive): one header read, one spec, one hash for the record and the checkpoint key."""
    import bench.weights.archive as archive_module

    reads, hashes, specs = [], [], []
    real_read, real_hash, real_infer = (archive_module.read_header, archive_module.sha256_file,
                                        archive_module.infer_spec)
    monkeypatch.setattr(archive_module, "read_header", lambda p: reads.append(p) or real_read(p))
    monkeypatch.setattr(archive_module, "sha256_file", lambda p: hashes.append(p) or real_hash(p))
    monkeypatch.setattr(archive_module, "infer_spec",
                        lambda *a, **k: specs.append(a) or real_infer(*a, **k))
    result = _reproduce(work, "--backend", "torch", "--split", "val", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert len(reads) == 1 and len(hashes) == 1 and len(specs) == 1
