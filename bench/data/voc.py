"""PASCAL VOC and SBD on disk: layouts, seg11valid, decoding, REF preprocessing, the splits.

Data root layout (what `python cli.py download ...` produces):
    DATA_ROOT/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}
    DATA_ROOT/VOCdevkit/VOC2011/...            (same layout; VOC2011 images are a subset of 2012)
    DATA_ROOT/benchmark_RELEASE/dataset/{img,cls,cls_png,train.txt,val.txt}   (SBD)
    DATA_ROOT/splits/seg11valid.txt            (the 736-image validation list, cached)

Split lists are read by bench.data.id_lists, samples prefetched by bench.data.prefetch; fetching
seg11valid is the downloader's job (bench.downloads.provision). numpy, Pillow and scipy.io only.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import DataError, UsageError, not_a_file
from bench.core.means import MEAN_BGR
from bench.data.id_lists import id_list_sha256, read_id_list, write_id_list
from bench.data.labels import (
    NUM_CLASSES,
    check_label_values,
    open_image,
    read_label_png,
    write_label_png,
)
from bench.data.matfile import check_mat_inflated_size

# Re-exported for bench/train/loop.py and bench/cli/evaluate.py until they import it from its home.

SPLIT_SUBDIR = Path("ImageSets", "Segmentation")
VOC_SPLITS = ("train", "val", "trainval")      # devkit lists, read from VOC2012
SBD_SPLITS = ("train", "val")

# seg11valid: VOC2011 segmentation val minus every SBD train image (CVPR footnote 7); all the
# paper's and REF's validation numbers are on it. Pinned by count and checksum of the canonical
# file (one id per line, sorted, final newline).
SEG11VALID = "seg11valid"
SEG11VALID_COUNT = 736
SEG11VALID_FIRST, SEG11VALID_LAST = "2007_000033", "2011_003271"
SEG11VALID_SHA256 = "4ca991bd72c251fd2485eaa9e29536502ea3800d1b1c17c151fd6a04bcfbc2cc"
SEG11VALID_URL = ("https://raw.githubusercontent.com/shelhamer/fcn.berkeleyvision.org/master/"
                  "data/pascal/seg11valid.txt")

# SBD's cls/*.mat files are 5-60 KB; a label file this large is not one (its decompressed
# arrays are what costs memory, see docs/security.md).
MAX_MAT_BYTES = 16 * 2**20
_MISSING_LISTED = 3  # how many missing files an error message spells out


# -- paths --------------------------------------------------------------------------------------

def voc_dir(data_root: str | Path, year: str = "2012") -> Path:
    return Path(data_root) / "VOCdevkit" / f"VOC{year}"


def sbd_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "benchmark_RELEASE" / "dataset"


def seg11valid_cache_path(data_root: str | Path) -> Path:
    return Path(data_root) / "splits" / f"{SEG11VALID}.txt"


# Where a user without the data is pointed when no split can be read (README "Try it without
# downloads"): the demo tree has every list but seg11valid, whose checksum it cannot match.
_DEMO_HINT = ("to try without downloads: `python cli.py demo --data-root demo`, then "
              "`--data-root demo --split val`")


def _download_hint(*names: str) -> str:
    return " and ".join(f"`python cli.py download {name}`" for name in names)


# -- seg11valid ---------------------------------------------------------------------------------

def derive_seg11valid_ids(voc2011_val_ids: Iterable[str], sbd_train_ids: Iterable[str]
                          ) -> list[str]:
    """VOC2011 segmentation val minus SBD train, sorted: the definition of seg11valid."""
    return sorted(set(voc2011_val_ids) - set(sbd_train_ids))


def validate_id_list(ids: Sequence[str], source: str | Path, *, name: str, count: int,
                     sha256: str, fix: str) -> None:
    """Refuse a list whose size or canonical checksum differs from the pinned reference."""
    if len(ids) != count:
        raise DataError(source, f"{name} list has {len(ids)} ids, expected {count}; {fix}")
    digest = id_list_sha256(ids)
    if digest != sha256:
        raise DataError(source, f"{name} list has the right size but sha256 {digest[:12]}... "
                                f"differs from the reference {sha256[:12]}...; {fix}")


def validate_seg11valid(ids: Sequence[str], source: str | Path) -> None:
    """The real check applied before any seg11valid evaluation: 736 ids, pinned SHA-256."""
    validate_id_list(ids, source, name=SEG11VALID, count=SEG11VALID_COUNT,
                     sha256=SEG11VALID_SHA256,
                     fix=f"delete it and run {_download_hint(SEG11VALID)}")


def seg11valid_ids(data_root: str | Path) -> list[str]:
    """The validated seg11valid ids, from a cached list or derived from VOC2011 val and SBD train.

    Never touches the network: bench.downloads.provision.download_seg11valid (the `download
    seg11valid` command) does.
    A derived list is cached under DATA_ROOT/splits/ after it passed validation.
    """
    data_root = Path(data_root)
    cache = seg11valid_cache_path(data_root)
    # REF's val layer reads the list from the VOC2011 split folder: accept a copy there too.
    for candidate in (cache, voc_dir(data_root, "2011") / SPLIT_SUBDIR / f"{SEG11VALID}.txt"):
        if candidate.is_file():
            ids = read_id_list(candidate)
            validate_seg11valid(ids, candidate)
            return sorted(ids)

    val_list = voc_dir(data_root, "2011") / SPLIT_SUBDIR / "val.txt"
    sbd_train = sbd_dir(data_root) / "train.txt"
    if val_list.is_file() and sbd_train.is_file():
        ids = derive_seg11valid_ids(read_id_list(val_list), read_id_list(sbd_train))
        validate_id_list(ids, val_list, name=f"{SEG11VALID} (derived: this val list minus "
                         f"{sbd_train})", count=SEG11VALID_COUNT, sha256=SEG11VALID_SHA256,
                         fix=f"check both lists are the originals, or run "
                             f"{_download_hint(SEG11VALID)}")
        write_id_list(cache, ids)
        return ids

    missing = [f"{path} (from {_download_hint(name)})"
               for path, name in ((val_list, "voc2011"), (sbd_train, "sbd"))
               if not path.is_file()]
    raise DataError(cache, f"{SEG11VALID} list not found and cannot be derived: missing "
                           f"{' and '.join(missing)}; or fetch the list alone with "
                           f"{_download_hint(SEG11VALID)} (its images still come from voc2011 "
                           f"or voc2012); {_DEMO_HINT}")


# -- decoding and preprocessing ------------------------------------------------------------------

# 8-bit colour modes a photo may come in (converted to RGB). 16/32-bit integer and float modes
# ("I", "I;16", "F") hold depth maps or measurements: converting them clips silently.
PHOTO_MODES = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "L", "LA", "La", "P", "PA", "1", "CMYK",
                         "YCbCr", "LAB", "HSV"})


def check_photo_mode(image, path: str | Path) -> None:
    """Refuse an image that is not 8 bits per channel in a colour mode PIL converts to RGB."""
    if image.mode not in PHOTO_MODES:
        raise DataError(path, f"image has mode {image.mode!r} (16/32-bit integer or float "
                              f"samples, like a depth map); a photo must be 8-bit RGB, "
                              f"greyscale or palette")


def load_image(path: str | Path) -> np.ndarray:
    """Decode a JPEG/PNG photo as (H, W, 3) uint8 RGB; DataError naming the file on any failure."""
    image = open_image(path)
    check_photo_mode(image, path)
    if image.mode != "RGB":  # a few photos are greyscale/CMYK; colour conversion is right here
        image = image.convert("RGB")
    return np.array(image)  # writable (asarray of a PIL image is read-only)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """REF voc_layers.py exactly: RGB uint8 (H, W, 3) -> float32 BGR minus MEAN_BGR, (3, H, W).

    0-255 scale, no resizing, cropping, padding or flipping (the net is reshaped per image).
    The mean and its float64 subtraction: docs/fidelity.md "Means per data set".
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    bgr = rgb[:, :, ::-1].astype(np.float32)  # copy, 0-255
    bgr -= MEAN_BGR                           # computed in float64, rounded once (as REF)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))


