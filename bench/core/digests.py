"""The one file-hashing routine: every checksum in fcn-bench (weights, data, downloads) goes
through it, one pass of 1 MiB chunks for any set of algorithms."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HASH_CHUNK_BYTES = 1 << 20


def file_digests(path: str | Path, algorithms: Iterable[str] = ("sha256",),
                 progress: Callable[[int], Any] | None = None) -> dict[str, str]:
    """Hex digests of a file for every algorithm, in one pass of 1 MiB chunks (weights, data,
    downloads all hash through here); `progress(n_bytes)` after each chunk. OSError propagates:
    callers know which error (weights, data, download) to turn it into."""
    hashers = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            for hasher in hashers.values():
                hasher.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}
