"""The safetensors header of a weights file, read strictly: one line for every way a file is not
an archive (too short, truncated, foreign JSON, another format named by its content with the
`convert` command that makes an archive of it). Bounded in size and depth (docs/security.md).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.core.digests import file_digests
from bench.core.errors import WeightsError
from bench.core.json_text import JsonTooDeep, loads_bounded
from bench.weights.sniff import FileKind, convert_hint, sniff

# An archive's header is a few KB (about 40 tensors); safetensors itself allows 100 MB, whose
# parse tree alone could take gigabytes. Tensor entries are 2 levels deep, metadata 2.
_HEADER_LIMIT = 16 * 2**20
_HEADER_DEPTH = 8


def sha256_file(path: str | Path, progress: Callable[[int], Any] | None = None) -> str:
    """Hex SHA-256 of a weights file (`progress(n_bytes)` after each 1 MiB chunk)."""
    with reading_weights_file(path, "a weights file"):
        return file_digests(path, ("sha256",), progress)["sha256"]


@contextmanager
def reading_weights_file(path: str | Path, expected: str) -> Iterator[None]:
    """OSErrors while reading a weights file (any format) -> one WeightsError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise WeightsError(path, "no such file") from None
    except IsADirectoryError:
        raise WeightsError(path, f"is a directory, expected {expected}") from None
    except OSError as error:
        raise WeightsError(path, f"cannot read: {error.strerror or error}") from None


def read_header(path: str | Path) -> dict[str, Any]:
    """The parsed safetensors JSON header, after checking the file is complete.

    Parsed by hand so that a foreign or truncated file gets a precise one-line error (the
    safetensors library reports both as an opaque "Error while deserializing header"); a file
    of another kind (a caffemodel, a .pth, a JPEG) is named by its content, with the `convert`
    command to run. The header's size and JSON nesting depth are bounded (docs/security.md).
    """
    path = Path(path)
    with reading_weights_file(path, "a .safetensors file"):
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise _not_an_archive(path, f"{size} bytes, too short")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > size - 8:
                raise _not_an_archive(path, "no valid header length in the first 8 bytes")
            if header_len > _HEADER_LIMIT:
                raise WeightsError(path, f"safetensors header of {header_len:,} bytes is over "
                                   f"the {_HEADER_LIMIT // 2**20} MiB an fcn-bench archive "
                                   "could need; refusing to parse it")
            raw = handle.read(header_len)
    try:
        header = loads_bounded(raw.decode("utf-8"), _HEADER_DEPTH)
    except JsonTooDeep as error:
        raise WeightsError(path, f"not a safetensors file (header JSON {error})") from None
    except (UnicodeDecodeError, ValueError):
        raise _not_an_archive(path, "header is not JSON") from None
    if not isinstance(header, dict):
        raise WeightsError(path, "not a safetensors file (header is not a JSON object)")
    data_len = size - 8 - header_len
    needed = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            _begin, end = (int(offset) for offset in entry["data_offsets"])
            _ = str(entry["dtype"]), [int(dim) for dim in entry["shape"]]
        except (TypeError, KeyError, ValueError):
            raise WeightsError(path, f"not a safetensors file (bad header entry {key!r})") from None
        needed = max(needed, end)
    if needed > data_len:
        raise WeightsError(path, f"truncated: the header describes {8 + header_len + needed} "
                           f"bytes but the file has {size}; download or convert it again")
    metadata = header.get("__metadata__")
    if metadata is not None and not isinstance(metadata, dict):
        raise WeightsError(path, "not a safetensors file (__metadata__ is not an object)")
    return header


def _not_an_archive(path: Path, why: str) -> WeightsError:
    """A file that is not a safetensors archive: say what it is instead (by content) and, for
    weights in another format, the `convert` command that makes an archive of it."""
    kind = sniff_path(path)
    if kind.kind in ("safetensors", "unknown", "empty"):
        return WeightsError(path, f"not a safetensors file ({why})")
    return WeightsError(path, f"is {kind.description}, not an fcn-bench weights archive "
                              f"(.safetensors); {convert_hint(path, kind)}")


def sniff_path(path: Path) -> FileKind:
    try:
        return sniff(path)
    except OSError:
        return FileKind("unknown", "an unreadable file")
