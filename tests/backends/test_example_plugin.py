"""The example plugin package (examples/plugin-backend), really installed: pip puts it in a
temporary folder, and fresh processes with that folder on PYTHONPATH find it through its entry
point, list it, pass parity against the reference, time it, and pass the conformance suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core.records import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "plugin-backend"
NARROW = ["--width-divisor", "16", "--size", "64x64"]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """PYTHONPATH with the installed example in front of this repository."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    return os.pathsep.join([str(target), str(REPO_ROOT)])


def run(plugin_path: str, *args: str, timeout: int = 300,
        **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_vars, "PYTHONPATH": plugin_path}
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_installed_example_is_listed_as_a_plugin(plugin_path):
    result = run(plugin_path, "cli.py", "backends")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("numpy32"))
    assert row.split()[1:] == ["plugin", "from", "fcn-bench-numpy32", "0.1.0", "yes", "no",
                               "yes"]


def test_the_example_passes_parity_against_the_reference(plugin_path):
    result = run(plugin_path, "cli.py", "parity", "--backends", "numpy32,reference",
                 "--variant", "fcn8s", *NARROW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "numpy32 vs reference (fp32)" in result.stdout
    assert result.stdout.rstrip().endswith("PASS")


def test_the_example_runs_in_latency(plugin_path, tmp_path):
    out = tmp_path / "latency.json"
    result = run(plugin_path, "cli.py", "latency", "--backend", "numpy32", "--variant",
                 "fcn32s", *NARROW, "--warmup", "1", "--iters", "2", "--min-time", "0",
                 "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(out.read_text())
    (row,) = record["rows"]
    assert row["backend"] == "numpy32" and row["status"] == "ok"
    assert record["environment"]["backends"]["numpy32"]["framework"] == "numpy"


@pytest.mark.slow
def test_the_example_passes_the_conformance_suite(plugin_path):
    """What docs/adding_a_backend.md tells a plugin author to run (only the plugin's cases)."""
    suite = Path(__file__).with_name("test_conformance.py")
    result = run(plugin_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite), "-k",
                 "numpy32", timeout=900, FCN_BENCH_CONFORMANCE="numpy32")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
