"""Every network input prepared as its data layer does (docs/fidelity.md "Inputs per model").

A catalogue input (bench.model.zoo.InputInfo) has a kind: "bgr" (a photo: RGB -> BGR, minus the
mean), "hha" (Gupta's HHA PNG: the file's channel order, no flip, minus the mean) or "logd" (a depth
map: natural log of the depth in millimetres, minus the mean; REF nyud_layers.py load_depth
reads the NYUD depth PNGs, whose values are millimetres, as they are). Each reader refuses a
file of the wrong kind (channels, non-positive depth) in one line naming it. numpy + Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.core.errors import DataError
from bench.data.labels import open_image
from bench.model.zoo import InputInfo

DEPTH_UNITS = {"mm": 1.0, "m": 1000.0}  # multiplier to millimetres
# A depth .npy is at most one image: refuse a header that declares more before reading it.
_MAX_DEPTH_VALUES = 64 * 2**20


def read_photo(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour photo (greyscale, palette and CMYK converted, as
    bench.data.voc.load_image does); a 16-bit or float single-channel image (a depth map, not a
    photo) is refused rather than squashed into 8 bits."""
    image = open_image(path)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise DataError(path, f"image has mode {image.mode!r} (one 16/32-bit channel, like a "
                              "depth map); the colour input needs an 8-bit RGB photo")
    return np.array(image.convert("RGB") if image.mode != "RGB" else image)


def read_hha(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 of an HHA PNG, channels in file order (disparity, height, angle)."""
    image = open_image(path)
    if image.mode != "RGB":
        raise DataError(path, f"HHA image has mode {image.mode!r} ({len(image.getbands())} "
                              "channel(s)); expected a 3-channel 8-bit HHA PNG (Gupta et al.)")
    return np.array(image)


def read_depth(path: str | Path, units: str = "mm") -> np.ndarray:
    """(H, W) float64 depth in millimetres from a 1-channel PNG (8/16-bit or float) or a 2-D
    .npy (never unpickled); `units` says what the stored numbers are ("mm" as in NYUD's PNGs,
    or "m"). Zero, negative or non-finite depth has no logarithm: refused, with the count."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        depth = _read_npy(path)
    else:
        image = open_image(path)
        if len(image.getbands()) != 1:
            raise DataError(path, f"depth image has {len(image.getbands())} channels "
                                  f"(mode {image.mode!r}); expected a 1-channel depth map")
        depth = np.array(image, dtype=np.float64)
    if depth.ndim != 2:
        raise DataError(path, f"depth map has shape {list(depth.shape)}; expected (H, W)")
    bad = int(np.count_nonzero(~(np.isfinite(depth) & (depth > 0))))
    if bad:
        raise DataError(path, f"{bad} depth values are zero, negative or not finite; the "
                              "network takes log(depth): fill the holes first")
    return depth * DEPTH_UNITS[units]


def _read_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(handle))
            if dtype.kind not in "fiu" or int(np.prod(shape)) > _MAX_DEPTH_VALUES:
                raise DataError(path, f"depth .npy holds {dtype} {list(shape)}; expected a "
                                      "numeric (H, W) map")
        return np.load(path, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError) as error:
        raise DataError(path, f"not a readable .npy depth map ({error})") from None


def encode(info: InputInfo, array: np.ndarray) -> np.ndarray:
    """(C, H, W) float32 network input from a photo/HHA (H, W, 3) or a depth (H, W) in mm."""
    mean = np.asarray(info.mean, np.float64)
    if info.kind == "bgr":
        data = array[:, :, ::-1].astype(np.float64) - mean
    elif info.kind == "hha":
        data = array.astype(np.float64) - mean
    elif info.kind == "logd":
        data = (np.log(array) - mean[0])[:, :, None]
    else:
        raise ValueError(f"unknown input kind {info.kind!r}")
    return np.ascontiguousarray(data.transpose(2, 0, 1), dtype=np.float32)