def read_sbd_mat(path: str | Path, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """SBD `cls/<id>.mat` -> (H, W) uint8 from struct GTcls, field Segmentation (no pickle)."""
    import scipy.io  # ~0.3 s to import; only SBD needs it, so `cli.py` stays quick to start

    path = Path(path)
    if not path.is_file():
        raise DataError(path, not_a_file(path))
    if path.stat().st_size > MAX_MAT_BYTES:
        raise DataError(path, f"{path.stat().st_size / 2**20:.0f} MiB is too large for an SBD "
                              f"label file (they are under 100 KB; limit "
                              f"{MAX_MAT_BYTES // 2**20} MiB)")
    check_mat_inflated_size(path)
    try:
        mat = scipy.io.loadmat(path, simplify_cells=True)
        labels = np.asarray(mat["GTcls"]["Segmentation"])
    except (KeyError, TypeError, IndexError) as error:
        raise DataError(path, "not an SBD class label file (no GTcls.Segmentation)") from error
    except (OSError, ValueError, NotImplementedError, EOFError, OverflowError, AttributeError,
            UnicodeDecodeError, struct.error, zlib.error, MemoryError,
            scipy.io.matlab.MatReadError) as error:
        # scipy's MatReadError (a plain Exception) covers truncated headers; v7.3 (HDF5) files
        # raise NotImplementedError;
        # a corrupt header surfaces as struct/zlib/overflow errors from inside scipy.
        raise DataError(path, f"cannot read MATLAB file: {str(error)[:200]}") from error
    if labels.ndim != 2:
        raise DataError(path, f"GTcls.Segmentation has shape {labels.shape}, expected (H, W)")
    check_label_values(labels, path, num_classes)
    return labels.astype(np.uint8)


def convert_sbd_labels(dataset_dir: str | Path, *, progress: bool = False) -> int:
    """Write every `cls/<id>.mat` once as an index PNG in `cls_png/` so later runs read PNGs.

    Skips labels already converted; each PNG is written atomically, so an interrupted conversion
    resumes cleanly. Returns how many files were written.
    """
    dataset_dir = Path(dataset_dir)
    mat_dir = dataset_dir / "cls"
    if not mat_dir.is_dir():
        raise DataError(mat_dir, "SBD class labels folder not found; run "
                                 f"{_download_hint('sbd')}")
    mat_paths = sorted(mat_dir.glob("*.mat"))
    if not mat_paths:
        raise DataError(mat_dir, "no .mat label files in the SBD class labels folder")
    if progress:
        from tqdm import tqdm

        mat_paths = tqdm(mat_paths, desc="SBD labels -> PNG", unit="file")
    written = 0
    for mat_path in mat_paths:
        png_path = dataset_dir / "cls_png" / f"{mat_path.stem}.png"
        if not png_path.exists():
            write_label_png(png_path, read_sbd_mat(mat_path))
            written += 1
    return written


# -- datasets -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """A decoded example: `image` float32 (3, H, W) preprocessed; `label` uint8 (H, W), 255 void."""

    id: str
    image: np.ndarray
    label: np.ndarray


class _SegmentationDataset:
    """Shared loading and checks; subclasses say where an id's image and label live."""

    name: str

    def __init__(self, ids: Sequence[str], source: str | Path, *, check_files: bool = True):
        self.ids = list(ids)
        self.source = Path(source)
        if not self.ids:
            raise DataError(self.source, f"split '{self.name}' is empty (no image ids)")
        if check_files:
            self.check_files()

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Sample]:
        return (self.load(image_id) for image_id in self.ids)

    def image_path(self, image_id: str) -> Path:
        raise NotImplementedError

    def label_path(self, image_id: str) -> Path:
        raise NotImplementedError

    def load_label(self, image_id: str) -> np.ndarray:
        """(H, W) uint8 class indices, 255 void, validated."""
        return read_label_png(self.label_path(image_id))

    def load(self, image_id: str) -> Sample:
        """Decode and preprocess one id; DataError naming both files if their sizes differ."""
        image_path = self.image_path(image_id)
        rgb = load_image(image_path)
        label = self.load_label(image_id)
        if rgb.shape[:2] != label.shape:
            raise DataError(self.label_path(image_id),
                            f"label is {describe_size(label.shape)} but image {image_path} is "
                            f"{describe_size(rgb.shape)}")
        return Sample(image_id, preprocess(rgb), label)

    def download_hint(self) -> tuple[Path, str]:
        """(the dataset's folder, the command that creates it), for error messages."""
        raise NotImplementedError

    def check_files(self) -> None:
        """One DataError naming the first missing image/label and how many others are missing
        (or the missing folder, when a whole one is absent), with the command that fetches it."""
        missing = [path for image_id in self.ids
                   for path in (self.image_path(image_id), self.label_path(image_id))
                   if not path.is_file()]
        if not missing:
            return
        folder, command = self.download_hint()
        folders = [path for path in missing if path.is_dir()]
        if folders:
            raise DataError(folders[0], f"is a folder, expected a file (listed in split "
                                        f"'{self.name}' from {self.source})")
        absent_folders = sorted({path.parent for path in missing if not path.parent.is_dir()})
        if absent_folders:
            raise DataError(absent_folders[0], f"folder not found (needed by split '{self.name}'"
                                               f" from {self.source}); {command} fetches it")
        more = more_missing(missing)
        # `download` leaves a folder it finds complete alone: a damaged one must go first.
        raise DataError(missing[0], f"{not_a_file(missing[0])} (listed in split '{self.name}' from "
                                    f"{self.source}){more}; if {folder} is damaged, remove it "
                                    f"and run {command}")


