"""The contract every data set honours, and the safe readers they share (docs/datasets.md).

A data set here is a list of ids plus a way to turn one id into *named* model inputs (NCHW-ready
float32 arrays, preprocessed exactly as the reference data layer) and *named* label maps, one per
output head. The evaluation loop (bench/evaluation/runner.py, bench/cli/evaluate.py) needs nothing
else: it asks `heads` for the confusion matrices to keep, `load_labels` for the ground truth of each
head, and `summarize` for the data set's own metrics. Numpy, Pillow, scipy.io.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import DataError
from bench.data.labels import VOID_LABEL, describe_values, open_image
from bench.data.matfile import check_mat_inflated_size
from bench.evaluation.metrics import ConfusionMatrix, dataset_summary

PACKAGE_DIR = Path(__file__).resolve().parent
CLASSES_DIR = PACKAGE_DIR / "classes"
SPLITS_DIR = PACKAGE_DIR / "splits"

# A label .mat of a real data set is at most a few MB (640x480 doubles = 2.4 MB); refuse anything
# far larger before scipy allocates it (bounded memory on hostile files).
MAX_MAT_BYTES = 64 * 1024 * 1024
MAX_LABEL_PIXELS = 40_000_000


@dataclass(frozen=True)
class Head:
    """One scored output of a model: its classes, which label values are ignored, and which
    class indices enter the means (all by default; ADE20K leaves out 0 = "other")."""

    name: str
    class_names: tuple[str, ...]
    ignore_labels: tuple[int, ...] = (VOID_LABEL,)
    scored: tuple[int, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def confusion(self) -> ConfusionMatrix:
        return ConfusionMatrix(self.num_classes, self.class_names,
                               ignore_labels=self.ignore_labels, scored_classes=self.scored)


@dataclass(frozen=True)
class Sample:
    """One decoded id: `inputs` name -> float32 (C, H, W); `labels` head -> uint8 (H, W)."""

    id: str
    inputs: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitList:
    """The ids of a split, where they came from, and whether they are the published list."""

    name: str
    ids: tuple[str, ...]
    source: Path
    published: bool | None  # None: no published list to compare with


def read_class_names(filename: str) -> tuple[str, ...]:
    """Class names shipped with the project (copied from the reference repositories)."""
    path = CLASSES_DIR / filename
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip())


def canonical_sha256(ids: Sequence[str]) -> str:
    """SHA-256 of sorted distinct ids, one per line (same canonical form as bench.data.voc)."""
    text = "".join(f"{i}\n" for i in sorted(set(ids)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_split_file(path: Path, id_pattern: str, dataset: str) -> list[str]:
    """Ids of a split list, refusing one that belongs to another data set (ids of another form).

    Bounded: a split list of any of these data sets is < 1 MB; a larger file is not one.
    """
    if not path.is_file():
        raise DataError(path, "split list not found")
    if path.stat().st_size > 4 * 1024 * 1024:
        raise DataError(path, "split list is larger than 4 MB; not a list of image ids")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read split list: {error}") from error
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise DataError(path, "split list is empty")
    pattern = re.compile(id_pattern)
    bad = [i for i in ids if not pattern.fullmatch(i)]
    if bad:
        raise DataError(path, f"{len(bad)} of {len(ids)} lines are not {dataset} ids (e.g. "
                              f"{bad[0][:40]!r}); is this a split list of another data set?")
    return ids


def resolve_split_list(name: str, candidates: Sequence[Path], shipped: Path | None,
                       pins: Mapping[str, tuple[int, str]], id_pattern: str, dataset: str
                       ) -> SplitList:
    """A split by name (first existing candidate, else the copy shipped with the project) or by
    path; `published` says whether its ids are exactly the reference list (count and SHA-256)."""
    as_path = Path(name)
    if name not in pins and (as_path.suffix or "/" in name or as_path.is_file()):
        ids = read_split_file(as_path, id_pattern, dataset)
        return SplitList(as_path.stem, tuple(ids), as_path, None)
    if name not in pins:
        raise DataError(Path(name), f"unknown {dataset} split; choose {', '.join(pins)} or a "
                                    "path to a file of ids")
    found = next((path for path in candidates if path.is_file()), None)
    path = found or shipped
    if path is None:
        raise DataError(candidates[0], f"{dataset} split list '{name}' not found")
    ids = read_split_file(path, id_pattern, dataset)
    count, sha256 = pins[name]
    published = len(ids) == count and (not sha256 or canonical_sha256(ids) == sha256)
    return SplitList(name, tuple(ids), path, published)


def read_mat_array(path: Path, key: str, *, what: str = "label") -> np.ndarray:
    """One 2-D numeric array from a MATLAB v5 file, safely: size-bounded, no object arrays or
    pickles (`mat_dtype=False`, structs refused), every failure one DataError naming the file."""
    import scipy.io  # imported lazily: `cli.py --help` stays quick

    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a regular file")
    size = path.stat().st_size
    if size > MAX_MAT_BYTES:
        raise DataError(path, f"{what} file is {size:,} bytes; refusing more than "
                              f"{MAX_MAT_BYTES:,} (not a {what} map)")
    check_mat_inflated_size(path, what=f"a {what} file")
    try:
        # Headers first: a small compressed file may declare a huge array (a zlib bomb);
        # refuse it before anything is decompressed into memory.
        for name, shape, _ in scipy.io.whosmat(path):
            if name == key and (len(shape) != 2 or np.prod(shape, dtype=np.float64)
                                > MAX_LABEL_PIXELS):
                raise DataError(path, f"variable {key!r} declares shape {tuple(shape)}; not a "
                                      "label map")
        mat = scipy.io.loadmat(path, mat_dtype=False, squeeze_me=False,
                               variable_names=[key], verify_compressed_data_integrity=True)
    except NotImplementedError as error:  # v7.3 (HDF5) files
        raise DataError(path, f"cannot read MATLAB file: {error}") from error
    except (OSError, ValueError, TypeError, EOFError, KeyError, IndexError, AttributeError,
            MemoryError, OverflowError, UnicodeDecodeError, struct.error, zlib.error,
            scipy.io.matlab.MatReadError) as error:
        # MatReadError (truncated headers) is a plain Exception, not a ValueError.
        raise DataError(path, f"cannot read MATLAB file: {str(error)[:200]}") from error
    if key not in mat:
        raise DataError(path, f"no variable {key!r} in this MATLAB file (is it a {what} of "
                              "another data set?)")
    array = mat[key]
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf" or array.ndim != 2:
        kind = getattr(array, "dtype", type(array).__name__)
        raise DataError(path, f"variable {key!r} is {kind} with shape "
                              f"{getattr(array, 'shape', '?')}; expected a 2-D numeric map")
    if array.size > MAX_LABEL_PIXELS or 0 in array.shape:
        raise DataError(path, f"variable {key!r} has shape {array.shape}; not a label map")
    integral = np.all(np.isfinite(array)) and np.array_equal(array, np.rint(array))
    if array.dtype.kind == "f" and not integral:
        raise DataError(path, f"variable {key!r} holds non-integer values; expected label ids")
    return array


def check_range(values: np.ndarray, path: Path, low: int, high: int, *, what: str,
                also: Sequence[int] = ()) -> None:
    """DataError naming `path` if any value is outside low..high (and not in `also`)."""
    if values.size == 0:
        return
    if int(values.min()) >= low and int(values.max()) <= high:
        return
    present = np.unique(values)
    bad = present[((present < low) | (present > high)) & ~np.isin(present, list(also))]
    if bad.size:
        allowed = f"{low}-{high}" + "".join(f" and {v}" for v in also)
        raise DataError(path, f"{what} values outside {allowed}: "
                              f"{describe_values(bad.astype(np.int64))}")


def read_png_array(path: Path, *, modes: Sequence[str], what: str) -> np.ndarray:
    """Decode a PNG of one of `modes` as a numpy array (DataError naming it otherwise)."""
    image = open_image(path)
    if image.mode not in modes:
        raise DataError(path, f"{what} image has mode {image.mode!r}; expected "
                              f"{' or '.join(repr(m) for m in modes)}")
    return np.array(image)


def bgr_minus_mean(rgb: np.ndarray, mean_bgr: np.ndarray) -> np.ndarray:
    """REF data layers: float32 RGB -> BGR, minus a float32 mean, (3, H, W) contiguous
    (docs/fidelity.md "Means per data set")."""
    bgr = rgb.astype(np.float32)[:, :, ::-1]
    bgr = bgr - mean_bgr
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))


def describe_shape(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]} (WxH)"


class SegmentationSet:
    """Base of the data sets: ids, named inputs, one label map per head, checks and summaries.

    Subclasses set `dataset` (registry name), `heads`, `id_pattern`, and implement
    `files(id)` (every file an id needs: {role: path}), `load_inputs` and `load_labels`.
    """

    dataset: str = ""
    heads: tuple[Head, ...] = ()
    input_names: tuple[str, ...] = ()

    def __init__(self, root: Path, split: SplitList, *, check_files: bool = True):
        self.root = Path(root)
        self.split = split
        self.ids = list(split.ids)
        self.name = split.name
        self.source = split.source
        if check_files:
            self.check_files()

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Sample]:
        return (self.load(i) for i in self.ids)

    # -- what subclasses provide -----------------------------------------------------------------

    def files(self, image_id: str) -> dict[str, Path]:
        raise NotImplementedError

    def load_inputs(self, image_id: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def load_labels(self, image_id: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def download_hint(self) -> str:
        return f"`python cli.py download {self.dataset}`"

    # -- shared ----------------------------------------------------------------------------------

    def label_path(self, image_id: str) -> Path:
        """The first head's label file (what bench/evaluation/runner.py fingerprints for VOC)."""
        return self.files(image_id)[self.heads[0].name]

    def image_path(self, image_id: str) -> Path:
        """The first input file; `files(id)` lists every file an id needs."""
        heads = {head.name for head in self.heads}
        return next(path for role, path in self.files(image_id).items() if role not in heads)

    def load(self, image_id: str) -> Sample:
        """Inputs and labels of one id; DataError naming the label file if the sizes differ."""
        inputs = self.load_inputs(image_id)
        labels = self.load_labels(image_id)
        size = next(iter(inputs.values())).shape[1:]
        files = self.files(image_id)
        for head, label in labels.items():
            if label.shape != size:
                path = files.get(head, next(iter(files.values())))
                raise DataError(path, f"{head} label is {describe_shape(label.shape)} but the "
                                      f"image is {describe_shape(size)}")
        return Sample(image_id, inputs, labels)

    def confusions(self) -> dict[str, ConfusionMatrix]:
        """One empty confusion matrix per head, with the head's ignore and scoring rules."""
        return {head.name: head.confusion() for head in self.heads}

    def summarize(self, confusions: Mapping[str, ConfusionMatrix]) -> dict[str, Any]:
        """The data set's metrics: the first head's four metrics at the top level, every head's
        summary under `heads`, and the `notes` that say how the numbers are defined."""
        return dataset_summary(confusions, self.heads[0].name, notes=self.metric_notes())

    def metric_notes(self) -> list[str]:
        return []

    def check_files(self) -> None:
        """One DataError naming the first missing file, how many more, and the fix."""
        missing = [path for image_id in self.ids for path in self.files(image_id).values()
                   if not path.is_file()]
        if not missing:
            return
        absent = sorted({p.parent for p in missing if not p.parent.is_dir()})
        if absent:
            raise DataError(absent[0], f"folder not found (needed by {self.dataset} split "
                                       f"'{self.name}'); {self.download_hint()} fetches it")
        more = f"; {len(missing) - 1} more missing" if len(missing) > 1 else ""
        raise DataError(missing[0], f"file not found (id listed in {self.dataset} split "
                                    f"'{self.name}' from {self.source}){more}")
