"""The catalog of every file fcn-bench can fetch: mirrors, published checksums and their sources,
and what a good copy must contain; plus checksum verification.

Data, not code: each pinned value names where it was published (docs/downloads.md lists them
all). A file with no published checksum is "trust on first use": its SHA-256 is recorded only
after its content has been validated (bench.downloads.checks) and only when it came over https.
Stdlib only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.core.digests import file_digests
from bench.core.errors import DownloadError, UsageError
from bench.data.voc import SEG11VALID, SEG11VALID_SHA256, SEG11VALID_URL
from bench.downloads.cache import recorded_hashes
from bench.model.zoo import MODEL_ENTRIES, NO_CHECKSUM


@dataclass(frozen=True)
class Source:
    """One downloadable file. `md5` lists every published value that identifies a good copy."""

    name: str  # what the user types: `download voc2012`, `download weights fcn8s`
    group: str  # "dataset" | "split" | "weights"
    filename: str
    urls: tuple[str, ...]  # tried in order: https first
    md5: tuple[str, ...] = ()
    sha1: str | None = None
    sha256: str | None = None
    size: int | None = None  # bytes, only where published
    checksum_source: str = ""
    # Datasets: the folder (found in the archive) that becomes DATA_ROOT/<extract_root>, and the
    # paths (relative to DATA_ROOT) that prove the dataset is complete.
    extract_root: str | None = None
    # For an archive whose entries have no common top folder: the DATA_ROOT folder they go in.
    extract_into: str | None = None
    expect: tuple[str, ...] = ()
    # FCN weights: the variant the caffemodel converts to.
    variant: str | None = None
    note: str = ""
    # What a good copy must parse as before its hash may be recorded (bench.downloads.checks):
    # "fcn-caffemodel" (the variant's blobs), "vgg16-caffemodel", "alexnet-caffemodel",
    # "dataset-archive" (a whole tar/zip holding the `expect` paths), or "" (pinned: the hash is
    # the check). `width_divisor` > 1 only for the narrow test-only networks.
    content: str = ""
    width_divisor: int = 1

    @property
    def pinned(self) -> bool:
        return bool(self.md5 or self.sha1 or self.sha256)


_VOC_HOST = "host.robots.ox.ac.uk/pascal/VOC"
_SBD_PATH = "Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"
_CAFFE_HOST = "dl.caffe.berkeleyvision.org"
_VOC_NOTE = ("PASCAL VOC images come from Flickr under their owners' terms; see "
             "http://host.robots.ox.ac.uk/pascal/VOC/ for the terms of use")
_VOC_SEG = "ImageSets/Segmentation"


def _caffe_fcn(variant: str, stem: str, sha1: str | None = None, checksum_source: str = ""
               ) -> Source:
    return Source(
        name=variant, group="weights", filename=f"{stem}.caffemodel",
        urls=(f"https://{_CAFFE_HOST}/{stem}.caffemodel", f"http://{_CAFFE_HOST}/{stem}.caffemodel"),
        sha1=sha1, variant=variant, content="fcn-caffemodel",
        checksum_source=checksum_source or "none published (searched: docs/downloads.md)",
        note="official Caffe model (shelhamer/fcn.berkeleyvision.org voc-*/caffemodel-url); "
             "the http URL is used only if https fails")


def _zoo_weights() -> tuple[Source, ...]:
    """The released caffemodel of every non-VOC model of the zoo (bench/model/zoo.py), named by the
    model; its checksum status is the zoo's (none published except where the zoo pins one)."""
    sources = []
    for entry in MODEL_ENTRIES:
        if entry.weights_url is None or (entry.dataset == "PASCAL VOC" and entry.trunk == "vgg16"):
            continue  # no weights released (nyud-fcn32s-color-d); VOC VGG16: listed above
        plain = entry.weights_url
        secure = "https://" + plain.split("://", 1)[1]
        sources.append(Source(
            name=entry.key, group="weights", filename=plain.rsplit("/", 1)[1],
            urls=(secure, plain), sha1=entry.weights_sha1, variant=entry.key,
            content="fcn-caffemodel",
            checksum_source=("none published (searched: docs/downloads.md)"
                             if entry.checksum_status == NO_CHECKSUM else entry.checksum_status),
            note=f"released {entry.name} ({entry.dataset}) Caffe model; the http URL is used "
                 "only if https fails"))
    return tuple(sources)


