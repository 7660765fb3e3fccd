"""Where fcn-bench keeps downloaded files, converted weights and recorded checksums, and the one
file-hashing routine every checksum in fcn-bench goes through (stdlib only).

The cache is `$FCN_BENCH_CACHE` when set, else `~/.cache/fcn-bench`:

    downloads/             archives and caffemodels exactly as downloaded (`*.part` while partial)
    weights/<variant>.safetensors
                           the converted official weights `reproduce` uses by default
    checkpoints/           partial `reproduce` runs, one file per variant, backend and split
    recorded_sha256.json   SHA-256 of files without a published checksum, recorded after the
                           first validated https download and enforced afterwards (trust on
                           first use; `download forget NAME` drops one; docs/downloads.md)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bench.core.atomic import atomic_write_text
from bench.core.errors import DataError
from bench.core.json_text import loads_bounded, to_json
from bench.core.outputs import safe_file_part
from bench.core.records import utc_now
from bench.model.spec import VARIANTS, get_spec

CACHE_ENV = "FCN_BENCH_CACHE"
DATA_ENV = "FCN_BENCH_DATA"
RECORDED_HASHES = "recorded_sha256.json"
def cache_dir() -> Path:
    """The cache root (not created here: readers must not create directories as a side effect)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fcn-bench"


def downloads_dir() -> Path:
    return cache_dir() / "downloads"


def weights_dir() -> Path:
    return cache_dir() / "weights"


def checkpoints_dir() -> Path:
    return cache_dir() / "checkpoints"


def reproduce_checkpoint_path(variant: str, backend: str, split_name: str) -> Path:
    """Where `reproduce` keeps the checkpoint of one backend's run of `variant` on a split."""
    return checkpoints_dir() / f"reproduce-{variant}-{backend}-{safe_file_part(split_name)}.json"


def default_data_root() -> Path:
    """`$FCN_BENCH_DATA`, else ./data (the folder holding VOCdevkit/ and benchmark_RELEASE/)."""
    configured = os.environ.get(DATA_ENV)
    return Path(configured).expanduser() if configured else Path("data")


def default_weights_path(variant: str) -> Path:
    """The converted official weights of `variant` that `reproduce` loads when --weights is not
    given (written by `python cli.py download weights <variant>`)."""
    if variant not in VARIANTS:
        get_spec(variant)  # raises the one "unknown variant ...; choose from ..." error
    return weights_dir() / f"{variant}.safetensors"


def _recorded_path() -> Path:
    return cache_dir() / RECORDED_HASHES


# A few hundred bytes per recorded file; anything near this is not a file fcn-bench wrote.
MAX_RECORDED_BYTES = 16 * 2**20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_cache_file(path: Path, limit: int, what: str, fix: str) -> bytes:
    """The bytes of a file fcn-bench wrote into the cache (checkpoint, recorded checksums), read
    with a size bound: a user can edit or damage it, so every problem is one DataError naming
    the file, ending with `fix` (how to recover). docs/security.md."""
    if not path.is_file():
        raise DataError(path, f"{what} is not a regular file; {fix}")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as error:
        raise DataError(path, f"unreadable {what} ({error.strerror or error}); {fix}") from None
    if len(raw) > limit:
        raise DataError(path, f"{what} is larger than {limit // 2**20} MiB, so not one fcn-bench "
                              f"wrote; {fix}")
    return raw


def recorded_hashes() -> dict[str, Any]:
    """{file name: {"sha256", "size", "url", "recorded_utc"}} for files without a published hash.

    Entries are checked where they are used (`recorded_sha256`), so `download forget` can still
    drop one that a user damaged."""
    path = _recorded_path()
    if not path.exists():
        return {}
    fix = "delete it to record the checksums again on the next download"
    raw = read_cache_file(path, MAX_RECORDED_BYTES, "recorded-checksum file", fix)
    try:
        data = loads_bounded(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:  # ValueError: bad JSON, too deep
        raise DataError(path, f"unreadable recorded-checksum file ({error}); {fix}") from None
    if not isinstance(data, dict):
        raise DataError(path, f"recorded-checksum file is not a JSON object; {fix}")
    return data


def recorded_sha256(name: str) -> str | None:
    """The SHA-256 recorded for `name`, or None; a damaged entry is a DataError (a wrong type
    would otherwise surface as a traceback, or as a checksum mismatch that blames the file)."""
    entry = recorded_hashes().get(name)
    if entry is None:
        return None
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise DataError(_recorded_path(), f"the entry for {name} has no valid sha256 (64 "
                        f"lowercase hex digits, got {str(sha)[:80]!r}); drop it with `python "
                        "cli.py download forget` and download again")
    return sha


def record_sha256(name: str, sha256: str, size: int, url: str) -> Path:
    """Remember the SHA-256 of a file that has no published checksum (atomic rewrite)."""
    entries = recorded_hashes()
    entries[name] = {"sha256": sha256, "size": size, "url": url, "recorded_utc": utc_now()}
    path = _recorded_path()
    atomic_write_text(path, to_json(dict(sorted(entries.items()))))
    return path


def forget_sha256(name: str) -> Path:
    """Drop the recorded SHA-256 of `name` (`python cli.py download forget`; atomic rewrite)."""
    entries = recorded_hashes()
    entries.pop(name, None)
    path = _recorded_path()
    atomic_write_text(path, to_json(dict(sorted(entries.items()))))
    return path
