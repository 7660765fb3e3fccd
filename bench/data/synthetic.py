"""Tiny procedural PASCAL VOC / SBD data sets for tests and the golden suite (seeded, exact).

Each image is a noisy background with a few rectangles and ellipses; every class is painted in its
own colour (+ Gaussian noise), so a tiny net can learn it. Labels carry VOC-style 255 void bands a
few pixels wide around each object; SBD labels, like the real ones, have no void. The same
(seed, id) always gives the same picture, so a synthetic VOC2011 is a subset of VOC2012 and SBD
images equal the VOC ones, as on real data.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from scipy import ndimage

from bench.core.atomic import atomic_write_bytes
from bench.data.id_lists import write_id_list
from bench.data.labels import NUM_CLASSES, VOC_PALETTE, VOID_LABEL, encode_label_png
from bench.data.voc import SPLIT_SUBDIR

# One colour per class: the VOC palette for the 20 objects, a dark grey background (palette 0 is
# black, which noise would clip). Noise is small next to the colour differences: learnable.
CLASS_COLOURS = VOC_PALETTE[:NUM_CLASSES].astype(np.float32)
CLASS_COLOURS[0] = (48.0, 48.0, 48.0)
NOISE_STD = 8.0
JPEG_QUALITY = 95


def synthetic_ids(num_images: int) -> list[str]:
    """VOC-looking ids ("2007_000001", "2008_000002", ...), sorted; a prefix of a longer set."""
    return sorted(f"{2007 + index % 5}_{index + 1:06d}" for index in range(num_images))


def _rng(seed: int, image_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, id): content is independent of which set holds it."""
    id_key = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, id_key])


