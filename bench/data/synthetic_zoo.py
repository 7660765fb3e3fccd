"""Small generated trees of NYUDv2, SIFT Flow, PASCAL-Context and ADE20K in their real layouts.

Everything the data layers, `evaluate` and the demo read can be tried without a download: each
`write_<name>_tree(root, seed, n)` writes `n` ids (the same (seed, n) always gives the same
bytes) under `root` exactly where bench/data expects them, and returns the data set folder.
Labels are blocks of classes with the data set's own void encoding; images are the blocks'
colours plus noise. Numpy, Pillow, scipy.io.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from bench.core.atomic import atomic_write_bytes

SIZE = (48, 64)  # H, W: small, odd crops of the real sizes exercise no special case


def _blocks(rng: np.random.Generator, num_classes: int, shape: tuple[int, int],
            first: int = 0) -> np.ndarray:
    """An int64 (H, W) map of 2x3 rectangles, each a class in first..first+num_classes-1."""
    height, width = shape
    classes = rng.integers(first, first + num_classes, size=(2, 3))
    rows = np.minimum(np.arange(height) * 2 // height, 1)
    cols = np.minimum(np.arange(width) * 3 // width, 2)
    return classes[rows[:, None], cols[None, :]]


def _colour(label: np.ndarray, rng: np.random.Generator, salt: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: a colour per class (hashed) plus noise."""
    codes = (label.astype(np.int64) * 2654435761 + salt) % (1 << 24)
    rgb = np.stack([(codes >> shift) & 255 for shift in (16, 8, 0)], axis=-1).astype(np.float64)
    rgb += rng.normal(0.0, 6.0, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    """uint8 (H, W) -> "L", uint16 -> "I;16", uint8 (H, W, 3) -> "RGB"."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _mat(key: str, array: np.ndarray) -> bytes:
    """MATLAB v5 bytes; the 116-byte descriptive header (where savemat puts the time) is fixed,
    so the same seed gives the same bytes."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {key: array})
    header = b"MATLAB 5.0 MAT-file, written by fcn-bench synthetic_zoo".ljust(116, b" ")
    return header + buffer.getvalue()[116:]


def _lines(ids: list[str]) -> bytes:
    return "".join(f"{i}\n" for i in ids).encode()


def _void(rng: np.random.Generator, label: np.ndarray, value: int) -> np.ndarray:
    """Mark a thin vertical band as void (the real sets have unlabelled pixels)."""
    label = label.copy()
    column = int(rng.integers(0, label.shape[1] - 2))
    label[:, column:column + 2] = value
    return label


def write_nyud_tree(root: str | Path, seed: int = 0, n: int = 6) -> Path:
    """DATA_ROOT/nyud: colour, depth (16-bit, mm), HHA, segmentation .mat; train/val/test lists
    splitting the ids into thirds."""
    base = Path(root) / "nyud"
    ids = [str(5001 + k) for k in range(n)]
    for k, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, 1, k])
        classes = _blocks(rng, 40, SIZE, first=1)
        raw = _void(rng, classes, 0)  # 0 = void, 1..40 = classes
        atomic_write_bytes(base / "segmentation" / f"img_{image_id}.mat",
                           _mat("segmentation", raw.astype(np.uint8)))
        atomic_write_bytes(base / "data/images" / f"img_{image_id}.png",
                           _png(_colour(classes, rng)))
        atomic_write_bytes(base / "data/hha" / f"img_{image_id}.png",
                           _png(_colour(classes, rng, salt=7)))
        depth = (1000 + 40 * classes + rng.integers(0, 50, size=SIZE)).astype(np.uint16)
        atomic_write_bytes(base / "data/depth" / f"img_{image_id}.png", _png(depth))
    third = max(1, n // 3)
    for name, part in (("train", ids[:third]), ("val", ids[third:2 * third]),
                       ("test", ids[2 * third:] or ids[-1:])):
        atomic_write_bytes(base / f"{name}.txt", _lines(part))
    return base


def write_siftflow_tree(root: str | Path, seed: int = 0, n: int = 6) -> Path:
    """DATA_ROOT/SiftFlow: 256x256 JPEGs, semantic (0 void) and geometric (-1 void) .mat `S`."""
    from bench.data.siftflow import SUB

    base = Path(root) / "SiftFlow"
    ids = [f"{('coast', 'forest', 'street')[k % 3]}_syn{k + 1}" for k in range(n)]
    for k, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, 2, k])
        classes = _blocks(rng, 33, (256, 256), first=1)
        semantic = _void(rng, classes, 0)
        geometric = _void(rng, _blocks(rng, 3, (256, 256), first=1), -1)
        atomic_write_bytes(base / "Images" / SUB / f"{image_id}.jpg", _jpeg(_colour(classes, rng)))
        atomic_write_bytes(base / "SemanticLabels" / SUB / f"{image_id}.mat",
                           _mat("S", semantic.astype(np.uint8)))
        atomic_write_bytes(base / "GeoLabels" / SUB / f"{image_id}.mat",
                           _mat("S", geometric.astype(np.int16)))
    half = max(1, n // 2)
    atomic_write_bytes(base / "trainval.txt", _lines(ids[:half]))
    atomic_write_bytes(base / "test.txt", _lines(ids[half:] or ids[-1:]))
    return base


def write_pascalcontext_tree(root: str | Path, seed: int = 0, n: int = 6) -> Path:
    """DATA_ROOT/VOCdevkit/VOC2010 (JPEGs, Main train/val) and DATA_ROOT/pascal-context
    (trainval/<id>.mat `LabelMap` with raw ids 0..459, labels.txt)."""
    from bench.data.base import CLASSES_DIR
    from bench.data.pascalcontext import RAW_TO_TASK

    root = Path(root)
    voc, context = root / "VOCdevkit" / "VOC2010", root / "pascal-context"
    ids = [f"2010_{k + 1:06d}" for k in range(n)]
    task_raw = np.flatnonzero(RAW_TO_TASK)  # raw ids that map to a task class
    for k, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, 3, k])
        raw = rng.choice(np.concatenate([task_raw, [0, 1, 3, 400]]), size=(2, 3))[
            np.minimum(np.arange(SIZE[0]) * 2 // SIZE[0], 1)[:, None],
            np.minimum(np.arange(SIZE[1]) * 3 // SIZE[1], 2)[None, :]]
        atomic_write_bytes(context / "trainval" / f"{image_id}.mat",
                           _mat("LabelMap", raw.astype(np.uint16)))
        atomic_write_bytes(voc / "JPEGImages" / f"{image_id}.jpg",
                           _jpeg(_colour(RAW_TO_TASK[raw], rng)))
    atomic_write_bytes(context / "labels.txt", (CLASSES_DIR / "pascalcontext_459.txt").read_bytes())
    half = max(1, n // 2)
    atomic_write_bytes(voc / "ImageSets" / "Main" / "train.txt", _lines(ids[:half]))
    atomic_write_bytes(voc / "ImageSets" / "Main" / "val.txt", _lines(ids[half:] or ids[-1:]))
    return context


def write_ade20k_tree(root: str | Path, seed: int = 0, n: int = 6) -> Path:
    """DATA_ROOT/ADEChallengeData2016: images and 0..150 annotation PNGs (0 = other), n
    validation and n training ids."""
    base = Path(root) / "ADEChallengeData2016"
    for folder, prefix in (("validation", "ADE_val_"), ("training", "ADE_train_")):
        for k in range(n):
            image_id = f"{prefix}{k + 1:08d}"
            rng = np.random.default_rng([seed, 4, k, len(folder)])
            label = _void(rng, _blocks(rng, 151, SIZE), 0).astype(np.uint8)
            atomic_write_bytes(base / "images" / folder / f"{image_id}.jpg",
                               _jpeg(_colour(label, rng)))
            atomic_write_bytes(base / "annotations" / folder / f"{image_id}.png", _png(label))
    return base


WRITERS = {"nyud": write_nyud_tree, "siftflow": write_siftflow_tree,
           "pascalcontext": write_pascalcontext_tree, "ade20k": write_ade20k_tree}
