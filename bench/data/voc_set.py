"""PASCAL VOC behind the common interface: a thin view of bench/data/voc.py (which stays the owner
of VOC's layouts, split lists, seg11valid and preprocessing), so one evaluation loop serves every
data set. Input "data" (BGR minus the ILSVRC mean, float64 subtraction as REF voc_layers.py;
docs/fidelity.md "Means per data set"), head "semantic" (21 classes, void 255)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.base import Head, SegmentationSet, SplitList
from bench.data.labels import VOC_CLASSES
from bench.data.voc import SEG11VALID, VOCDataset, load_image, preprocess, resolve_split

HEADS = (Head("semantic", VOC_CLASSES),)


class VOCSet(SegmentationSet):
    dataset = "voc"
    heads = HEADS
    input_names = ("data",)

    def __init__(self, voc: VOCDataset, published: bool | None):
        self.voc = voc
        split = SplitList(voc.name, tuple(voc.ids), voc.source, published)
        super().__init__(voc.voc_dir, split, check_files=False)  # resolve_split checked them

    def files(self, image_id: str) -> dict[str, Path]:
        return {"data": self.voc.image_path(image_id), "semantic": self.voc.label_path(image_id)}

    def load_inputs(self, image_id: str) -> dict[str, np.ndarray]:
        return {"data": preprocess(load_image(self.voc.image_path(image_id)))}

    def load_labels(self, image_id: str) -> dict[str, np.ndarray]:
        return {"semantic": self.voc.load_label(image_id)}

    def download_hint(self) -> str:
        return self.voc.download_hint()[1]


def open_voc(data_root: str | Path, split: str = SEG11VALID) -> VOCSet:
    """VOC through bench.data.voc.resolve_split; seg11valid is validated there (count + SHA-256)."""
    voc = resolve_split(data_root, split)
    return VOCSet(voc, True if split == SEG11VALID else None)