CATALOG: dict[str, Source] = {source.name: source for source in (
    Source(
        name="voc2012", group="dataset", filename="VOCtrainval_11-May-2012.tar",
        urls=(f"https://{_VOC_HOST}/voc2012/VOCtrainval_11-May-2012.tar",
              f"http://{_VOC_HOST}/voc2012/VOCtrainval_11-May-2012.tar"),
        md5=("6cd6e144f989b92b3379bac3b3de84fd",),
        checksum_source="torchvision datasets/voc.py; wkentaro/fcn; facebookresearch fblib",
        extract_root="VOCdevkit",
        expect=("VOCdevkit/VOC2012/JPEGImages", "VOCdevkit/VOC2012/SegmentationClass",
                f"VOCdevkit/VOC2012/{_VOC_SEG}/val.txt"),
        note=_VOC_NOTE),
    Source(
        name="voc2011", group="dataset", filename="VOCtrainval_25-May-2011.tar",
        urls=(f"https://{_VOC_HOST}/voc2011/VOCtrainval_25-May-2011.tar",
              f"http://{_VOC_HOST}/voc2011/VOCtrainval_25-May-2011.tar"),
        md5=("6c3384ef61512963050cb5d687e5bf1e",),
        checksum_source="torchvision datasets/voc.py DATASET_YEAR_DICT['2011']",
        # The 2011 archive nests the devkit under TrainVal/; VOCdevkit/ is located wherever it is.
        extract_root="VOCdevkit",
        expect=("VOCdevkit/VOC2011/JPEGImages", "VOCdevkit/VOC2011/SegmentationClass",
                f"VOCdevkit/VOC2011/{_VOC_SEG}/val.txt"),
        note=_VOC_NOTE),
    Source(
        name="sbd", group="dataset", filename="benchmark.tgz",
        urls=(f"https://www2.eecs.berkeley.edu/{_SBD_PATH}",),
        # Two values circulate: torchvision SBDataset / fblib, and wkentaro/fcn + pytorch-fcn
        # (which store the same URL as benchmark.tar). Either identifies a good copy.
        md5=("82b4d87ceb2ed10f6038a1cba92111cb", "2b2af8a6cff7365684e002c08be823a6"),
        checksum_source="82b4d87c...: torchvision SBDataset, facebookresearch fblib; "
                        "2b2af8a6...: wkentaro/fcn, wkentaro/pytorch-fcn",
        extract_root="benchmark_RELEASE",
        expect=("benchmark_RELEASE/dataset/img", "benchmark_RELEASE/dataset/cls",
                "benchmark_RELEASE/dataset/train.txt", "benchmark_RELEASE/dataset/val.txt"),
        note="Semantic Boundaries Dataset (Hariharan et al. 2011); the old www. host loops on "
             "redirects, www2 serves it (pytorch/vision#8471); 1,419,539,633 bytes per that log"),
    # The other data sets of the FCN papers (docs/datasets.md, "Downloads").
    Source(
        name="nyud", group="dataset", filename="nyud.tar.gz",
        urls=(f"https://{_CAFFE_HOST}/nyud.tar.gz", f"http://{_CAFFE_HOST}/nyud.tar.gz"),
        content="dataset-archive", extract_root="nyud",
        checksum_source="none published (searched: docs/datasets.md); SHA-256 recorded on first "
                        "download after the archive check",
        expect=("nyud/data/images", "nyud/data/hha", "nyud/data/depth", "nyud/segmentation"),
        note="NYUDv2 40-class task in the FCN layout (REF data/nyud/README.md); the archive's "
             "top folder 'nyud' is inferred from REF's data paths; split lists ship with "
             "fcn-bench (bench/data/splits)"),
    Source(
        name="siftflow", group="dataset", filename="SiftFlowDataset.zip",
        urls=("https://www.cs.unc.edu/~jtighe/Papers/ECCV10/siftflow/SiftFlowDataset.zip",
              "http://www.cs.unc.edu/~jtighe/Papers/ECCV10/siftflow/SiftFlowDataset.zip"),
        content="dataset-archive", extract_into="SiftFlow",
        checksum_source="none published (searched: docs/datasets.md); SHA-256 recorded on first "
                        "download after the archive check",
        expect=("SiftFlow/Images", "SiftFlow/SemanticLabels", "SiftFlow/GeoLabels"),
        note="SIFT Flow (Liu et al.; Tighe & Lazebnik's copy, REF data/sift-flow/README.md); "
             "the zip has no top folder; split lists ship with fcn-bench"),
    Source(
        name="voc2010", group="dataset", filename="VOCtrainval_03-May-2010.tar",
        urls=(f"https://{_VOC_HOST}/voc2010/VOCtrainval_03-May-2010.tar",
              f"http://{_VOC_HOST}/voc2010/VOCtrainval_03-May-2010.tar"),
        md5=("da459979d0c395079b5c75ee67908abb",),
        checksum_source="torchvision datasets/voc.py DATASET_YEAR_DICT['2010']",
        extract_root="VOCdevkit",
        expect=("VOCdevkit/VOC2010/JPEGImages", "VOCdevkit/VOC2010/ImageSets/Main/val.txt"),
        note="PASCAL-Context's images and Main split lists; " + _VOC_NOTE),
    Source(
        name="pascalcontext", group="dataset", filename="trainval.tar.gz",
        urls=("https://www.cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz",
              "http://www.cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz"),
        content="dataset-archive", extract_into="pascal-context",
        checksum_source="none published (searched: docs/datasets.md); SHA-256 recorded on first "
                        "download after the archive check",
        expect=("pascal-context/trainval",),
        note="PASCAL-Context full labels (Mottaghi et al. 2014); needs `download voc2010` for "
             "the images; the 459 label names ship with fcn-bench"),
    Source(
        name="ade20k", group="dataset", filename="ADEChallengeData2016.zip",
        urls=("https://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
              "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"),
        sha1="219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
        checksum_source="zhanghang1989/PyTorch-Encoding scripts/prepare_ade20k.py (also "
                        "rstrudel/segmenter)",
        extract_root="ADEChallengeData2016",
        expect=("ADEChallengeData2016/images/validation",
                "ADEChallengeData2016/annotations/validation"),
        note="MIT Scene Parsing benchmark (ADE20K, 150 classes; CSAILVision/sceneparsing)"),
    Source(
        name="seg11valid", group="split", filename="seg11valid.txt",
        urls=(SEG11VALID_URL,), sha256=SEG11VALID_SHA256,
        checksum_source="bench.data.voc (pinned from the REF repository file)",
        expect=(f"splits/{SEG11VALID}.txt",),
        note="736 ids: VOC2011 segval minus SBD train (CVPR footnote 7); fetched by "
             "bench.downloads.provision.download_seg11valid, which also validates the count"),
    _caffe_fcn("fcn32s", "fcn32s-heavy-pascal"),
    _caffe_fcn("fcn16s", "fcn16s-heavy-pascal"),
    _caffe_fcn("fcn8s", "fcn8s-heavy-pascal", sha1="c449ea74dd7d83751d1357d6a8c323fcf4038962",
               checksum_source="opencv/opencv_extra testdata/dnn/download_models.py"),
    _caffe_fcn("fcn8s-atonce", "fcn8s-atonce-pascal"),
    Source(
        name="vgg16-caffe", group="weights", filename="VGG_ILSVRC_16_layers.caffemodel",
        urls=("https://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
              "VGG_ILSVRC_16_layers.caffemodel",
              "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
              "VGG_ILSVRC_16_layers.caffemodel"),
        size=553_432_081, content="vgg16-caffemodel",
        checksum_source="size from listings and Caffe's protobuf read log; SHA-256 recorded on "
                        "first download",
        note="the ImageNet VGG16 FCN was fine-tuned from (BGR, 0-255, mean subtraction)"),
    Source(
        name="vgg16-torchvision", group="weights", filename="vgg16-397923af.pth",
        urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        checksum_source="torchvision (hash prefix in the file name)",
        note="NOT the Caffe VGG16: RGB 0-1 std-normalised, costs 2-6 mIU (docs/fidelity.md)"),
    Source(
        name="vgg16-keras", group="weights",
        filename="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        urls=("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
              "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
              "https://github.com/fchollet/deep-learning-models/releases/download/v0.1/"
              "vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
        md5=("64373286793e3c8b2b4e3219cbf3544b",), size=553_467_096,
        checksum_source="keras.applications.vgg16 WEIGHTS_PATH file_hash",
        note="Caffe VGG16 weights in Keras layout (fc1 flattened H,W,C)"),
    Source(
        name="alexnet-caffe", group="weights", filename="bvlc_reference_caffenet.caffemodel",
        urls=(f"https://{_CAFFE_HOST}/bvlc_reference_caffenet.caffemodel",
              f"http://{_CAFFE_HOST}/bvlc_reference_caffenet.caffemodel"),
        sha1="4c8d77deb20ea792f84eb5e6d0a11ca0a8660a46", content="alexnet-caffemodel",
        checksum_source="BVLC/caffe models/bvlc_reference_caffenet/readme.md",
        note="CaffeNet ImageNet weights voc-fcn-alexnet starts from (convert --init-for "
             "voc-fcn-alexnet)"),
    *_zoo_weights(),
)}

