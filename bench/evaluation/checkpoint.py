"""Resumable evaluation: the partial confusion matrix and the ids done, saved atomically as JSON.

A checkpoint is keyed by a fingerprint of everything that can change the result (weights SHA-256,
data fingerprint including the split's ids in order and every label's hash, variant, backend,
device, precision, options...), and its *file name* carries that fingerprint's digest
(`keyed_path`): two runs that differ in anything, e.g. two different split files both named
`list.txt`, never share a file, so one cannot destroy the other's progress.
Resuming adds the remaining images to the saved integer counts, so a resumed run gives exactly
the matrix of an uninterrupted one; a checkpoint whose fingerprint differs is refused, naming
what differs. Strict JSON only (no pickle).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.atomic import write_json
from bench.core.errors import DataError, UsageError
from bench.core.json_text import loads_bounded, to_json
from bench.core.outputs import writing
from bench.core.records import utc_now
from bench.downloads.cache import read_cache_file
from bench.weights.sniff import HEAD_BYTES, sniff_bytes

FORMAT = "fcn-bench-checkpoint"
FORMAT_VERSION = 1
_CORE_KEYS = frozenset({"format", "format_version", "saved_utc", "fingerprint",
                        "fingerprint_sha256", "ids_done", "confusion_matrix"})


class CheckpointMismatch(UsageError):
    """A checkpoint made by a run with other weights, data or options (exit 2: fix the call)."""


def fingerprint_digest(fingerprint: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a fingerprint (key order does not matter)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class CheckpointState:
    """What a checkpoint holds: `matrix` (n, n) int64 counts over `ids_done` (a prefix of the
    run's ids, in order)."""

    fingerprint: dict[str, Any]
    ids_done: list[str]
    matrix: np.ndarray
    extra: dict[str, Any]  # what the saver added (e.g. the SHA-256 of each scored image)


class Checkpoint:
    """The checkpoint file of one run (one variant, backend and split).

    `load` returns the saved state if it belongs to this run, None if there is none, and raises
    CheckpointMismatch naming the differing fields otherwise; `save` rewrites the file atomically.
    """

    def __init__(self, path: str | Path, fingerprint: Mapping[str, Any], every: int = 25):
        if every < 1:
            raise UsageError(f"--checkpoint-every must be at least 1, got {every}")
        self.path = Path(path)
        self.fingerprint = _plain(fingerprint)  # plain JSON types only
        self.every = every

    def load(self, ids: Sequence[str]) -> CheckpointState | None:
        if not self.path.exists():
            return None
        data = read_checkpoint(self.path)
        stored, ids_done = data["fingerprint"], data["ids_done"]
        differences = _differences(stored, self.fingerprint)
        if differences:
            raise CheckpointMismatch(
                f"checkpoint {self.path} is from another run: {'; '.join(differences)}; "
                "delete it (or run without --resume) to start over")
        if list(ids[:len(ids_done)]) != ids_done:
            raise CheckpointMismatch(f"checkpoint {self.path}: its {len(ids_done)} finished ids "
                                     "are not the start of this split; delete it")
        matrix = np.array(data["confusion_matrix"], dtype=np.int64)
        extra = {k: v for k, v in data.items() if k not in _CORE_KEYS}
        return CheckpointState(stored, ids_done, matrix, extra)

    def save(self, ids_done: Sequence[str], matrix: np.ndarray,
             extra: Mapping[str, Any] | None = None) -> None:
        state = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "saved_utc": utc_now(),
            "fingerprint": self.fingerprint,
            "fingerprint_sha256": fingerprint_digest(self.fingerprint),
            "ids_done": list(ids_done), "confusion_matrix": np.asarray(matrix).tolist(),
            **(extra or {}),
        }
        with writing(self.path, "checkpoint"):
            write_json(self.path, state)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def siblings(self) -> list[tuple[Path, list[str]]]:
        """Other checkpoints with this one's stem (same variant, backend and split name, another
        key), each with what differs from this run: why a `--resume` found nothing to resume."""
        stem = self.path.name.rsplit("-", 1)[0]
        found = []
        candidates = sorted(self.path.parent.glob(f"{stem}-*.json"), key=_mtime)
        for path in candidates:  # oldest first
            if path == self.path or path.name.rsplit("-", 1)[0] != stem:
                continue
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))["fingerprint"]
                differences = _differences(stored, self.fingerprint)
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
                differences = ["unreadable"]
            found.append((path, differences))
        return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


