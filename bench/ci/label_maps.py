"""Predicted label maps stored inside golden records, so that the regression table counts
changed pixels exactly instead of trusting a digest (docs/security.md bounds the decoding).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.ci.record_files import RecordError

# Golden records store their predicted label maps, so a comparison can count changed pixels
# exactly instead of trusting a digest: uint8 arrays in id order, concatenated, zlib, base64.
LABEL_MAPS_PREFIX = "zlib+base64:"


@dataclass(frozen=True)
class LabelMaps:
    """Predicted labels of every image, flattened and concatenated (uint8)."""

    pixels: np.ndarray

    def changed_pixels(self, other: LabelMaps) -> int | None:
        """Pixels whose label differs, or None if the two cover different image sizes."""
        if self.pixels.shape != other.pixels.shape:
            return None
        return int(np.count_nonzero(self.pixels != other.pixels))


def encode_label_maps(labels: Iterable[np.ndarray]) -> str:
    flat = np.concatenate([np.ascontiguousarray(label, np.uint8).ravel() for label in labels])
    return LABEL_MAPS_PREFIX + base64.b64encode(zlib.compress(flat.tobytes(), 9)).decode("ascii")


def decode_label_maps(text: str, source: str | Path = "record") -> LabelMaps:
    if not text.startswith(LABEL_MAPS_PREFIX):
        raise RecordError(source, f"label_maps must start with {LABEL_MAPS_PREFIX!r}")
    try:
        packed = base64.b64decode(text[len(LABEL_MAPS_PREFIX):], validate=True)
        inflater = zlib.decompressobj()
        # Bounded: a few KB of zlib can claim gigabytes (docs/security.md).
        raw = inflater.decompress(packed, MAX_LABEL_MAP_BYTES + 1)
    except (binascii.Error, zlib.error) as error:
        raise RecordError(source, f"label_maps cannot be decoded: {error}") from None
    if len(raw) > MAX_LABEL_MAP_BYTES:
        raise RecordError(source, f"label_maps decompress to more than "
                                  f"{MAX_LABEL_MAP_BYTES // 2**20} MiB; refusing")
    if not inflater.eof:
        raise RecordError(source, "label_maps cannot be decoded: truncated zlib stream")
    return LabelMaps(np.frombuffer(raw, dtype=np.uint8))


MAX_LABEL_MAP_BYTES = 256 * 2**20  # 1000 VOC-sized predictions