DATASETS = tuple(name for name, s in CATALOG.items() if s.group in ("dataset", "split"))
WEIGHTS = tuple(name for name, s in CATALOG.items() if s.group == "weights")


def get_source(name: str, group: str | None = None) -> Source:
    """The catalog entry `name`; an unknown name gets an error listing the choices."""
    choices = [n for n, s in CATALOG.items() if group is None or s.group == group]
    if name not in choices:
        raise UsageError(f"unknown download {name!r}; choose from {', '.join(choices)}")
    return CATALOG[name]


# ----------------------------------------------------------------------------------------------
# Checksums


def pinned_checksums(source: Source) -> list[str]:
    """["md5 6cd6e144f989...", ...]: every published value a good copy must match."""
    values = [f"md5 {v}" for v in source.md5]
    values += [f"sha1 {source.sha1}"] if source.sha1 else []
    values += [f"sha256 {source.sha256}"] if source.sha256 else []
    return values


def trust_state(source: Source) -> str:
    """For `download list`: what guards a file that has no published checksum."""
    if source.pinned:
        return "pinned"
    entry = recorded_hashes().get(source.filename)
    if isinstance(entry, dict) and entry.get("sha256"):
        return f"sha256 {entry['sha256']} recorded {entry.get('recorded_utc', '?')}"
    return "not yet recorded (recorded after the first validated https download)"


