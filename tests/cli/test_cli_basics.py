"""CLI surface: every command's --help works, and --help imports neither framework."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bench.cli.app import COMMAND_MODULES, cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["", *COMMAND_MODULES])
def test_every_command_has_help_with_a_real_invocation(command):
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if command:
        assert "python cli.py" in result.output, f"{command} --help shows no example invocation"


def test_help_and_core_import_no_framework():
    code = ("import sys, runpy; sys.argv = ['cli.py', '--help'];\n"
            "import cli, bench.model.spec, bench.data.voc, bench.evaluation.metrics\n"
            "import bench.weights.archive, backends\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                   timeout=120)


# The import direction (bench outside bench/cli never imports a backend or a framework) is the
# import-linter contracts' job: tests/core/test_architecture.py.


def test_unknown_command_is_a_usage_error():
    assert CliRunner().invoke(cli, ["nope"]).exit_code == 2


def test_os_errors_become_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["convert", "--random", "--variant", "fcn32s",
                                      "--width-divisor", "64", str(blocker / "w.safetensors")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert str(blocker) in result.output


def test_the_group_turns_any_os_error_into_one_line():
    from bench.cli.app import FcnBenchGroup

    @click.group(cls=FcnBenchGroup)
    def group() -> None:
        pass

    @group.command()
    def write() -> None:
        raise FileExistsError(17, "File exists", "/some/out/record.json")

    result = CliRunner().invoke(group, ["write"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: /some/out/record.json: File exists"


# -- one option vocabulary (bench/cli/options.py) ------------------------------------------------

def _usage_error(args):
    """Run the CLI; the result must be a usage error (exit 2) with no traceback."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize("args", [
    ["latency", "--min-time", "nan"], ["latency", "--min-time", "inf"],
    ["parity", "--max-rel", "nan"], ["parity", "--min-label-agreement", "NaN"],
    ["train", "--variant", "fcn32s", "--lr", "inf"], ["train", "--variant", "fcn32s", "--lr", "0"],
    ["compare", "--confidence", "nan", ".", "."],
])
def test_every_float_option_refuses_non_finite_numbers(args):
    output = _usage_error(args)
    assert any(word in output for word in ("finite", "must be")), output


@pytest.mark.parametrize("command", [
    ["convert", "--random", "--variant", "fcn32s", "x.safetensors"], ["latency"],
    ["train", "--variant", "fcn32s"], ["compare", ".", "."], ["parity"]])
@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999999"])
def test_every_seed_is_0_to_2_pow_32_minus_1(command, seed):
    option = "--random-seed" if command == ["parity"] else "--seed"
    output = _usage_error([*command, option, seed])
    assert "0<=x<=4294967295" in output or "4294967295" in output, output


@pytest.mark.parametrize("command", ["latency", "parity"])
@pytest.mark.parametrize("size", ["99999999999999999999x1", "16385x5", "0x5", "5x", "axb"])
def test_sizes_are_bounded(command, size):
    output = _usage_error([command, "--size", size])
    assert "is not a size" in output and "Traceback" not in output


def test_size_parser_accepts_the_bounds():
    from bench.cli.options import MAX_SIDE, parse_size

    assert parse_size(f"1x{MAX_SIDE}") == (1, MAX_SIDE)
    assert parse_size(" 375 X 500 ") == (375, 500)


def _backend_param(command_name: str):
    command = cli.commands[command_name]
    return next(p for p in command.params if "--backend" in p.opts)


@pytest.mark.parametrize("command", ["reproduce", "latency", "golden"])
def test_matrix_commands_take_aliases_all_repeats_and_commas(command):
    param = _backend_param(command)
    ctx = click.Context(cli.commands[command])
    assert param.type_cast_value(ctx, ("pytorch", "tf,torch", "tensorflow")) == (
        ("torch",), ("tensorflow", "torch"), ("tensorflow",))
    assert param.process_value(ctx, ("pytorch", "tf,torch", "tensorflow")) == (
        "torch", "tensorflow")
    assert param.process_value(ctx, ("all",)) == ("all",)


@pytest.mark.parametrize("command", ["predict", "train"])
def test_single_backend_commands_take_aliases_and_refuse_all(command):
    param = _backend_param(command)
    ctx = click.Context(cli.commands[command])
    assert param.process_value(ctx, "pytorch") == "torch"
    assert param.process_value(ctx, "TF") == "tensorflow"
    with pytest.raises(click.BadParameter, match="runs one"):
        param.process_value(ctx, "all")


@pytest.mark.parametrize("command", ["reproduce", "latency", "golden", "predict", "train"])
def test_unknown_backend_lists_every_name(command):
    output = _usage_error([command, "--variant", "fcn32s", "--backend", "caffe"])
    assert "unknown backend 'caffe'" in output and "pytorch" in output and "tf" in output


def test_reproduce_accepts_pytorch_and_latency_accepts_all(monkeypatch):
    """The two spellings the README used to disagree on both parse (no run: a fake resolver)."""
    import backends

    seen = []

    def fake_resolve(choices):
        seen.append(tuple(choices))
        raise backends.UsageError("stop here")

    monkeypatch.setattr(backends, "resolve_backend_choices", fake_resolve)
    for args in (["reproduce", "--backend", "pytorch", "--weights", __file__],
                 ["latency", "--backend", "all"]):
        result = CliRunner().invoke(cli, args)
        assert "stop here" in result.output, result.output
    assert seen == [("torch",), ("all",)]


