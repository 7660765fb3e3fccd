"""MATLAB .mat files from untrusted data sets, checked before scipy reads them.

scipy allocates what a file declares; these checks bound that by the file's real content
(docs/security.md).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from bench.core.errors import DataError

MAX_MAT_INFLATED = 64 * 2**20  # an SBD label (500x500 uint8 plus boundaries) inflates to ~1 MB
_MI_COMPRESSED = 15


def check_mat_inflated_size(path: Path, limit: int = MAX_MAT_INFLATED,
                            what: str = "an SBD label file") -> None:
    """Refuse anything but a MATLAB 5 file, and one whose compressed variables inflate past
    `limit`, before scipy reads it. Label .mat files are MATLAB 5; scipy would read a file with a
    zero among its first bytes as MATLAB 4 and allocate whatever its header declares (gigabytes
    from one flipped byte). Streams each compressed element through zlib in 1 MiB steps and
    discards the output."""
    data = path.read_bytes()  # at most MAX_MAT_BYTES (checked by the caller)
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise DataError(path, f"not a MATLAB 5 .mat file (no MATLAB 5 header); not {what}")
    order = "<" if data[126:128] == b"IM" else ">"
    pos, total = 128, 0
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from(f"{order}II", data, pos)
        if kind >> 16:  # small data element: type and size packed in 4 bytes, data in 4
            pos += 8
            continue
        payload = data[pos + 8:pos + 8 + size]
        if kind == _MI_COMPRESSED:
            total += _inflated_size(payload, limit - total + 1)
        else:
            total += len(payload)
        if total > limit:
            raise DataError(path, f"MATLAB variables inflate to more than {limit // 2**20} MiB; "
                                  f"not {what} (refused before decompressing)")
        pos += 8 + size + (0 if kind == _MI_COMPRESSED else -size % 8)


def _inflated_size(payload: bytes, limit: int) -> int:
    """Bytes a zlib stream inflates to, counted up to `limit` in bounded steps."""
    inflater = zlib.decompressobj()
    total = 0
    try:
        chunk = inflater.decompress(payload, 2**20)
        while chunk:
            total += len(chunk)
            if total >= limit:
                return total
            chunk = inflater.decompress(inflater.unconsumed_tail, 2**20)
    except zlib.error:
        return total  # corrupt: scipy reports it
    return total