KEY_DIGITS = 16  # 64 bits of the fingerprint digest in a file name: collisions are not a concern


def keyed_path(directory: str | Path, stem: str, fingerprint: Mapping[str, Any]) -> Path:
    """`DIRECTORY/STEM-<digest>.json`: a checkpoint file per run content, not per name."""
    return Path(directory) / f"{stem}-{fingerprint_digest(_plain(fingerprint))[:KEY_DIGITS]}.json"


def _plain(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(to_json(dict(fingerprint)))


# A checkpoint holds at most a 1000-class matrix (about 20 MB as indented JSON) and one id and
# SHA-256 per image; 32 MiB leaves room for ~140,000 images and bounds what parsing a hostile
# file can cost (docs/security.md, "Checkpoints, caches and .pth files").
MAX_CHECKPOINT_BYTES = 32 * 2**20
_MAX_COUNT = 2**63 - 1  # the matrix is int64
_RECOVER = "delete it (or run without --resume) to start over"
# extras with one entry per finished id (bench.evaluation.runner)
_PER_IMAGE_KEYS = ("image_sha256",)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, every field it relies on type-checked; DataError otherwise.

    The file is fcn-bench's own, but a user can edit it and a crash or full disk can damage it:
    size and nesting are bounded before parsing, and counts must be non-negative JSON integers
    that fit int64 (a float, bool or string is refused, never cast: a cast would silently give
    another matrix).
    """
    raw = read_cache_file(path, MAX_CHECKPOINT_BYTES, "checkpoint", _RECOVER)
    try:
        data = loads_bounded(raw.decode("utf-8"))
    except UnicodeDecodeError:
        kind = sniff_bytes(raw[:HEAD_BYTES], len(raw)).description
        raise DataError(path, f"is {kind}, not an fcn-bench checkpoint; {_RECOVER}") from None
    except ValueError as error:  # JSONDecodeError, JsonTooDeep, an integer over the digit limit
        raise DataError(path, f"unreadable checkpoint (not valid JSON: {error}); {_RECOVER}"
                        ) from None
    problem = _checkpoint_problem(data)
    if problem:
        raise DataError(path, f"corrupt checkpoint: {problem}; {_RECOVER}")
    return data


def _checkpoint_problem(data: Any) -> str | None:
    """What is wrong with a parsed checkpoint, or None."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        return f"not a {FORMAT} v{FORMAT_VERSION} file"
    if not isinstance(data.get("fingerprint"), dict):
        return "no fingerprint object"
    ids = data.get("ids_done")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return "ids_done is not a list of strings"
    for key in _PER_IMAGE_KEYS:
        values = data.get(key)
        if values is not None and (not isinstance(values, list) or len(values) != len(ids)
                                   or not all(isinstance(v, str) for v in values)):
            return f"{key} is not a list of {len(ids)} strings (one per finished id)"
    return _matrix_problem(data.get("confusion_matrix"))


def _matrix_problem(matrix: Any) -> str | None:
    if not isinstance(matrix, list) or not matrix:
        return "confusion_matrix is not a non-empty list of rows"
    side = len(matrix)
    if not all(isinstance(row, list) and len(row) == side for row in matrix):
        return f"confusion_matrix is not square ({side} rows of {side} counts)"
    for row in matrix:
        for count in row:
            # type() is int: bool is an int subclass, and float/str would be cast by numpy.
            if type(count) is not int or not 0 <= count <= _MAX_COUNT:
                return (f"confusion_matrix holds {_short(count)}, not a count (a whole number "
                        f"0..2^63-1)")
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]}"


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """'weights_sha256 was 1a2b..., now 3c4d...' for every field that changed."""
    keys = sorted(set(stored) | set(current))
    return [f"{key} was {_short(stored.get(key))}, now {_short(current.get(key))}"
            for key in keys if stored.get(key) != current.get(key)]
