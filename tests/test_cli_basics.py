"""CLI surface: every command's --help works, and --help imports neither framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import COMMAND_MODULES, cli

ROOT = Path(__file__).resolve().parent.parent


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
            "import cli, bench.spec, bench.voc, bench.metrics, bench.weights, backends\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                   timeout=120)


def test_bench_never_imports_a_framework_or_a_backend():
    offenders = []
    for path in (ROOT / "bench").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import torch", "from torch", "import tensorflow",
                                    "from tensorflow", "import keras", "from keras",
                                    "import backends", "from backends")) or (
                    "import_module(" in stripped and "backends" in stripped):
                offenders.append(f"{path.name}: {stripped}")
    assert not offenders


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
    from cli import FcnBenchGroup

    @click.group(cls=FcnBenchGroup)
    def group() -> None:
        pass

    @group.command()
    def write() -> None:
        raise FileExistsError(17, "File exists", "/some/out/record.json")

    result = CliRunner().invoke(group, ["write"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: /some/out/record.json: File exists"
