"""PASCAL-Context, the 59-class task + background = 60 outputs (docs/datasets.md).

Images are VOC2010's (DATA_ROOT/VOCdevkit/VOC2010/JPEGImages, split lists from ImageSets/Main);
labels are DATA_ROOT/pascal-context/trainval/<id>.mat, key `LabelMap`, raw ids 1..459 (REF
pascalcontext_layers.py). Raw ids are mapped to 1..59 by class *name* (three names renamed);
everything else, including 0, is background 0, which is trained and scored as a class
(docs/fidelity.md "PASCAL-Context").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bench.core.errors import DataError
from bench.core.means import CONTEXT_MEAN, float32_mean
from bench.data.base import (
    CLASSES_DIR,
    Head,
    SegmentationSet,
    SplitList,
    bgr_minus_mean,
    check_range,
    read_mat_array,
    resolve_split_list,
)
from bench.data.voc import load_image

NAME = "pascalcontext"
NUM_RAW = 459
# The 59-class task's names as the task lists them -> the same class in the 459-label list.
RENAMED = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}
MEAN_BGR = float32_mean(CONTEXT_MEAN)  # REF, float32 (docs/fidelity.md "Means per data set")
ID_PATTERN = r"\d{4}_\d{6}"
# VOC2010 ImageSets/Main: val 5105 ids (REF val solver test_iter), train 4998. No published
# checksum of the lists, so only the count is pinned.
PINS = {"val": (5105, ""), "train": (4998, "")}
SPLITS = tuple(PINS)


def _numbered_names(path: Path) -> dict[int, str]:
    """{id: name without spaces} from 'id: name' lines (REF strips the spaces the same way)."""
    names = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(.+?)\s*", line)
        if match is None:
            raise DataError(path, f"line {number} is not 'id: name'")
        names[int(match.group(1))] = match.group(2).replace(" ", "")
    return names


RAW_NAMES = _numbered_names(CLASSES_DIR / "pascalcontext_459.txt")  # REF classes-400.txt
TASK_NAMES = _numbered_names(CLASSES_DIR / "pascalcontext_59.txt")  # REF classes-59.txt
CLASSES = tuple(TASK_NAMES[k] for k in sorted(TASK_NAMES))  # background first: 60 outputs


def raw_to_task_table(raw_names: dict[int, str] | None = None) -> np.ndarray:
    """(460,) uint8 lookup raw id -> 0..59: each task class takes the raw id whose name matches
    (after the three renames); every other id is background 0. Derived, never typed in.
    REF pascalcontext_layers.py `load_label`; docs/fidelity.md "PASCAL-Context"."""
    raw_names = RAW_NAMES if raw_names is None else raw_names
    by_name = {name: number for number, name in raw_names.items()}
    table = np.zeros(NUM_RAW + 1, dtype=np.uint8)
    for out, name in enumerate(CLASSES[1:], start=1):
        table[by_name[RENAMED.get(name, name)]] = out
    return table


RAW_TO_TASK = raw_to_task_table()
HEADS = (Head("semantic", CLASSES, ignore_labels=()),)


def context_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "pascal-context"


class PascalContext(SegmentationSet):
    """VOC2010 images with Context labels mapped to the 59-class task (+ background)."""

    dataset = NAME
    heads = HEADS
    input_names = ("data",)

    def __init__(self, root: Path, split: SplitList, *, voc2010: Path, check_files: bool = True):
        self.voc2010 = voc2010
        super().__init__(root, split, check_files=check_files)
        self._check_label_names()

    def _check_label_names(self) -> None:
        """If the data set's own labels.txt is there, it must list the names the map uses."""
        path = self.root / "labels.txt"
        if path.is_file():
            found = _numbered_names(path)
            if found != RAW_NAMES:
                differ = sorted(k for k in set(found) | set(RAW_NAMES)
                                if found.get(k) != RAW_NAMES.get(k))
                raise DataError(path, f"label names differ from the 459 PASCAL-Context labels "
                                      f"at ids {differ[:5]}; the 59-class mapping would be wrong")

    def files(self, image_id: str) -> dict[str, Path]:
        return {"data": self.voc2010 / "JPEGImages" / f"{image_id}.jpg",
                "semantic": self.root / "trainval" / f"{image_id}.mat"}

    def load_inputs(self, image_id: str) -> dict[str, np.ndarray]:
        return {"data": bgr_minus_mean(load_image(self.files(image_id)["data"]), MEAN_BGR)}

    def load_labels(self, image_id: str) -> dict[str, np.ndarray]:
        path = self.files(image_id)["semantic"]
        raw = read_mat_array(path, "LabelMap")
        check_range(raw, path, 0, NUM_RAW, what="PASCAL-Context raw label")
        return {"semantic": RAW_TO_TASK[raw.astype(np.intp)]}

    def metric_notes(self) -> list[str]:
        return ["PASCAL-Context: background (index 0) is counted as a 60th class in every mean, "
                "as REF score.py does; whether CVPR 2015 Table 6's '59 class' numbers include it "
                "is not stated"]


def open_pascalcontext(data_root: str | Path, split: str = "val", *, check_files: bool = True
                       ) -> PascalContext:
    data_root = Path(data_root)
    root, voc2010 = context_dir(data_root), data_root / "VOCdevkit" / "VOC2010"
    for folder, name in ((root, "pascalcontext"), (voc2010, "voc2010")):
        if not folder.is_dir():
            raise DataError(folder, f"folder not found; `python cli.py download {name}` "
                                    "fetches it")
    split_list = resolve_split_list(split, [voc2010 / "ImageSets" / "Main" / f"{split}.txt"],
                                    None, PINS, ID_PATTERN, "PASCAL-Context")
    return PascalContext(root, split_list, voc2010=voc2010, check_files=check_files)
