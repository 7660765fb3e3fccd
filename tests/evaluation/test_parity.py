"""The headline test: PyTorch and TensorFlow, built from one spec with the same weights, compute
the same network, layer by layer, on every variant; plus bench/evaluation/parity.py and `cli.py
parity`.

Tolerances (bench/evaluation/parity.py TOLERANCES, fp32): max |a - b| / max |a| <= 1e-4 per blob,
labels agree on >= 99.9 % of the pixels (observed here: <= 4e-6 and 100 %).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import backends
from bench.cli.app import cli
from bench.core.contracts import RunOptions
from bench.core.json_text import to_json
from bench.evaluation.parity import (
    TOLERANCES,
    Tolerance,
    compare,
    compare_blob,
    label_agreement,
    parity_layers,
)
from bench.model.init import random_params
from bench.model.spec import VARIANTS, build_spec

HAS_BOTH = {"torch", "tensorflow"} <= set(backends.available_backends())
needs_both = pytest.mark.skipif(not HAS_BOTH, reason="parity needs torch and tensorflow")
FP32 = TOLERANCES["fp32"]


def random_images(height: int, width: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((1, 3, height, width)) * 60
            ).astype(np.float32)


def backend_pair(spec, params):
    pair = []
    for name in ("torch", "tensorflow"):
        backend = backends.create_backend(name, spec, RunOptions(device="cpu"))
        backend.load_params(params)
        pair.append(backend)
    return pair


# -- the two backends ----------------------------------------------------------------------------


@needs_both
@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_and_tensorflow_agree_layer_by_layer(variant):
    spec = build_spec(variant, width_divisor=8)
    torch_backend, tf_backend = backend_pair(spec, random_params(spec, seed=7))
    layers = parity_layers(spec)
    for size in [(37, 53), (1, 1), (64, 65)]:
        images = random_images(*size, seed=sum(size))
        report = compare(torch_backend.forward_blobs(images, layers),
                         tf_backend.forward_blobs(images, layers), layers,
                         output=spec.output, tolerance=FP32, left="torch", right="tensorflow")
        assert report.passed, f"{variant} {size}\n{report.table()}"
        assert report.label_agreement >= FP32.min_label_agreement


@needs_both
@pytest.mark.slow
def test_full_width_fcn8s_agrees_on_a_1x1_input():
    """The real VGG16 widths (134M parameters; fc6 sums 25,088 products) on the smallest input."""
    spec = build_spec("fcn8s")
    torch_backend, tf_backend = backend_pair(spec, random_params(spec, seed=1))
    layers = parity_layers(spec)
    images = random_images(1, 1, seed=5)
    report = compare(torch_backend.forward_blobs(images, layers),
                     tf_backend.forward_blobs(images, layers), layers, output=spec.output,
                     tolerance=FP32, left="torch", right="tensorflow")
    assert report.passed, report.table()


# -- bench/evaluation/parity.py
# ---------------------------------------------------------------------------


def test_parity_layers_are_pools_fc7_scores_upsamplings_fusions_and_the_output():
    assert parity_layers(build_spec("fcn8s")) == [
        "pool1", "pool2", "pool3", "pool4", "pool5", "fc7", "score_fr", "upscore2",
        "score_pool4", "fuse_pool4", "upscore_pool4", "score_pool3", "fuse_pool3", "upscore8",
        "score"]
    assert parity_layers(build_spec("fcn32s"))[-3:] == ["score_fr", "upscore", "score"]


def test_compare_blob_measures_relative_to_the_blob_scale():
    a = np.array([[10.0, -20.0], [5.0, 0.0]])
    same = compare_blob("x", a, a.copy(), max_rel=1e-4)
    assert same.passed and same.max_abs_diff == 0 and same.scale == 20
    nudged = compare_blob("x", a, a + np.array([[0, 0], [0, 1e-3]]), max_rel=1e-4)
    assert nudged.max_rel_diff == pytest.approx(5e-5) and nudged.passed
    off = compare_blob("x", a, a + 1e-2, max_rel=1e-4)
    assert not off.passed and off.max_rel_diff == pytest.approx(5e-4)


def test_compare_blob_flags_shapes_nans_and_nonzero_noise_on_zero_blobs():
    a = np.zeros((2, 3))
    assert compare_blob("z", a, a, 1e-4).passed
    assert not compare_blob("z", a, a + 1e-9, 1e-4).passed
    assert "shape" in compare_blob("s", a, np.zeros((3, 2)), 1e-4).problem
    assert "non-finite" in compare_blob("n", a, np.full((2, 3), np.nan), 1e-4).problem


def test_label_agreement_counts_pixels_whose_argmax_differs():
    scores = np.zeros((1, 3, 2, 2))
    scores[0, 1] = 1
    other = scores.copy()
    other[0, 2, 0, 0] = 2
    assert label_agreement(scores, other) == (0.75, 1)


def test_report_gathers_every_failure_and_serialises():
    spec = build_spec("fcn32s", width_divisor=16)
    layers = parity_layers(spec)
    rng = np.random.default_rng(0)
    left = {name: rng.standard_normal((1, 21, 4, 4)) for name in layers}
    right = {name: value.copy() for name, value in left.items()}
    right["pool3"] = right["pool3"] + 1.0
    right["score"] = -right["score"]
    report = compare(left, right, layers, output="score", tolerance=FP32, left="a", right="b")
    assert not report.passed
    failures = report.failures()
    assert [f.split(":")[0] for f in failures[:2]] == ["pool3", "score"]
    assert "labels agree" in failures[-1]
    assert "FAIL" in report.table() and "pool3" in report.table()
    record = json.loads(to_json(report.to_dict()))
    assert record["passed"] is False and len(record["layers"]) == len(layers)


def test_tolerances_are_ordered_by_precision():
    assert FP32.max_rel <= TOLERANCES["tf32"].max_rel <= TOLERANCES["bf16"].max_rel
    assert all(isinstance(t, Tolerance) for t in TOLERANCES.values())


# -- cli.py parity -----------------------------------------------------------------------------

NARROW = ["--width-divisor", "16", "--size", "9x11", "--device", "cpu"]


@needs_both
def test_cli_parity_passes_and_writes_a_record(tmp_path):
    out = tmp_path / "parity.json"
    result = CliRunner().invoke(cli, ["parity", "--variant", "fcn16s", *NARROW,
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "fuse_pool4" in result.output
    record = json.loads(out.read_text())
    assert record["kind"] == "parity" and record["passed"] is True
    assert record["environments"]["tensorflow"]["framework"] == "tensorflow"
    assert record["weights"] == "random:seed=0" and record["input_size"] == [9, 11]


@needs_both
def test_cli_parity_fails_beyond_a_forced_tiny_tolerance():
    result = CliRunner().invoke(cli, ["parity", "--variant", "fcn32s", *NARROW,
                                      "--max-rel", "1e-12"])
    assert result.exit_code == 1
    assert "error: parity failed (torch vs tensorflow)" in result.output


@needs_both
def test_cli_parity_names_a_perturbed_layer(monkeypatch):
    from backends.tensorflow import TensorflowBackend

    real = TensorflowBackend.forward_blobs

    def perturbed(self, images, names):
        blobs = real(self, images, names)
        blobs["upscore_pool4"] = blobs["upscore_pool4"] * (1 + 1e-3)  # 10x the tolerance
        return blobs

    monkeypatch.setattr(TensorflowBackend, "forward_blobs", perturbed)
    result = CliRunner().invoke(cli, ["parity", "--variant", "fcn8s", *NARROW])
    assert result.exit_code == 1
    failing = result.output.split("error:")[1]
    assert "upscore_pool4: rel" in failing and "fuse_pool4" not in failing


def test_cli_parity_against_the_numpy_reference():
    name = (backends.available_backends() or pytest.skip("no backend installed"))[0]
    result = CliRunner().invoke(cli, ["parity", "--variant", "fcn8s-atonce", "--backends",
                                      f"{name},reference", *NARROW])
    assert result.exit_code == 0, result.output
    assert f"{name} vs reference" in result.output


@needs_both
def test_cli_parity_loads_an_archive_and_refuses_another_variant(tmp_path):
    from bench.weights.archive import save_archive

    spec = build_spec("fcn32s", width_divisor=16)
    path = save_archive(tmp_path / "w.safetensors", random_params(spec, 4),
                        {"origin": "random:seed=4", "kind": "random"})
    ok = CliRunner().invoke(cli, ["parity", "--weights", str(path), "--size", "5x6",
                                  "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    assert "fcn32s" in ok.output
    wrong = CliRunner().invoke(cli, ["parity", "--weights", str(path), "--variant", "fcn8s"])
    assert wrong.exit_code == 1
    assert "holds fcn32s weights" in wrong.output and "use --variant fcn32s" in wrong.output


@pytest.mark.parametrize("args", [["--size", "9by11"], ["--size", "0x4"],
                                  ["--backends", "torch"], ["--backends", "torch,mxnet"],
                                  ["--weights", "w.safetensors", "--random-seed", "3"]])
def test_cli_parity_bad_usage_exits_2(args):
    result = CliRunner().invoke(cli, ["parity", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_cli_parity_size_error_names_the_option():
    """QA: `--size 0x5` said "Invalid value: '0x5'" without naming --size (it was parsed
    inside the command by a second HxW parser; now the latency command's one, as a callback)."""
    result = CliRunner().invoke(cli, ["parity", "--size", "0x5"])
    assert result.exit_code == 2 and "Invalid value for '--size'" in result.output


def test_cli_parity_record_keeps_the_width_of_the_weights(tmp_path):
    """QA: with narrow --weights the record said width_divisor 1 (the unused option's default).
    reference vs reference: no framework needed, a few milliseconds at 9x11."""
    from bench.weights.archive import save_archive

    spec = build_spec("fcn32s", width_divisor=16)
    path = save_archive(tmp_path / "w.safetensors", random_params(spec, 4),
                        {"origin": "random:seed=4", "kind": "random"})
    out = tmp_path / "parity.json"
    result = CliRunner().invoke(cli, ["parity", "--weights", str(path), "--size", "9x11",
                                      "--backends", "reference,reference", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["width_divisor"] == 16


def test_cli_parity_refuses_an_unwritable_output_before_running(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["parity", "--backends", "reference,reference", "--size",
                                      "9x11", "--width-divisor", "16", "--output",
                                      str(blocker / "parity.json")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("error: ")  # nothing computed or printed before it
    assert f"{blocker} is a file, not a folder" in result.output
