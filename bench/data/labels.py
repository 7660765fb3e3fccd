"""PASCAL VOC label maps: class names, the VOC palette, and reading/writing palette PNGs as indices.

Label PNGs are read as palette *indices* with Pillow, never colour-converted (reading
a VOC label as RGB colours turns "aeroplane" into (128, 0, 0) and the scores collapse).
"""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.core.atomic import atomic_write_bytes
from bench.core.errors import DataError, not_a_file
from bench.core.outputs import writing

# Largest image decoded (VOC images are 500x500, Cityscapes 2048x1024): a 40 Mpixel 32-bit
# label and its index copy stay well under 1 GiB. Checked from the header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
NUM_CLASSES = len(VOC_CLASSES)  # 21
VOID_LABEL = 255  # object boundaries and "difficult" regions; ignored by the loss and the metrics

# Modes whose pixel values are class indices. "P" is what VOC ships; "L" (8-bit grey) and the
# 16/32-bit integer modes are what other frameworks' prediction writers commonly produce.
_INDEX_MODES = ("P", "L", "I;16", "I;16B", "I;16L", "I")


def _voc_palette(entries: int = 256) -> np.ndarray:
    """The devkit's colormap (VOCcolormap.m): the 3 low bits of the index, interleaved MSB-first.

    Index 1 -> (128, 0, 0) aeroplane, 15 -> (192, 128, 128) person, 255 -> (224, 224, 192) void.
    """
    palette = np.zeros((entries, 3), dtype=np.uint8)
    for index in range(entries):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette[index] = (red, green, blue)
    return palette


VOC_PALETTE: np.ndarray = _voc_palette()  # (256, 3) uint8
VOC_PALETTE.setflags(write=False)


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image; every failure becomes DataError(path, problem).

    Pillow decodes lazily, so a truncated PNG/JPEG opens fine and only fails in `load()`: force it
    here so the error names this file instead of surfacing later in numpy code.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, not_a_file(path))
    try:
        # A damaged file makes Pillow warn (corrupt EXIF, oversized tags) before it fails or
        # recovers: the error below, or the decoded pixels, say all the user needs.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(path, f"image of {width}x{height} pixels is larger than "
                                          "fcn-bench decodes "
                                          f"({MAX_IMAGE_PIXELS // 10**6} Mpixels)")
                image.load()  # once loaded, the pixels stay in memory after the file is closed
                return image
    except Image.DecompressionBombError as error:
        raise DataError(path, f"image too large to decode safely ({error})") from error
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as error:
        # UnidentifiedImageError (not an image), "image file is truncated", broken PNG chunks
        # (Pillow raises SyntaxError for those) and zlib stream errors all land here.
        problem = ("not a readable image (truncated, corrupt or not an image file)"
                   if "cannot identify" in str(error) else str(error))
        raise DataError(path, f"cannot decode image: {problem}") from error


def invalid_label_values(labels: np.ndarray, num_classes: int = NUM_CLASSES,
                         allow_void: bool = True) -> np.ndarray:
    """Sorted distinct values that are neither a class index (0..num_classes-1) nor void (255,
    unless `allow_void` is False, as for predictions).

    Memory is proportional to the map, never to a value in it: a 32-bit TIFF holding 2^31-1
    must not make a 16 GiB histogram (docs/security.md). `labels` must be integer-valued
    (check_label_values refuses anything else first).
    """
    flat = labels.ravel()
    if flat.size == 0:
        return np.empty(0, dtype=np.int64)
    low, high = flat.min(), flat.max()
    if low >= 0 and high <= _HISTOGRAM_LIMIT:
        # A histogram over 0..high is one pass and far cheaper than np.unique on large maps.
        present = np.flatnonzero(np.bincount(flat.astype(np.intp, copy=False)))
    else:
        present = np.unique(flat)
    bad = ((present >= num_classes) & ((present != VOID_LABEL) | (not allow_void))) | (present < 0)
    return present[bad]


# Largest value counted with a histogram (a 512 KiB table); beyond it, np.unique (sorts a copy).
_HISTOGRAM_LIMIT = 65535


def describe_values(values: np.ndarray, limit: int = 8) -> str:
    """'21, 37, 128' or '21, 37, ... (12 distinct values)' for error messages."""
    shown = ", ".join(_number(v) for v in values[:limit])
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} distinct values)"


def _number(value: Any) -> str:
    """An integer-valued number without '.0' (1e12 -> '1000000000000'), others as repr."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return repr(value)


def check_label_values(labels: np.ndarray, path: str | Path, num_classes: int = NUM_CLASSES,
                       what: str = "label", allow_void: bool = True) -> None:
    """Raise DataError naming `path` and the offending values if any pixel is not 0..n-1 or 255
    (or not 0..n-1 at all when `allow_void` is False). Non-numeric, NaN and fractional values
    are refused too: 1.5 must not silently become class 1."""
    labels = np.asarray(labels)
    kind = labels.dtype.kind
    if kind == "b":
        labels = labels.view(np.uint8)
    elif kind == "f":
        flat = labels.ravel()
        if not np.isfinite(flat).all():
            raise DataError(path, f"{what} values include NaN or infinity; expected class "
                                  "indices")
        if not np.array_equal(flat, np.floor(flat)):
            fractions = np.unique(flat[flat != np.floor(flat)])
            raise DataError(path, f"{what} values are not whole numbers "
                                  f"({describe_values(fractions)}); expected class indices")
    elif kind not in "iu":
        raise DataError(path, f"{what} values are of type {labels.dtype}, expected integer "
                              "class indices")
    bad = invalid_label_values(labels, num_classes, allow_void)
    if bad.size:
        allowed = f"0-{num_classes - 1}" + (f" and {VOID_LABEL}" if allow_void else "")
        raise DataError(path, f"{what} values outside {allowed}: {describe_values(bad)}")


def read_label_png(path: str | Path, num_classes: int = NUM_CLASSES, what: str = "label",
                   allow_void: bool = True) -> np.ndarray:
    """Read a label (or prediction) PNG as class indices, (H, W) uint8, validated.

    Accepts palette ("P", what VOC ships) and integer grey modes ("L", 16-bit). Colour images are
    refused rather than guessed back into indices. Predictions pass `allow_void=False`: an argmax
    is always a class, and a 255 would otherwise be silently miscounted.
    """
    image = open_image(path)
    if image.mode not in _INDEX_MODES:
        raise DataError(path, f"{what} image has mode {image.mode!r}; expected class indices in a "
                              "palette ('P') or greyscale ('L') PNG, not colours")
    labels = np.array(image)  # a writable copy (asarray of a PIL image is read-only)
    check_label_values(labels, path, num_classes, what, allow_void)
    return labels.astype(np.uint8, copy=False)


def encode_label_png(labels: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) index map with the VOC palette attached (viewable like VOC labels)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map must be 2-D (H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("label map values must fit in 0..255")
    indices = np.ascontiguousarray(labels, dtype=np.uint8)
    height, width = indices.shape
    image = Image.frombytes("P", (width, height), indices.tobytes())
    image.putpalette(VOC_PALETTE.tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Write an (H, W) index map as a VOC palette PNG, atomically (never half a file on disk);
    a path that cannot be written is a DataError naming it."""
    data = encode_label_png(labels)
    with writing(path, "label PNG"):
        atomic_write_bytes(path, data)
