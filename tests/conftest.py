"""Shared fixtures: tiny generated VOC data roots (6 images of at most 48x48) and file helpers.

The data is generated once per session into a template and copied per test, so a test may damage
its copy (truncate, delete, rewrite files) without affecting others.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.data.labels import VOID_LABEL, write_label_png
from bench.data.synthetic import make_voc
from bench.data.voc import VOCDataset, resolve_split

NUM_FIXTURE_IMAGES = 6


@pytest.fixture(scope="session")
def _voc_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voc_template")
    make_voc(root, year="2012", num_images=NUM_FIXTURE_IMAGES, seed=0)
    return root


@pytest.fixture
def voc_root(_voc_template: Path, tmp_path: Path) -> Path:
    """A data root with VOCdevkit/VOC2012 (6 images: train 3, val 3, trainval 6), yours to edit."""
    root = tmp_path / "data"
    shutil.copytree(_voc_template, root)
    return root


@pytest.fixture
def voc_val(voc_root: Path) -> VOCDataset:
    """The VOC2012 'val' split of `voc_root` (3 images)."""
    return resolve_split(voc_root, "val")


def write_predictions(dataset: VOCDataset, out_dir: Path,
                      transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Path:
    """Write `<id>.png` predictions for every id: the label with void set to background, then
    `transform(prediction)` if given. Returns `out_dir`."""
    for image_id in dataset.ids:
        pred = dataset.load_label(image_id).copy()
        pred[pred == VOID_LABEL] = 0
        if transform is not None:
            pred = transform(pred)
        write_label_png(out_dir / f"{image_id}.png", pred)
    return out_dir


@pytest.fixture
def perfect_predictions(voc_val: VOCDataset, tmp_path: Path) -> Path:
    """A folder of predictions equal to the ground truth of `voc_val` (void -> background)."""
    return write_predictions(voc_val, tmp_path / "predictions")


def truncate_file(path: Path, keep_fraction: float = 0.5) -> Path:
    """Cut a file to a fraction of its size (a download or copy interrupted half-way)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep_fraction))])
    return path