def _object_masks(rng: np.random.Generator, height: int, width: int
                  ) -> list[tuple[int, np.ndarray]]:
    """1-3 (class, mask) pairs: axis-aligned rectangles and ellipses, later ones painted on top."""
    rows, cols = np.mgrid[0:height, 0:width]
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        class_index = int(rng.integers(1, NUM_CLASSES))
        box_h = int(rng.integers(max(6, height // 4), max(7, 3 * height // 4)))
        box_w = int(rng.integers(max(6, width // 4), max(7, 3 * width // 4)))
        top = int(rng.integers(0, max(1, height - box_h)))
        left = int(rng.integers(0, max(1, width - box_w)))
        if rng.random() < 0.5:
            mask = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
        else:
            centre_r, centre_c = top + (box_h - 1) / 2, left + (box_w - 1) / 2
            mask = (((rows - centre_r) / (box_h / 2)) ** 2
                    + ((cols - centre_c) / (box_w / 2)) ** 2) <= 1.0
        objects.append((class_index, mask))
    return objects


def synthetic_sample(image_id: str, *, seed: int = 0, min_size: int = 24, max_size: int = 48,
                     void: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 (H, W, 3), labels uint8 (H, W)) pair, a pure function of (seed, id).

    Heights are odd (VOC-like sizes never divide by 32); `void` adds 255 bands 2 px wide on each
    object's outline (1 px inside, 1 outside), like the VOC annotation boundaries.
    """
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    rng = _rng(seed, image_id)
    height = int(rng.integers(min_size, max_size + 1))
    width = int(rng.integers(min_size, max_size + 1))
    if height % 2 == 0:
        height = height - 1 if height - 1 >= min_size else height + 1

    labels = np.zeros((height, width), dtype=np.uint8)
    objects = _object_masks(rng, height, width)
    for class_index, mask in objects:
        labels[mask] = class_index
    rgb = CLASS_COLOURS[labels] + rng.normal(0.0, NOISE_STD, size=(height, width, 3))
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    if void:
        band = np.zeros_like(labels, dtype=bool)
        for _, mask in objects:
            outer = ndimage.binary_dilation(mask, iterations=1)
            inner = ndimage.binary_erosion(mask, iterations=1)
            band |= outer & ~inner
        labels[band] = VOID_LABEL
    return rgb, labels


def _jpeg_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def make_voc(data_root: str | Path, *, year: str = "2012", num_images: int = 8, seed: int = 0,
             min_size: int = 24, max_size: int = 48, ids: Sequence[str] | None = None) -> Path:
    """Write `DATA_ROOT/VOCdevkit/VOC<year>`: JPEGImages, SegmentationClass, ImageSets/Segmentation.

    Split lists: ids at even positions (sorted) are train, odd positions val; trainval is both.
    `ids` overrides the generated names (e.g. to build a VOC2011 val that overlaps an SBD train).
    Returns the VOC<year> folder.
    """
    ids = sorted(set(ids)) if ids is not None else synthetic_ids(num_images)
    voc_dir = Path(data_root) / "VOCdevkit" / f"VOC{year}"
    for image_id in ids:
        rgb, labels = synthetic_sample(image_id, seed=seed, min_size=min_size, max_size=max_size)
        atomic_write_bytes(voc_dir / "JPEGImages" / f"{image_id}.jpg", _jpeg_bytes(rgb))
        atomic_write_bytes(voc_dir / "SegmentationClass" / f"{image_id}.png",
                           encode_label_png(labels))
    split_dir = voc_dir / SPLIT_SUBDIR
    write_id_list(split_dir / "train.txt", ids[0::2])
    write_id_list(split_dir / "val.txt", ids[1::2])
    write_id_list(split_dir / "trainval.txt", ids)
    return voc_dir


def _mat_bytes(labels: np.ndarray) -> bytes:
    """A .mat shaped like SBD's: struct GTcls with Segmentation (uint8) and CategoriesPresent."""
    present = np.unique(labels[labels > 0]).astype(np.uint8).reshape(-1, 1)
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"GTcls": {"Segmentation": labels, "CategoriesPresent": present}},
                     do_compression=True)
    # The 116-byte text header holds the creation time; a fixed one keeps the bytes seeded (and
    # the same as the first release's, whose module was bench/synthetic.py).
    header = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: fcn-bench bench.synthetic"
    return header.ljust(116, b" ") + buffer.getvalue()[116:]


def make_sbd(data_root: str | Path, ids: Sequence[str], *, seed: int = 0,
             val_ids: Sequence[str] = (), min_size: int = 24, max_size: int = 48) -> Path:
    """Write `DATA_ROOT/benchmark_RELEASE/dataset` (img/*.jpg, cls/*.mat, train.txt, val.txt).

    All `ids` get an image and a label; those in `val_ids` go to val.txt, the rest to train.txt.
    Images equal make_voc's for the same (seed, id); labels have no void, like real SBD.
    Returns the dataset folder.
    """
    ids = sorted(set(ids))
    unknown = sorted(set(val_ids) - set(ids))
    if unknown:
        raise ValueError(f"val_ids not among ids: {unknown}")
    dataset_dir = Path(data_root) / "benchmark_RELEASE" / "dataset"
    for image_id in ids:
        rgb, labels = synthetic_sample(image_id, seed=seed, min_size=min_size, max_size=max_size,
                                       void=False)
        atomic_write_bytes(dataset_dir / "img" / f"{image_id}.jpg", _jpeg_bytes(rgb))
        atomic_write_bytes(dataset_dir / "cls" / f"{image_id}.mat", _mat_bytes(labels))
    val_set = set(val_ids)
    write_id_list(dataset_dir / "train.txt", [i for i in ids if i not in val_set])
    write_id_list(dataset_dir / "val.txt", val_ids)
    return dataset_dir


def write_split_list(path: str | Path, ids: Sequence[str]) -> Path:
    """A seg11valid-style list file (sorted, one id per line, final newline) for tests."""
    return write_id_list(path, ids)


# -- the `demo` data set: VOC-sized, for trying every command without downloads ------------------

# Real VOC images are at most 500 px a side, mostly 500x375 or 375x500 (docs/demo.md).
DEMO_MIN_SIZE, DEMO_MAX_SIZE = 375, 500
DEMO_SEED = 2012
DEMO_MARKER = "fcn-bench-demo.json"


def make_demo_tree(data_root: str | Path, *, num_images: int = 24, seed: int = DEMO_SEED,
                   progress=None) -> dict[str, list[str]]:
    """A VOC2012 + VOC2011 + SBD tree of `num_images` VOC-sized synthetic images (seeded).

    VOC2012 lists: even positions train, odd positions val (make_voc's rule); VOC2011 holds the
    val images (as VOC2011 is a subset of VOC2012); SBD holds every image, its train list the
    VOC2012 train ids and its val list the rest, so training never sees a validation image.
    `progress(done, total)` is called after each image. Returns {list name: ids}.
    """
    if num_images < 2:
        raise ValueError(f"need at least 2 images (one train, one val), got {num_images}")
    ids = synthetic_ids(num_images)
    train, val = ids[0::2], ids[1::2]
    root = Path(data_root)
    voc2012, voc2011 = root / "VOCdevkit" / "VOC2012", root / "VOCdevkit" / "VOC2011"
    sbd = root / "benchmark_RELEASE" / "dataset"
    for done, image_id in enumerate(ids, 1):
        rgb, labels = synthetic_sample(image_id, seed=seed, min_size=DEMO_MIN_SIZE,
                                       max_size=DEMO_MAX_SIZE)
        jpeg, png = _jpeg_bytes(rgb), encode_label_png(labels)
        trees = (voc2012, voc2011) if image_id in val else (voc2012,)
        for tree in trees:
            atomic_write_bytes(tree / "JPEGImages" / f"{image_id}.jpg", jpeg)
            atomic_write_bytes(tree / "SegmentationClass" / f"{image_id}.png", png)
        _, sbd_labels = synthetic_sample(image_id, seed=seed, min_size=DEMO_MIN_SIZE,
                                         max_size=DEMO_MAX_SIZE, void=False)
        atomic_write_bytes(sbd / "img" / f"{image_id}.jpg", jpeg)
        atomic_write_bytes(sbd / "cls" / f"{image_id}.mat", _mat_bytes(sbd_labels))
        if progress is not None:
            progress(done, len(ids))
    lists = {"train": train, "val": val, "trainval": ids}
    for name, members in lists.items():
        write_id_list(voc2012 / SPLIT_SUBDIR / f"{name}.txt", members)
    write_id_list(voc2011 / SPLIT_SUBDIR / "val.txt", val)
    write_id_list(sbd / "train.txt", train)
    write_id_list(sbd / "val.txt", val)
    return lists
