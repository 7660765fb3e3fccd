"""Result records: provenance (time, commit, versions) and atomic writes shared by every command.

Schema (documented in the README): every record is a JSON object with `schema_version`, `kind`
("evaluate", "reproduce", "latency", "golden", ...), `provenance` and kind-specific fields.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
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


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(obj: Any) -> str:
    """JSON text with numpy values converted and NaN written as null (strict JSON)."""
    return json.dumps(_nan_to_none(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary file name beside `path`; on success it is fsynced and renamed onto `path`.

    For every writer (bytes, safetensors, streamed caffemodels): readers never see half a file,
    and on any error the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes 0600, and some writers (safetensors) replace the file: set the usual
        # permissions on what was written, just before it appears under `path`.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see atomic_path)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write a record as strict JSON."""
    atomic_write_text(path, to_json(obj))


# ----------------------------------------------------------------------------------------------
# Reading JSON from files we did not write (records, archive headers, solver states).

MAX_JSON_DEPTH = 64  # records nest 5-6 levels; no legitimate file comes near this
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonTooDeep(ValueError):
    """The text nests arrays/objects deeper than allowed (refused before parsing)."""


def json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """Deepest nesting of arrays/objects in `text`, counted without parsing (strings skipped).

    Vectorised in slices, so a 100 MB header of brackets is counted in about a second with
    memory bounded by the slice, never a parse tree. Returns early once past `limit`.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).encode("ascii")
    steps = np.zeros(256, np.int8)
    steps[[ord("["), ord("{")]] = 1
    steps[[ord("]"), ord("}")]] = -1
    depth = deepest = 0
    for start in range(0, len(brackets), _DEPTH_SLICE):
        piece = np.frombuffer(brackets, np.uint8, min(_DEPTH_SLICE, len(brackets) - start),
                              start)
        running = np.cumsum(steps[piece], dtype=np.int64) + depth
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
        if deepest > limit:
            break
    return deepest


_DEPTH_SLICE = 1 << 20


def loads_bounded(text: str, limit: int = MAX_JSON_DEPTH) -> Any:
    """json.loads with the nesting depth checked first (no RecursionError on hostile files).

    Raises JsonTooDeep, or ValueError (json.JSONDecodeError, or an integer over Python's digit
    limit) for malformed text; callers turn both into their own one-line error.
    """
    if json_depth(text, limit) > limit:
        raise JsonTooDeep(f"nested more than {limit} levels deep")
    return json.loads(text)
