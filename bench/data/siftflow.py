"""SIFT Flow: 33 semantic + 3 geometric classes, two heads on one image (docs/datasets.md).

Layout under DATA_ROOT/SiftFlow (REF siftflow_layers.py), SUB being the dataset's one folder
name: Images/SUB/<id>.jpg (256x256), SemanticLabels/SUB/<id>.mat and GeoLabels/SUB/<id>.mat,
both key `S`. Semantic: 0 = void, 1..33. Geometric: -1 = void, 1..3 (REF maps -1 to 0 and then
subtracts 1 in uint8, so a 0 is void as well). Splits trainval 2486 / test 200 (REF). The two
heads on one trunk: docs/fidelity.md "SIFT Flow".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import DataError
from bench.core.means import SIFTFLOW_MEAN, float32_mean
from bench.data.base import (
    SPLITS_DIR,
    Head,
    SegmentationSet,
    bgr_minus_mean,
    check_range,
    read_class_names,
    read_mat_array,
    resolve_split_list,
)
from bench.data.labels import VOID_LABEL
from bench.data.voc import load_image
from bench.evaluation.metrics import ConfusionMatrix, dataset_summary

NAME = "siftflow"
SUB = "spatial_envelope_256x256_static_8outdoorcategories"
SEMANTIC_CLASSES = read_class_names("siftflow_semantic.txt")  # REF data/sift-flow/classes.txt
GEOMETRIC_CLASSES = read_class_names("siftflow_geometric.txt")  # sky, horizontal, vertical
MEAN_BGR = float32_mean(SIFTFLOW_MEAN)  # REF, float32 (docs/fidelity.md "Means per data set")
ID_PATTERN = r"[a-z]+_[A-Za-z]*\d+"
PINS = {
    "trainval": (2486, "587d2b5f510e869c83c048f491db37aa63118f116594ce5b45addfc93b66524b"),
    "test": (200, "05cef92d019f81ce4b80a227bd68421248bf507b305e4ccb16432bf7bbab362e"),
}
SPLITS = tuple(PINS)
HEADS = (Head("semantic", SEMANTIC_CLASSES), Head("geometric", GEOMETRIC_CLASSES))


def siftflow_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "SiftFlow"


def _shift(raw: np.ndarray) -> np.ndarray:
    """1..C -> 0..C-1 and 0 -> 255: REF's uint8 `label -= 1`, written without wrap-around."""
    raw = raw.astype(np.int64)
    return np.where(raw <= 0, VOID_LABEL, raw - 1).astype(np.uint8)


class SiftFlow(SegmentationSet):
    """One input ("data", BGR minus the SIFT Flow mean) and two heads: semantic, geometric."""

    dataset = NAME
    heads = HEADS
    input_names = ("data",)

    def files(self, image_id: str) -> dict[str, Path]:
        return {"data": self.root / "Images" / SUB / f"{image_id}.jpg",
                "semantic": self.root / "SemanticLabels" / SUB / f"{image_id}.mat",
                "geometric": self.root / "GeoLabels" / SUB / f"{image_id}.mat"}

    def load_inputs(self, image_id: str) -> dict[str, np.ndarray]:
        return {"data": bgr_minus_mean(load_image(self.files(image_id)["data"]), MEAN_BGR)}

    def load_labels(self, image_id: str) -> dict[str, np.ndarray]:
        files = self.files(image_id)
        semantic = read_mat_array(files["semantic"], "S")
        check_range(semantic, files["semantic"], 0, len(SEMANTIC_CLASSES),
                    what="SIFT Flow semantic label")
        geometric = read_mat_array(files["geometric"], "S")
        check_range(geometric, files["geometric"], -1, len(GEOMETRIC_CLASSES),
                    what="SIFT Flow geometric label")
        if semantic.shape != geometric.shape:
            raise DataError(files["geometric"], f"shape {geometric.shape} differs from the "
                                                f"semantic label's {semantic.shape}")
        return {"semantic": _shift(semantic), "geometric": _shift(geometric)}

    def summarize(self, confusions: Mapping[str, ConfusionMatrix]) -> dict[str, Any]:
        """Semantic metrics with both mean IUs, and the geometric head's pixel accuracy."""
        metrics = dataset_summary(confusions, "semantic", notes=self.metric_notes(),
                                  present_only_iou=True)
        metrics["geometric_accuracy"] = metrics["heads"]["geometric"]["pixel_accuracy"]
        return metrics

    def metric_notes(self) -> list[str]:
        return [
            "semantic mean_iou is score.py's (a class absent from the test labels but predicted "
            "counts as IU 0); mean_iou_present averages only classes with ground-truth pixels, "
            "as CVPR 2015 Table 5 (footnote 10) does",
            "geometric_accuracy is the geometric head's pixel accuracy (CVPR 2015 Table 5 "
            "'geom. acc.')",
        ]


def open_siftflow(data_root: str | Path, split: str = "test", *, check_files: bool = True
                  ) -> SiftFlow:
    root = siftflow_dir(data_root)
    if not root.is_dir():
        raise DataError(root, "SIFT Flow folder not found; `python cli.py download siftflow` "
                              "fetches it")
    split_list = resolve_split_list(split, [root / f"{split}.txt"],
                                    SPLITS_DIR / f"siftflow_{split}.txt" if split in PINS
                                    else None, PINS, ID_PATTERN, "SIFT Flow")
    return SiftFlow(root, split_list, check_files=check_files)