def test_parity_backends_take_aliases_and_need_two():
    param = next(p for p in cli.commands["parity"].params if "--backends" in p.opts)
    ctx = click.Context(cli.commands["parity"])
    assert param.process_value(ctx, "pytorch, TF") == "torch,tensorflow"
    assert param.process_value(ctx, "reference,torch") == "reference,torch"
    for bad in ("torch", "all,torch", "torch,tf,reference"):
        with pytest.raises(click.BadParameter):
            param.process_value(ctx, bad)


@pytest.mark.parametrize("option", ["--variant", "--backend", "--data-root", "--weights",
                                    "--device"])
def test_shared_options_have_one_help_text(option):
    """Written once in bench/cli/options.py. Different questions say so: convert's --variant
    (the variant of INPUT, where the file cannot tell), evaluate's --split (other data sets
    have other splits) and evaluate's --weights (what produced the predictions, a kind)."""
    different = {("convert", "--variant"), ("evaluate", "--split"), ("evaluate", "--weights")}
    helps = {name: next(p.help for p in command.params if option in p.opts)
             for name, command in cli.commands.items()
             if any(option in p.opts for p in command.params)
             and (name, option) not in different}
    assert len(helps) >= 2, helps
    stems = {re.split(r"[.(\[]", text)[0].strip() for text in helps.values()}
    assert len(stems) == 1, helps


def test_voc_split_values_are_checked_once_for_every_command():
    """One check (bench/cli/options.check_split) behind reproduce --split, train --val-split and
    evaluate --split, for VOC models; the zoo's other data sets check their own names."""
    for args in (["reproduce", "--split", "seg12"],
                 ["train", "--variant", "fcn32s", "--val-split", "seg12"],
                 ["evaluate", "--predictions", ".", "--split", "seg12"]):
        assert "unknown split 'seg12'" in _usage_error(args)


def test_split_errors_are_all_usage_errors(tmp_path):
    (tmp_path / "VOCdevkit").mkdir()
    base = ["evaluate", "--data-root", str(tmp_path), "--predictions", str(tmp_path)]
    folder = _usage_error([*base, "--split", str(tmp_path)])
    assert "is a folder" in folder
    assert "unknown split 'seg12'" in _usage_error([*base, "--split", "seg12"])
    assert "not found" in _usage_error([*base, "--split", str(tmp_path / "ids.txt")])


def test_predict_and_parity_default_to_the_cached_official_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_BENCH_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "x.png"
    result = CliRunner().invoke(cli, ["predict", "--variant", "fcn32s", "--image", str(image),
                                      "--overlay", str(tmp_path / "o.png")])
    assert result.exit_code == 1
    assert "download weights fcn32s" in result.output and "fcn32s.safetensors" in result.output
    from bench.downloads.cache import default_weights_path

    param = next(p for p in cli.commands["parity"].params if "--weights" in p.opts)
    ctx = click.Context(cli.commands["parity"])
    ctx.params.update(variant="fcn16s", random_seed=None, width_divisor=1)
    assert param.process_value(ctx, None) is None  # nothing cached: seeded random weights
    cached = default_weights_path("fcn16s")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert param.process_value(ctx, None) == cached
    ctx.params.update(width_divisor=8)  # a narrow net asks for random weights
    assert param.process_value(ctx, None) is None


# -- quiet by default --------------------------------------------------------------------------

def test_native_stderr_filter_drops_only_the_known_lines(capfd):
    import os

    from backends.native_stderr import without_lines

    with without_lines([r"I\d+ noise \d+"]):
        os.write(2, b"I0000 noise 42\nE0000 a real error\n")
        os.write(2, b"I0000 noise 43\n")
    assert capfd.readouterr().err == "E0000 a real error\n"
    with pytest.raises(RuntimeError), without_lines([r"x"]):
        os.write(2, b"kept when the block fails\n")
        raise RuntimeError
    assert capfd.readouterr().err == "kept when the block fails\n"


@pytest.mark.tensorflow
def test_importing_the_tensorflow_backend_prints_nothing():
    pytest.importorskip("tensorflow")
    result = subprocess.run([sys.executable, "-c", "import backends.tensorflow"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "oneDNN" not in result.stderr and "absl::InitializeLog" not in result.stderr, \
        result.stderr


def test_counts_are_pluralised():
    from bench.cli.options import plural

    assert plural(1, "variant") == "1 variant" and plural(2, "variant") == "2 variants"
    assert plural(0, "batch", "batches") == "0 batches"
    # No command prints "{len(...)} things" without going through plural().
    pattern = re.compile(r"\{len\([^}]*\)\} [a-z]+s\b")
    offenders = [f"{path.name}: {match[0]}" for path in (ROOT / "commands").glob("*.py")
                 for match in pattern.finditer(path.read_text())]
    assert not offenders, offenders


@pytest.mark.parametrize("args", [["predict", "--variant", "bogus"], ["latency", "--size", "0x0"],
                                  ["models", "--format", "xml"], ["nope"],
                                  ["compare", "--confidence", "1", "a.json", "b.json"]])
def test_click_usage_errors_are_one_line(args):
    """click's own parse errors: one `error:` line naming the command's --help, exit 2."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "--help" in lines[0]
