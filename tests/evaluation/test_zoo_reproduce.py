"""`reproduce --variant MODEL` for one model of every released family on generated data
(bench.data.synthetic_zoo), both backends side by side, narrow random nets: the model's own data set
and default split, the paper table, every head's metrics, predictions that `evaluate` re-scores
identically, resume, and the data set's class names in the figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.data.synthetic import make_voc
from bench.data.synthetic_zoo import WRITERS
from bench.model.init import random_params
from bench.model.spec import build_spec
from bench.weights.archive import archive_metadata, save_archive

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

# One model per family: (model, data set, heads).
FAMILIES = [
    ("nyud-fcn32s-color-hha", "nyud", ("semantic",)),
    ("siftflow-fcn16s", "siftflow", ("semantic", "geometric")),
    ("pascalcontext-fcn32s", "pascalcontext", ("semantic",)),
    ("ade20k-fcn8s", "ade20k", ("semantic",)),
    ("voc-fcn-alexnet", "voc", ("semantic",)),
]


@pytest.fixture(scope="module")
def _template(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo_reproduce")
    for name, writer in WRITERS.items():
        writer(root / "data", seed=3, n=4 if name != "siftflow" else 2)
    make_voc(root / "data", num_images=4, seed=1)
    for model, _, _ in FAMILIES:
        spec = build_spec(model, width_divisor=16)
        save_archive(root / f"{model}.safetensors", random_params(spec, 0),
                     archive_metadata(spec, kind="random", origin="random:seed=0"))
    return root


@pytest.fixture
def work(_template, tmp_path, monkeypatch):
    shutil.copytree(_template, tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("FCN_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FCN_BENCH_DATA", raising=False)
    return tmp_path


def _reproduce(work: Path, model: str, *args: str):
    return CliRunner().invoke(cli, [
        "reproduce", "--variant", model, "--weights", str(work / f"{model}.safetensors"),
        "--data-root", str(work / "data"), "--threads", "1", "--no-progress", "--device", "cpu",
        "--workers", "0", *args])


@pytest.mark.parametrize(("model", "dataset", "heads"), FAMILIES,
                         ids=[family[1] for family in FAMILIES])
def test_reproduce_every_family_both_backends_and_rescore(work, model, dataset, heads):
    pytest.importorskip("tensorflow")
    from bench.evaluation.predictions import score_dataset_predictions

    record_path, preds = work / "run.json", work / "preds"
    split = ("--split", "val") if dataset == "voc" else ()  # generated VOC has no seg11valid
    result = _reproduce(work, model, "--backend", "all", "--output", str(record_path),
                        "--save-predictions", str(preds), "--plots", str(work / "plots"), *split)
    assert result.exit_code == 0, result.output
    assert "paper % (source)" in result.output  # the paper table beside the run
    record = json.loads(record_path.read_text())
    assert record["dataset"] == dataset
    rows = {row["backend"]: row for row in record["rows"]}
    assert set(rows) == {"torch", "tensorflow"}
    if len(heads) > 1:
        assert "heads (torch):" in result.output and "geom. acc." in result.output
        assert set(rows["torch"]["metrics"]["heads"]) == set(heads)
    if dataset in ("nyud", "siftflow", "pascalcontext", "ade20k"):
        assert record["reference_split"].startswith(dataset)
    # The two backends agree on the narrow nets' argmax for every head.
    for head in heads:
        torch_m = rows["torch"]["metrics"].get("heads", {head: rows["torch"]["metrics"]})[head]
        tf_m = rows["tensorflow"]["metrics"].get("heads", {head: rows["tensorflow"]["metrics"]})[
            head]
        assert abs(torch_m["mean_iou"] - tf_m["mean_iou"]) < 0.02
    # The saved predictions re-score identically with evaluate's own code.
    if dataset != "voc":
        folder = preds / "torch"
        folders = ({head: folder / head for head in heads} if len(heads) > 1
                   else {"semantic": folder})
        rescored = score_dataset_predictions(dataset, work / "data", None, folders, 0,
                                             False)["metrics"]
        for head in heads:
            mine = rows["torch"]["metrics"].get("heads", {head: rows["torch"]["metrics"]})[head]
            assert rescored["heads"][head]["confusion_matrix"] == (
                mine.get("confusion_matrix") or rows["torch"]["metrics"]["confusion_matrix"])
    # Figures carry the data set's classes: one set per head.
    plots = sorted(p.name for p in (work / "plots").iterdir())
    assert len(plots) == len(heads) * 3


def test_reproduce_resumes_exactly_with_two_heads(work):
    model = "siftflow-fcn16s"
    first = _reproduce(work, model, "--output", str(work / "a.json"))
    assert first.exit_code == 0, first.output
    stop = {"n": 0}

    import bench.evaluation.runner as runner

    original = runner.run_evaluation

    def interrupted(*args, **kwargs):
        def on_image(done, image_id):
            if done == 1:
                raise KeyboardInterrupt
        kwargs["on_image"] = on_image
        stop["n"] += 1
        return original(*args, **kwargs)

    runner.run_evaluation = interrupted
    try:
        broken = _reproduce(work, model, "--checkpoint-every", "1")
    finally:
        runner.run_evaluation = original
    assert broken.exit_code != 0 and stop["n"] == 1
    resumed = _reproduce(work, model, "--resume", "--output", str(work / "b.json"))
    assert resumed.exit_code == 0, resumed.output
    a = json.loads((work / "a.json").read_text())["rows"][0]["metrics"]
    b = json.loads((work / "b.json").read_text())["rows"][0]
    assert b["resumed_from"] == 1
    assert b["metrics"]["heads"] == a["heads"]


def test_bad_file_in_a_zoo_run_keeps_the_checkpoint_and_names_it(work):
    model = "nyud-fcn32s-color-hha"
    test_ids = (work / "data/nyud/test.txt").read_text().split()
    (work / "data/nyud/data/hha" / f"img_{test_ids[-1]}.png").write_bytes(b"not a png")
    result = _reproduce(work, model, "--checkpoint-every", "1")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1, result.output
    assert f"img_{test_ids[-1]}.png" in lines[0] and "checkpoint kept" in lines[0]
    assert "Traceback" not in result.output
