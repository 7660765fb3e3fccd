"""JSON text in and out: strict writing (numpy values converted, NaN as null) and reading with
the nesting depth bounded, for files we did not write (records, archive headers, solver states).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np


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