def describe_size(shape: tuple[int, ...]) -> str:
    """'500x375 (WxH)' of an (H, W, ...) array shape, for size-mismatch messages."""
    return f"{shape[1]}x{shape[0]} (WxH)"


def more_missing(missing: Sequence[Path], *, names_only: bool = False) -> str:
    """'; 4 more missing, e.g. a, b, c' about the files after the first ('' if it is alone)."""
    if len(missing) < 2:
        return ""
    shown = ", ".join(p.name if names_only else str(p) for p in missing[1:1 + _MISSING_LISTED])
    return f"; {len(missing) - 1} more missing, e.g. {shown}"


class VOCDataset(_SegmentationDataset):
    """Ids of a VOC20xx devkit folder: JPEGImages/<id>.jpg and SegmentationClass/<id>.png."""

    def __init__(self, voc_dir: str | Path, ids: Sequence[str], *, name: str = "custom",
                 source: str | Path | None = None, check_files: bool = True):
        self.voc_dir = Path(voc_dir)
        self.name = name
        super().__init__(ids, source if source is not None else self.voc_dir,
                         check_files=check_files)

    def download_hint(self) -> tuple[Path, str]:
        name = self.voc_dir.name.lower()  # VOC2011 -> `download voc2011`
        return self.voc_dir, _download_hint(name if name in ("voc2011", "voc2012") else "voc2012")

    def image_path(self, image_id: str) -> Path:
        return self.voc_dir / "JPEGImages" / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        return self.voc_dir / "SegmentationClass" / f"{image_id}.png"


