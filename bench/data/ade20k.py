"""ADE20K / MIT Scene Parsing (ADEChallengeData2016), 150 classes (docs/datasets.md).

Layout under DATA_ROOT/ADEChallengeData2016 (CSAILVision/sceneparsing README):
images/{training,validation}/ADE_{train,val}_%08d.jpg and annotations/.../*.png holding 0..150,
0 = "other objects", ignored in scoring (evaluationCode/utils_eval.py). The split is the folder;
validation has 2000 images. Inputs are BGR minus the ADE mean at the image's own size; the
released CSAIL FCN was run at 384x384 (demoSegmentation.m), available via `input_size`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.core.errors import DataError
from bench.core.means import ADE_MEAN, float32_mean
from bench.data.base import (
    Head,
    Sample,
    SegmentationSet,
    SplitList,
    bgr_minus_mean,
    check_range,
    describe_shape,
    read_class_names,
    read_png_array,
)
from bench.data.voc import load_image
from bench.evaluation.metrics import ConfusionMatrix

NAME = "ade20k"
CLASSES = ("other", *read_class_names("ade20k_150.txt"))  # objectInfo150 first names
MEAN_BGR = float32_mean(ADE_MEAN)  # SP demoSegmentation.m (docs/fidelity.md "Means per data set")
FOLDERS = {"validation": ("validation", "ADE_val_", 2000), "training": ("training", "ADE_train_",
                                                                          20210)}
ALIASES = {"val": "validation", "train": "training"}
SPLITS = tuple(FOLDERS)
# 151 outputs (channel k = label k); 0 is ignored and left out of the means
# (docs/fidelity.md "ADE20K (MIT Scene Parsing)").
HEADS = (Head("semantic", CLASSES, ignore_labels=(0, 255), scored=tuple(range(1, 151))),)


def resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label map resized to (H, W) by nearest neighbour with pixel-centre alignment: output
    pixel i takes input floor((i + 0.5) * in / out), which is what MATLAB's
    `imresize(..., 'nearest')` computes (SP demoSegmentation.m resizes the 384x384 argmax back
    to the image's size this way). Integer arithmetic, so exact."""
    in_h, in_w = labels.shape
    out_h, out_w = shape
    rows = ((2 * np.arange(out_h) + 1) * in_h) // (2 * out_h)
    cols = ((2 * np.arange(out_w) + 1) * in_w) // (2 * out_w)
    return labels[rows[:, None], cols[None, :]]


def ade_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "ADEChallengeData2016"


class ADE20K(SegmentationSet):
    dataset = NAME
    heads = HEADS
    input_names = ("data",)

    def __init__(self, root: Path, split: SplitList, *, folder: str, input_size: int | None = None,
                 check_files: bool = True):
        self.folder = folder
        self.input_size = input_size
        super().__init__(root, split, check_files=check_files)

    def files(self, image_id: str) -> dict[str, Path]:
        return {"data": self.root / "images" / self.folder / f"{image_id}.jpg",
                "semantic": self.root / "annotations" / self.folder / f"{image_id}.png"}

    def load_inputs(self, image_id: str) -> dict[str, np.ndarray]:
        return {"data": bgr_minus_mean(self._rgb(image_id), MEAN_BGR)}

    def _rgb(self, image_id: str, labels: dict[str, np.ndarray] | None = None) -> np.ndarray:
        rgb = load_image(self.files(image_id)["data"])  # greyscale is replicated to 3 channels
        if labels is not None and labels["semantic"].shape != rgb.shape[:2]:
            raise DataError(self.files(image_id)["semantic"],
                            f"annotation is {describe_shape(labels['semantic'].shape)} but the "
                            f"image is {describe_shape(rgb.shape)}")
        if self.input_size:
            size = (self.input_size, self.input_size)
            rgb = np.array(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))
        return rgb

    def load(self, image_id: str) -> Sample:
        """The label keeps the image's own size (predictions are resized back, as SP's demo)."""
        labels = self.load_labels(image_id)
        rgb = self._rgb(image_id, labels)
        return Sample(image_id, {"data": bgr_minus_mean(rgb, MEAN_BGR)}, labels)

    def load_labels(self, image_id: str) -> dict[str, np.ndarray]:
        path = self.files(image_id)["semantic"]
        label = read_png_array(path, modes=("L", "P"), what="ADE20K annotation")
        check_range(label, path, 0, 150, what="ADE20K annotation")
        return {"semantic": label.astype(np.uint8)}

    def metric_notes(self) -> list[str]:
        return ["ADE20K: label 0 ('other objects') is ignored and left out of the means; pixel "
                "accuracy and mean IoU over the 150 classes as the Scene Parsing benchmark; "
                "benchmark score = their average"]

    def summarize(self, confusions: Mapping[str, ConfusionMatrix]) -> dict[str, Any]:
        """The four metrics over classes 1..150 and the benchmark score."""
        metrics = super().summarize(confusions)
        metrics["benchmark_score"] = (metrics["pixel_accuracy"] + metrics["mean_iou"]) / 2
        return metrics


def open_ade20k(data_root: str | Path, split: str = "validation", *,
                input_size: int | None = None, check_files: bool = True) -> ADE20K:
    root = ade_dir(data_root)
    split = ALIASES.get(split, split)
    if split not in FOLDERS:
        raise DataError(Path(split), f"unknown ADE20K split; choose {', '.join(FOLDERS)}")
    folder, prefix, count = FOLDERS[split]
    # The ids are the folder's files: the images', or the annotations' when only labels are
    # needed (scoring predictions without the images).
    listing, suffix = root / "images" / folder, ".jpg"
    if not listing.is_dir() and not check_files:
        listing, suffix = root / "annotations" / folder, ".png"
    if not listing.is_dir():
        raise DataError(listing, "folder not found; `python cli.py download ade20k` fetches it")
    ids = sorted(path.stem for path in listing.glob(f"{prefix}*{suffix}"))
    if not ids:
        raise DataError(listing, f"no {prefix}*{suffix} files")
    split_list = SplitList(split, tuple(ids), listing, len(ids) == count)
    return ADE20K(root, split_list, folder=folder, input_size=input_size,
                  check_files=check_files)
