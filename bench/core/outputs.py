"""Paths the user asks us to write: checked before the work starts, failures as one line.

Without this, an unwritable `--output` surfaces as an OSError traceback only after a long run (or
as a baffling "File exists" when a parent is a file), and an output aimed at an input destroys it
(`--save-predictions .../SegmentationClass` overwrote the ground truth, so a rerun scored 100 %).
Every command that writes calls `check_outputs(outputs={...}, inputs={...})` once, before the
work: each output must be writable, must not be, contain or lie inside an input (real paths:
symlinks and `..` resolved, hard links caught), and no two outputs may be the same path. Writers
wrap the write itself in `writing`. Stdlib only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import DataError, UsageError


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


class OutputConflict(UsageError):
    """An output would overwrite an input or another output (exit 2: fix the command line)."""


@dataclass(frozen=True)
class Output:
    """One output of a command: `folder` for a folder to fill (e.g. --save-predictions)."""

    path: Path
    folder: bool = False
    what: str = "output"


def folder(path: str | Path | None, what: str = "output folder") -> Output | None:
    """An output folder for `check_outputs` (None stays None: an option not given)."""
    return None if path is None else Output(Path(path), folder=True, what=what)


def _real(path: Path) -> Path:
    """The real absolute path: `~`, `..` and symlinks resolved, also for paths that do not exist
    yet (their existing ancestors are resolved)."""
    return Path(os.path.realpath(path.expanduser()))


def _same_file(a: Path, b: Path) -> bool:
    """Both exist and are the same file (a hard link or a bind mount that realpath misses)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _existing_ancestor_ids(path: Path) -> list[tuple[int, int]]:
    """Identities of `path` and its ancestors that exist, nearest first: compares folders by the
    file system's identity, so a bind mount or a case-insensitive name is not a way around."""
    ids = []
    for candidate in (path, *path.parents):
        file_id = _file_id(candidate)
        if file_id is not None:
            ids.append(file_id)
    return ids


def _overlap(out: Path, inp: Path) -> str | None:
    """How output `out` would touch input `inp` (both real paths), or None."""
    if out == inp or _same_file(out, inp):
        return "is"
    if out.is_relative_to(inp) or _file_id(inp) in _existing_ancestor_ids(out)[1:]:
        return "is inside"
    if inp.is_relative_to(out) or (_file_id(out) is not None
                                   and _file_id(out) in _existing_ancestor_ids(inp)[1:]):
        return "contains"
    return None


def check_outputs(outputs: Mapping[str, str | Path | Output | None],
                  inputs: Mapping[str, str | Path | None] | None = None) -> dict[str, Path]:
    """Refuse, before any work, outputs that cannot be written or would destroy an input.

    `outputs` maps a name the user recognises (the option, e.g. "--output") to a file path, an
    `Output` (see `folder`) or None (option not given); `inputs` maps names ("--image", "labels
    folder", "--weights") to files or folders that must survive the run. Refused: an output that
    is, lies inside or (a folder) contains an input; two outputs with the same real path; an
    output that cannot be written. Returns {name: path} of the outputs given.
    """
    given: dict[str, Output] = {}
    for name, value in outputs.items():
        if value is None:
            continue
        out = value if isinstance(value, Output) else Output(Path(value), what=name)
        given[name] = Output(Path(out.path), out.folder, out.what)
    real_inputs = [(name, Path(path), _real(Path(path))) for name, path in (inputs or {}).items()
                   if path is not None]
    seen: dict[Path, str] = {}
    for name, out in given.items():
        real = _real(out.path)
        for input_name, input_path, input_real in real_inputs:
            relation = _overlap(real, input_real)
            if relation:
                raise OutputConflict(
                    f"{name} {out.path} {relation} the input {input_name} {input_path}; "
                    "writing there would overwrite it: choose another path")
        other = seen.get(real) or next((n for r, n in seen.items() if _same_file(r, real)), None)
        if other is not None:
            raise OutputConflict(f"{name} {out.path} and {other} are the same path; one would "
                                 "overwrite the other: give them different paths")
        seen[real] = name
        check_writable(out.path, folder=out.folder, what=out.what)
    return {name: out.path for name, out in given.items()}


def dataset_inputs(dataset: Any, name: str = "") -> dict[str, Path]:
    """The inputs of a dataset to protect: the folders of its labels and images, and its id-list
    file; `name` prefixes the keys (e.g. "training " beside "validation ")."""
    folders: dict[Path, str] = {}
    for image_id in dataset.ids:
        folders.setdefault(Path(dataset.label_path(image_id)).parent, "labels folder")
        folders.setdefault(Path(dataset.image_path(image_id)).parent, "images folder")
    inputs: dict[str, Path] = {}
    for path, what in folders.items():
        key = f"{name}{what}"
        count = sum(1 for k in inputs if k.startswith(key))
        inputs[key if not count else f"{key} ({count + 1})"] = path
    source = Path(getattr(dataset, "source", ""))
    if source.is_file():
        inputs[f"{name}split list"] = source
    return inputs


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
