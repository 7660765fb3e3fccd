"""The data sets of the FCN papers beyond PASCAL VOC, behind one interface (docs/datasets.md).

`open_dataset(name, data_root, split)` returns a `SegmentationSet`: `ids`, `heads` (each with
its classes, ignore rule and scored classes), `load(id)` -> named inputs and per-head labels,
`load_labels(id)`, `confusions()` and `summarize(confusions)`. VOC keeps its own module
(bench/data/voc.py); `open_dataset("voc", ...)` is a thin view of it with the same interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core.errors import UsageError
from bench.data.base import Head, Sample, SegmentationSet, SplitList

DATASET_NAMES = ("voc", "nyud", "siftflow", "pascalcontext", "ade20k")
DEFAULT_SPLITS = {"voc": "seg11valid", "nyud": "test", "siftflow": "test",
                  "pascalcontext": "val", "ade20k": "validation"}


def open_dataset(name: str, data_root: str | Path, split: str | None = None, **options: Any
                 ) -> SegmentationSet:
    """A non-VOC data set by registry name; `options` go to its opener (e.g. NYUD `inputs`,
    ADE20K `input_size`, `check_files`)."""
    split = split or DEFAULT_SPLITS.get(name, "")
    if name == "voc":
        from bench.data.voc_set import open_voc

        return open_voc(data_root, split)
    if name == "nyud":
        from bench.data.nyud import open_nyud

        return open_nyud(data_root, split, **options)
    if name == "siftflow":
        from bench.data.siftflow import open_siftflow

        return open_siftflow(data_root, split, **options)
    if name == "pascalcontext":
        from bench.data.pascalcontext import open_pascalcontext

        return open_pascalcontext(data_root, split, **options)
    if name == "ade20k":
        from bench.data.ade20k import open_ade20k

        return open_ade20k(data_root, split, **options)
    raise UsageError(f"unknown data set {name!r}; choose from {', '.join(DATASET_NAMES)}")


__all__ = ["DATASET_NAMES", "DEFAULT_SPLITS", "Head", "Sample", "SegmentationSet", "SplitList",
           "open_dataset"]