def verify_file(path: str | Path, *, size: int | None = None, md5: str | Sequence[str] = (),
                sha1: str | None = None, sha256: str | None = None) -> str:
    """Check size (first: cheap) then every given checksum; returns what matched, e.g.
    "md5 82b4d87c... (published value 1 of 2)". Raises DownloadError naming the mismatch."""
    path = Path(path)
    md5s = (md5,) if isinstance(md5, str) else tuple(md5)
    try:
        actual_size = path.stat().st_size
    except OSError as error:
        raise DownloadError(f"{path}: cannot read ({error.strerror})") from None
    if size is not None and actual_size != size:
        raise DownloadError(f"{path}: size is {actual_size:,} bytes, expected {size:,}")
    wanted = {"md5": md5s, "sha1": (sha1,) if sha1 else (), "sha256": (sha256,) if sha256 else ()}
    wanted = {algo: tuple(v.lower() for v in values) for algo, values in wanted.items() if values}
    if not wanted:
        return "no checksum to verify"
    try:
        digests = file_digests(path, wanted)
    except OSError as error:
        raise DownloadError(f"{path}: cannot read ({error.strerror})") from None
    matched = []
    for algo, values in wanted.items():
        if digests[algo] not in values:
            expected = " or ".join(values)
            raise DownloadError(f"{path}: {algo} is {digests[algo]}, expected {expected}")
        which = values.index(digests[algo])
        alternative = f" (published value {which + 1} of {len(values)})" if len(values) > 1 else ""
        matched.append(f"{algo} {digests[algo]}{alternative}")
    return ", ".join(matched)
