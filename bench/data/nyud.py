"""NYUDv2, 40 classes (Gupta et al.), in the FCN repack: colour, HHA and depth (docs/datasets.md).

Layout under DATA_ROOT/nyud (REF nyud_layers.py): data/images/img_<id>.png (RGB),
data/depth/img_<id>.png (depth, log taken), data/hha/img_<id>.png (HHA, no channel flip),
segmentation/img_<id>.mat (key `segmentation`, 0 = void, 1..40 = classes), <split>.txt.
Splits train 381, val 414, test 654 (REF data/nyud/); trainval = train + val (REF has no file).
The inputs, their means and the early-fusion order: docs/fidelity.md "NYUDv2".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bench.core.errors import DataError, UsageError
from bench.core.means import NYUD_COLOR_MEAN, NYUD_HHA_MEAN, NYUD_LOG_DEPTH_MEAN, float32_mean
from bench.data.base import (
    SPLITS_DIR,
    Head,
    SegmentationSet,
    SplitList,
    bgr_minus_mean,
    check_range,
    read_class_names,
    read_mat_array,
    read_png_array,
    resolve_split_list,
)
from bench.data.labels import VOID_LABEL

NAME = "nyud"
CLASSES = read_class_names("nyud.txt")  # REF data/nyud/classes.txt, output order
# REF nyud_layers.py keeps its means as float32 arrays; the subtraction happens in float32
# (docs/fidelity.md "Means per data set").
MEAN_COLOR_BGR = float32_mean(NYUD_COLOR_MEAN)
MEAN_HHA = float32_mean(NYUD_HHA_MEAN)  # file channel order
MEAN_LOG_DEPTH = float32_mean(NYUD_LOG_DEPTH_MEAN)
ID_PATTERN = r"\d{1,6}"
# Published lists (REF data/nyud/*.txt at 1305c73): count and SHA-256 of the canonical text.
PINS = {
    "train": (381, "2aa7e4beb40682604d7457b636d20b9210ce55460f24c4f20cb3765bee35f794"),
    "val": (414, "cd278b1232fe5c2347994a9a3c13cd916aa2e72def51b9698993a2e8936797f5"),
    "test": (654, "3cabba2c952d83ca4e44e4070771c666a28e41e129d7b3033839c4f9a808b426"),
}
SPLITS = ("train", "val", "test", "trainval")
# What a model may ask for: REF data-layer tops, plus the early-fusion 4-channel array.
INPUTS = ("color", "hha", "depth", "color_depth")
# The zoo catalogue's input kinds (bench/model/zoo.py InputInfo.kind) -> the source above.
KINDS = {"bgr": "color", "hha": "hha", "logd": "depth", "bgrd": "color_depth"}
HEADS = (Head("semantic", CLASSES),)


def nyud_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "nyud"


def resolve_nyud_split(root: Path, split: str) -> SplitList:
    """A NYUD split; trainval is the union of train and val (795 ids, CVPR §5)."""
    if split == "trainval":
        parts = [resolve_nyud_split(root, part) for part in ("train", "val")]
        ids = tuple(sorted({i for part in parts for i in part.ids}, key=int))
        published = all(part.published for part in parts)
        return SplitList("trainval", ids, parts[0].source.parent, published)
    return resolve_split_list(split, [root / f"{split}.txt"], SPLITS_DIR / f"nyud_{split}.txt"
                              if split in PINS else None, PINS, ID_PATTERN, "NYUDv2")


class NYUDv2(SegmentationSet):
    """NYUDv2 with the named inputs a model needs.

    `inputs` is a tuple of sources (("color", "hha"): blobs named after them) or a mapping
    blob name -> source or zoo input kind ({"data": "hha"}, {"color": "bgr", "depth": "logd"}),
    so a model's own blob names come back as the keys of `Sample.inputs`.
    """

    dataset = NAME
    heads = HEADS

    def __init__(self, root: Path, split: SplitList, *,
                 inputs: tuple[str, ...] | Mapping[str, str] = ("color",),
                 check_files: bool = True):
        blobs = dict(inputs) if isinstance(inputs, Mapping) else {name: name for name in inputs}
        sources = {blob: KINDS.get(kind, kind) for blob, kind in blobs.items()}
        unknown = [kind for kind in sources.values() if kind not in INPUTS]
        if unknown or not sources:
            raise UsageError(f"unknown NYUDv2 input {unknown[0] if unknown else '(none)'!r}; "
                             f"choose from {', '.join(INPUTS)} or kinds {', '.join(KINDS)}")
        self.sources = sources
        self.input_names = tuple(sources)
        super().__init__(root, split, check_files=check_files)

    def _path(self, folder: str, image_id: str, suffix: str = ".png") -> Path:
        return self.root / folder / f"img_{image_id}{suffix}"

    def files(self, image_id: str) -> dict[str, Path]:
        needed = {"semantic": self._path("segmentation", image_id, ".mat")}
        wanted = set(self.sources.values())
        if wanted & {"color", "color_depth"}:
            needed["color"] = self._path("data/images", image_id)
        if wanted & {"depth", "color_depth"}:
            needed["depth"] = self._path("data/depth", image_id)
        if "hha" in wanted:
            needed["hha"] = self._path("data/hha", image_id)
        return needed

    def load_color(self, image_id: str) -> np.ndarray:
        path = self._path("data/images", image_id)
        return bgr_minus_mean(read_png_array(path, modes=("RGB",), what="colour"),
                              MEAN_COLOR_BGR)

    def load_hha(self, image_id: str) -> np.ndarray:
        """HHA minus its mean in the PNG's own channel order (REF flips nothing here)."""
        path = self._path("data/hha", image_id)
        hha = read_png_array(path, modes=("RGB",), what="HHA").astype(np.float32)
        hha -= MEAN_HHA
        return np.ascontiguousarray(hha.transpose(2, 0, 1))

    def load_depth(self, image_id: str) -> np.ndarray:
        """ln(depth) - 7.844, (1, H, W). A zero depth has no logarithm: refused, not -inf."""
        path = self._path("data/depth", image_id)
        depth = read_png_array(path, modes=("I;16", "I;16B", "I;16L", "I", "L"),
                               what="depth").astype(np.float32)
        if depth.size and depth.min() <= 0:
            raise DataError(path, f"{int((depth <= 0).sum())} depth pixels are 0 or negative; "
                                  "log-depth is undefined there (holes must be filled)")
        log_depth = np.log(depth)
        log_depth -= MEAN_LOG_DEPTH
        return log_depth[np.newaxis]

    def load_inputs(self, image_id: str) -> dict[str, np.ndarray]:
        inputs: dict[str, np.ndarray] = {}
        for name, source in self.sources.items():
            if source == "color":
                inputs[name] = self.load_color(image_id)
            elif source == "hha":
                inputs[name] = self.load_hha(image_id)
            elif source == "depth":
                inputs[name] = self.load_depth(image_id)
            else:  # B, G, R, log-depth: REF Concat(color, depth) (docs/fidelity.md "NYUDv2")
                inputs[name] = np.concatenate([self.load_color(image_id),
                                               self.load_depth(image_id)])
        shapes = {name: array.shape[1:] for name, array in inputs.items()}
        if len(set(shapes.values())) > 1:
            raise DataError(self._path("data", image_id, ""),
                            f"inputs of different sizes for id {image_id}: {shapes}")
        return inputs

    def load_labels(self, image_id: str) -> dict[str, np.ndarray]:
        """0 (void) -> 255 and 1..40 -> 0..39, REF's uint8 `label -= 1` made explicit."""
        path = self._path("segmentation", image_id, ".mat")
        raw = read_mat_array(path, "segmentation")
        check_range(raw, path, 0, len(CLASSES), what="NYUDv2 label")
        raw = raw.astype(np.int64)
        label = np.where(raw == 0, VOID_LABEL, raw - 1).astype(np.uint8)
        return {"semantic": label}

    def metric_notes(self) -> list[str]:
        return ["NYUDv2 40 classes (Gupta et al.); void (label 0) ignored; score.py metrics"]


def open_nyud(data_root: str | Path, split: str = "test", *,
              inputs: tuple[str, ...] | Mapping[str, str] = ("color",),
              check_files: bool = True) -> NYUDv2:
    root = nyud_dir(data_root)
    if not root.is_dir():
        raise DataError(root, "NYUDv2 folder not found; `python cli.py download nyud` fetches "
                              "it (or `python cli.py demo` writes a synthetic one)")
    return NYUDv2(root, resolve_nyud_split(root, split), inputs=inputs, check_files=check_files)

