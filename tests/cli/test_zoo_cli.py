"""`cli.py models`: the catalogue as a table that fits 120 columns, and as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from bench.cli.app import cli
from bench.model.spec import MODELS, get_spec


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["models", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_table_lists_every_model_within_120_columns():
    output = run()
    assert max(len(line) for line in output.splitlines()) <= 120
    lines = output.splitlines()
    assert [line.split()[0] for line in lines[2:2 + len(MODELS)]] == list(MODELS)
    assert "nyud-fcn32s-color-hha  NYUDv2" in output and "BGR|HHA" in output
    assert "33 + 3" in output and "not released" in output
    assert "fcn8s = voc-fcn8s" in output


def test_json_carries_the_figures_computed_from_the_spec():
    rows = json.loads(run("--format", "json"))
    assert [row["model"] for row in rows] == list(MODELS)
    by_name = {row["model"]: row for row in rows}
    color = by_name["nyud-fcn32s-color"]
    assert color["parameters"] == 140_978_024 == get_spec("nyud-fcn32s-color").num_parameters()
    assert color["inputs"] == [{"name": "data", "channels": 3, "kind": "bgr",
                                "mean": [116.19, 97.203, 92.318]}]
    assert by_name["siftflow-fcn8s"]["heads"] == [
        {"output": "score_sem", "classes": 33, "task": "semantic"},
        {"output": "score_geo", "classes": 3, "task": "geometric"}]
    assert by_name["pascalcontext-fcn8s"]["size"] == [375, 500]
    assert by_name["voc-fcn8s"]["gflops"] == get_spec("fcn8s").flops(500, 500) / 1e9
    assert by_name["voc-fcn8s"]["weights_sha1"] == "c449ea74dd7d83751d1357d6a8c323fcf4038962"
    assert by_name["nyud-fcn32s-color-d"]["weights_url"] is None
    assert by_name["ade20k-fcn8s"]["weights_url"].endswith("FCN_iter_160000.caffemodel")


def test_csv_has_one_line_per_model():
    rows = list(csv.DictReader(io.StringIO(run("--format", "csv"))))
    assert [row["model"] for row in rows] == list(MODELS)
    assert rows[4]["trunk"] == "alexnet" and rows[4]["parameters"] == "58704590"
    assert rows[8]["inputs"] == "color:bgr:3;hha:hha:3"


def test_parity_command_takes_every_model_and_checks_every_head():
    import backends

    if "torch" not in backends.available_backends():
        import pytest

        pytest.skip("needs torch")
    outputs = {}
    for model in ("siftflow-fcn16s", "nyud-fcn32s-color-hha", "nyud-fcn32s-color-d"):
        result = CliRunner().invoke(cli, ["parity", "--variant", model, "--width-divisor", "32",
                                          "--size", "21x27", "--backends", "torch,reference"])
        assert result.exit_code == 0, result.output
        outputs[model] = result.output
    assert "score_sem " in outputs["siftflow-fcn16s"] and "score_geo " in outputs[
        "siftflow-fcn16s"]
    assert "score_fused " in outputs["nyud-fcn32s-color-hha"]
    assert all(output.rstrip().endswith("PASS") for output in outputs.values())
