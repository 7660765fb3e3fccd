"""Split lists of image ids: reading them safely, their canonical text and checksum, writing them.

A split list is one id per line (REF ships them sorted, with a final newline); an id names a file
(<id>.jpg), so one that could not be a file name, or a list that repeats an id (its image would be
counted twice), is refused with one line naming the list (docs/security.md).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from bench.core.atomic import atomic_write_text
from bench.core.errors import DataError, escape_controls, printable

MAX_SPLIT_BYTES = 16 * 2**20  # a split list is one short id per line
# An id names a file (<id>.jpg): longer than a file name can be is not an id, and quoting a
# 10-million-character one made a 10 MB error "line" (docs/security.md).
MAX_ID_CHARS = 255


def format_id_list(ids: Iterable[str]) -> str:
    """Canonical id-list text: distinct ids, sorted, one per line, final newline (as REF ships)."""
    return "".join(f"{image_id}\n" for image_id in sorted(set(ids)))


def id_list_sha256(ids: Iterable[str]) -> str:
    """SHA-256 of the canonical text of `ids` (independent of order and line endings on disk)."""
    return hashlib.sha256(format_id_list(ids).encode("utf-8")).hexdigest()


def write_id_list(path: str | Path, ids: Iterable[str]) -> Path:
    """Write an id list atomically in the canonical form; returns the path."""
    path = Path(path)
    atomic_write_text(path, format_id_list(ids))
    return path


def read_id_list(path: str | Path) -> list[str]:
    """Ids of a split file in file order (blank lines and surrounding spaces ignored)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SPLIT_BYTES:
            raise DataError(path, f"{path.stat().st_size / 2**20:.0f} MiB is too large for a "
                                  f"split list (SBD train, 8,498 ids, is 100 KB; limit "
                                  f"{MAX_SPLIT_BYTES // 2**20} MiB)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise DataError(path, "split list not found") from error
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read split list: {error}") from error
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    long = next((number for number, image_id in enumerate(ids, 1)
                 if len(image_id) > MAX_ID_CHARS), None)
    if long is not None:
        raise DataError(path, f"id number {long} is {len(ids[long - 1]):,} characters long "
                              f"(limit {MAX_ID_CHARS}, like a file name); not a list of image ids")
    bad = [image_id for image_id in ids if "/" in image_id or "\\" in image_id or ".." in image_id
           or escape_controls(image_id) != image_id]
    if bad:
        raise DataError(path, f"not a list of image ids (e.g. '{printable(bad[0])[:80]}'); "
                              "expected one id per line such as 2007_000033, without control "
                              "characters")
    repeated = sorted(image_id for image_id, count in Counter(ids).items() if count > 1)
    if repeated:
        shown = ", ".join(repeated[:5]) + (f", ... ({len(repeated)} in all)"
                                           if len(repeated) > 5 else "")
        raise DataError(path, f"split list names the same id more than once ({shown}); each "
                              "image would be counted twice: remove the repeats")
    return ids