class SBDDataset(_SegmentationDataset):
    """SBD `dataset/` folder: img/<id>.jpg, labels from cls_png/<id>.png when converted, else
    cls/<id>.mat. `split` is "train", "val" or a path to an id list."""

    def __init__(self, sbd_dataset_dir: str | Path, split: str = "train", *,
                 check_files: bool = True):
        self.dataset_dir = Path(sbd_dataset_dir)
        list_path = (self.dataset_dir / f"{split}.txt" if split in SBD_SPLITS else Path(split))
        if split in SBD_SPLITS and not list_path.is_file():
            raise DataError(list_path, f"SBD split list not found; run {_download_hint('sbd')}")
        self.name = f"sbd-{split}" if split in SBD_SPLITS else str(split)
        super().__init__(read_id_list(list_path), list_path, check_files=check_files)

    def download_hint(self) -> tuple[Path, str]:
        return self.dataset_dir.parent, _download_hint("sbd")

    def image_path(self, image_id: str) -> Path:
        return self.dataset_dir / "img" / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        png = self.dataset_dir / "cls_png" / f"{image_id}.png"
        return png if png.is_file() else self.dataset_dir / "cls" / f"{image_id}.mat"

    def load_label(self, image_id: str) -> np.ndarray:
        path = self.label_path(image_id)
        return read_label_png(path) if path.suffix == ".png" else read_sbd_mat(path)


