"""The installed package: a wheel holds `bench` and `backends` only (no generic top-level names
such as `commands` or `cli`), ships the data-set split lists, and its `fcn-bench` console script
runs the same commands as `python cli.py`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_installs_bench_and_backends_and_a_working_console_script(tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("bench", "backends"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "cli.py"):
        shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)
    (wheel,) = wheels.glob("fcn_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert tops == {"bench", "backends"}
    shipped = {path.relative_to(ROOT).as_posix() for folder in ("splits", "classes")
               for path in (ROOT / "bench" / "data" / folder).glob("*.txt")}
    assert shipped and shipped <= set(names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    script = (target / "bin" / "fcn-bench").read_text().splitlines()
    assert "bench.cli.app" in "\n".join(script)
    # Run the script's entry point with the installed copy first on the path, away from the
    # checkout, and with no reference_results/ beside it.
    run = subprocess.run([sys.executable, str(target / "bin" / "fcn-bench"), "models",
                          "--format", "json"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "siftflow-fcn16s" in run.stdout
    where = subprocess.run([sys.executable, "-c", "import bench; print(bench.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60,
                           env={"PYTHONPATH": str(target)}).stdout
    assert where.startswith(str(target))
