"""The README section "Try it without downloads": what `demo` prints is what the README says,
and those commands run (shortened in the default run; verbatim, 200 training updates, slow)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli.app import cli
from bench.cli.demo import benchmark_walkthrough, walkthrough
from bench.data.synthetic import synthetic_ids
from tests.train.test_train import background_baseline

ROOT = Path(__file__).resolve().parents[2]
README_IMAGES = 24  # the demo's default --num-images, which the README shows


def readme_commands(name: str = "walkthrough") -> list[list[str]]:
    """argv (after `python cli.py`) of every command in one of the README's demo blocks."""
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {name}:start -->\n```bash\n(.*?)```\n<!-- {name}:end -->",
                      text, re.S)
    assert block, f"README.md lost its {name} block"
    joined = block[1].replace("\\\n", " ")
    commands = [shlex.split(line) for line in joined.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert all(argv[:2] == ["python", "cli.py"] for argv in commands), commands
    return [argv[2:] for argv in commands]


def printed_commands(output: str, after: str = "next:") -> list[list[str]]:
    """The commands `demo` printed after its `after` line, up to the next such section."""
    tail = output.split(after, 1)[1].split("\n", 1)[1]
    tail = tail.split(OTHER_BENCHMARKS, 1)[0] if after != OTHER_BENCHMARKS else tail
    tail = tail.replace("\\\n", " ")
    return [shlex.split(line)[2:] for line in tail.splitlines()
            if line.startswith("python cli.py")]


OTHER_BENCHMARKS = "the paper's other benchmarks"


def expected(data_root: Path, num_images: int, backends: list[str]) -> list[list[str]]:
    first_val = synthetic_ids(num_images)[1::2][0]
    return [argv for _, argv in walkthrough(data_root, "fcn8s", first_val, backends)]


def test_the_readme_shows_what_demo_prints_for_its_defaults():
    commands = readme_commands()
    assert commands[0] == ["demo", "--data-root", "demo"]
    assert commands[1:] == expected(Path("demo"), README_IMAGES, ["torch", "tensorflow"])
    names = [argv[0] for argv in commands]
    for name in ("reproduce", "evaluate", "predict", "train", "parity", "golden", "compare",
                 "history"):
        assert name in names, name


def _needs_both_frameworks() -> None:
    """Skip without torch or TensorFlow, importing neither (the backends import them quietly)."""
    from backends import unavailable_reason

    for name in ("torch", "tensorflow"):
        if unavailable_reason(name):
            pytest.skip(unavailable_reason(name))


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a scratch folder that sees the repository's reference_results/ (as the README's
    commands, run from the repository root, do); caches there too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FCN_BENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "reference_results").symlink_to(ROOT / "reference_results")
    return tmp_path


def _shorten(argv: list[str], **values: str) -> list[str]:
    """argv with the values of some options replaced (e.g. iters="2")."""
    out = list(argv)
    for option, value in values.items():
        index = out.index("--" + option.replace("_", "-"))
        out[index + 1] = value
    return out


@pytest.mark.torch
@pytest.mark.tensorflow
def test_walkthrough_runs_shortened(in_tmp: Path):
    """Every walkthrough command on a 4-image demo with narrow weights; train shortened to 2
    updates; golden's own run is the slow test's (here compare reads the committed baseline)."""
    _needs_both_frameworks()
    demo = run("demo", "--data-root", "demo", "--num-images", "4", "--variant", "fcn8s",
               "--width-divisor", "16", "--no-progress")
    commands = printed_commands(demo.output)
    assert commands == expected(Path("demo"), 4, ["torch", "tensorflow"])
    by_name = {argv[0]: argv for argv in commands}

    reproduce = run(*by_name["reproduce"], "--no-progress")
    assert "(random, sha256" in reproduce.output
    run(*by_name["evaluate"], "--no-progress")
    record = json.loads((in_tmp / "demo/runs/reproduce-fcn8s.json").read_text())
    evaluated = json.loads((in_tmp / "demo/runs/evaluate-torch.json").read_text())
    torch_run = next(r for r in record["rows"] if r["backend"] == "torch")
    assert evaluated["metrics"]["mean_iou"] == pytest.approx(torch_run["metrics"]["mean_iou"])

    predict = run(*by_name["predict"])
    assert "0.0%" not in predict.output and (in_tmp / "demo/runs/overlay.png").is_file()
    run(*_shorten(by_name["train"], iters="2", eval_every="1", snapshot_every="2"),
        "--no-progress")
    run(*by_name["parity"])
    (in_tmp / "demo/runs/golden.json").write_bytes(
        (ROOT / "reference_results/ci/golden.json").read_bytes())
    run(*by_name["compare"])
    history = run(*by_name["history"])
    assert "2 records" in history.output


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.torch
@pytest.mark.tensorflow
def test_walkthrough_runs_verbatim_and_training_learns(in_tmp: Path):
    """The README's commands as printed (only the demo limited to the fcn8s weights it uses):
    full-width reproduce and parity, 200 training updates, the golden suite. Minutes."""
    _needs_both_frameworks()
    demo = run("demo", "--data-root", "demo", "--variant", "fcn8s", "--no-progress")
    commands = printed_commands(demo.output)
    assert commands == readme_commands()[1:]
    for argv in commands:
        run(*argv, *(["--no-progress"] if argv[0] in ("reproduce", "evaluate", "train") else []))
    # Batch-1 SGD at momentum 0.99 is noisy (docs/demo.md): every validation must beat the
    # all-background score, and the best one clearly.
    baseline = background_baseline(in_tmp / "demo", "val")
    scores = [json.loads((in_tmp / f"demo/runs/train-fcn8s/eval/iter_{i:07d}.json").read_text())
              ["metrics"]["mean_iou"] for i in (100, 200)]
    assert min(scores) > baseline and max(scores) > 2 * baseline, (scores, baseline)


def test_missing_data_points_at_the_demo(tmp_path, monkeypatch):
    """Without data, the error names the downloads and the demo (a split list alone has no
    images)."""
    monkeypatch.setenv("FCN_BENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", tmp_path / "absent"):
        result = CliRunner().invoke(cli, ["evaluate", "--data-root", str(root), "--predictions",
                                          str(tmp_path)])
        assert result.exit_code == 1
        assert "python cli.py demo --data-root demo" in result.output, result.output


def test_the_readme_shows_the_other_benchmarks_demo_prints():
    assert readme_commands("benchmarks") == [
        argv for _, argv in benchmark_walkthrough(Path("demo"))]


@pytest.mark.torch
@pytest.mark.tensorflow
def test_demo_other_benchmarks_run_as_printed(in_tmp: Path):
    """demo writes NYUDv2 / SIFT Flow / Context / ADE20K trees and narrow weights; every printed
    reproduce runs in both backends and writes its record (SIFT Flow with both heads)."""
    _needs_both_frameworks()
    demo = run("demo", "--data-root", "demo", "--num-images", "4", "--variant", "fcn8s",
               "--width-divisor", "16", "--no-progress")
    commands = printed_commands(demo.output, OTHER_BENCHMARKS)
    assert commands == [argv for _, argv in benchmark_walkthrough(Path("demo"))]
    for argv in commands:
        run(*argv, "--no-progress")
        record = json.loads(Path(argv[argv.index("--output") + 1]).read_text())
        assert {row["backend"] for row in record["rows"]} == {"torch", "tensorflow"}
