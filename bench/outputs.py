"""Paths the user asks us to write: checked before the work starts, failures as one DataError line.

Without this, an unwritable `--output` surfaces as an OSError traceback only after a long run (or
as a baffling "File exists" when a parent is a file). Commands call `check_writable` on every
output before the work; writers wrap the write itself in `writing`. Stdlib only; never imports
torch or tensorflow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.errors import DataError


def _first_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (the folder a write would start from)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _blocker(path: Path, folder: bool) -> str | None:
    """Why `path` (a file, or a folder with `folder`) cannot be written, or None if it can."""
    if path.exists():
        if folder and not path.is_dir():
            return "is a file, expected a folder"
        if not folder and path.is_dir():
            return "is a folder, expected a file name"
        target = path if folder else path.parent
        if not os.access(target, os.W_OK | os.X_OK):
            return f"no permission to write in {target}"
        return None
    existing = _first_existing(path.parent)
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    return None


def check_writable(path: str | Path, *, folder: bool = False, what: str = "output") -> Path:
    """Refuse, before any work, an output that could not be written; returns the path.

    `folder` says the path is a folder to fill (e.g. --save-predictions), not a file. Nothing is
    created here: a run that fails later leaves no empty folders behind.
    """
    path = Path(path)
    problem = _blocker(path, folder)
    if problem:
        raise DataError(path, f"cannot write the {what}: {problem}")
    return path


@contextmanager
def writing(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Turn an OSError raised while writing `path` into DataError(path, one-line reason)."""
    path = Path(path)
    try:
        yield path
    except OSError as error:
        problem = _blocker(path, folder=False) or error.strerror or str(error)
        raise DataError(path, f"cannot write the {what}: {problem}") from None


def safe_file_part(name: str) -> str:
    """`name` (e.g. a split, which may be a path) made safe inside a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