# -- splits ---------------------------------------------------------------------------------------

def _has_voc_tree(path: Path) -> bool:
    return (path / "JPEGImages").is_dir() and (path / "SegmentationClass").is_dir()


def resolve_split(data_root: str | Path, split: str) -> VOCDataset:
    """A checked VOCDataset for "seg11valid", a devkit list ("train", "val", "trainval", read from
    VOC2012) or a path to any id list (images from VOC2012, else VOC2011).

    seg11valid images come from VOC2011 when present, else VOC2012 (VOC2011 is a subset; the
    reference ports read VOC2012 and reproduce the published scores).
    """
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DataError(data_root, "data root not found (create it with "
                                   f"{_download_hint('voc2012')}); {_DEMO_HINT}")
    voc2011, voc2012 = voc_dir(data_root, "2011"), voc_dir(data_root, "2012")

    if split == SEG11VALID:
        ids = seg11valid_ids(data_root)
        tree = voc2011 if _has_voc_tree(voc2011) else voc2012
        if not _has_voc_tree(tree):
            raise DataError(voc2012, f"no VOC images for {SEG11VALID}: neither {voc2011} nor "
                                     f"this folder has JPEGImages and SegmentationClass; run "
                                     f"{_download_hint('voc2012')}")
        return VOCDataset(tree, ids, name=SEG11VALID, source=seg11valid_cache_path(data_root))

    if split in VOC_SPLITS:
        list_path = voc2012 / SPLIT_SUBDIR / f"{split}.txt"
        if not list_path.is_file():
            raise DataError(list_path, f"VOC2012 split list '{split}' not found; run "
                                       f"{_download_hint('voc2012')}")
        return VOCDataset(voc2012, read_id_list(list_path), name=split, source=list_path)

    list_path = Path(split)
    if list_path.is_dir():
        raise DataError(list_path, "is a folder; --split takes seg11valid, a VOC2012 list name "
                                   "or a file of image ids")
    if list_path.is_file():
        tree = voc2012 if _has_voc_tree(voc2012) else voc2011
        if not _has_voc_tree(tree):
            raise DataError(voc2012, f"no VOC2012 (or VOC2011) images under {data_root}; run "
                                     f"{_download_hint('voc2012')}")
        return VOCDataset(tree, read_id_list(list_path), name=list_path.name, source=list_path)
    if list_path.suffix or "/" in split or "\\" in split:
        raise DataError(list_path, "split list not found")
    raise UsageError(f"unknown split '{split}'; choose {SEG11VALID}, "
                     f"{', '.join(VOC_SPLITS)} or a path to a file of image ids")


def resolve_split_prefix(data_root: str | Path, split: str, limit: int | None
                         ) -> tuple[VOCDataset, int]:
    """`resolve_split`, keeping only the first `limit` ids (all when None), and the full split's
    size (so callers can tell a quick subset from the split)."""
    dataset = resolve_split(data_root, split)
    full = len(dataset)
    if limit is not None and limit < full:
        dataset = VOCDataset(dataset.voc_dir, dataset.ids[:limit], name=dataset.name,
                             source=dataset.source)
    return dataset, full
