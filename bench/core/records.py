"""Result records: the envelope and provenance (time, commit, versions) of every command's output.

Schema (documented in the README): every record is a JSON object with `schema_version`, `kind`
("evaluate", "reproduce", "latency", "golden", ...), `provenance` and kind-specific fields. Written
with `bench.core.atomic.write_json` (strict JSON text: `bench.core.json_text`).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
# The paper's numbers, tolerances and CI baselines: data of the checkout, not of the installed
# package; an install outside a checkout (a wheel) points here with FCN_BENCH_REFERENCE_RESULTS.
REFERENCE_RESULTS = Path(os.environ.get("FCN_BENCH_REFERENCE_RESULTS")
                         or REPO_ROOT / "reference_results")
_TRACKED_PACKAGES = ("fcn-bench", "numpy", "pillow", "safetensors", "torch", "tensorflow-cpu",
                     "tensorflow", "pandas", "scipy")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit and dirty flag of the harness checkout, or nulls outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=root, capture_output=True, text=True, timeout=10,
                                    check=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions(names: Iterable[str] = _TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that can change a result (absent ones are omitted)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance() -> dict[str, Any]:
    """Where and when a number was produced: UTC time, commit, dirty flag, versions, machine."""
    return {
        "utc_time": utc_now(),
        "git": git_state(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
    }


def make_record(kind: str, **fields: Any) -> dict[str, Any]:
    """A record skeleton: schema version, kind, provenance, then the caller's fields."""
    return {"schema_version": SCHEMA_VERSION, "kind": kind, "provenance": provenance(), **fields}
