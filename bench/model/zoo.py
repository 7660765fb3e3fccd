"""The catalogue of released FCN models as data: what each network is made of, where it came from.

Stdlib only and no architecture code: `bench.model.spec.build_spec` turns an entry into layers.
Every value here is documented, with its primary source, in docs/fidelity.md ("The catalogue and
names", and the section of each data set).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.means import (
    ADE_MEAN,
    CONTEXT_MEAN,
    NYUD_COLOR_MEAN,
    NYUD_HHA_MEAN,
    NYUD_LOG_DEPTH_MEAN,
    SIFTFLOW_MEAN,
    VOC_MEAN,
)

_CAFFE = "http://dl.caffe.berkeleyvision.org"
NO_CHECKSUM = "none published: SHA-256 recorded on first download"


@dataclass(frozen=True)
class InputInfo:
    """One network input: its blob name, channels and how the data layer prepares it."""

    name: str
    channels: int
    kind: str  # "bgr" (RGB flipped to BGR), "hha" (file channel order, no flip), "logd"
    mean: tuple[float, ...]  # subtracted per channel, in the blob's channel order


@dataclass(frozen=True)
class Head:
    """One output head: layer-name suffix ("" or "_sem"/"_geo"), classes, what it predicts."""

    suffix: str
    classes: int
    task: str

    @property
    def output(self) -> str:
        return f"score{self.suffix}"


@dataclass(frozen=True)
class ModelEntry:
    """A released model (reference repository folder name) and everything build_spec needs."""

    name: str  # the reference repository's folder name, e.g. "nyud-fcn32s-color-hha"
    key: str  # FcnSpec.variant and record key ("fcn8s" for the historical VOC nets)
    dataset: str
    trunk: str  # "vgg16" | "alexnet"
    stride: int  # 32, 16 or 8 (the finest skip)
    inputs: tuple[InputInfo, ...]
    fusion: str  # "none" | "early" (Concat -> conv1_1_bgrd) | "late" (one trunk per input)
    heads: tuple[Head, ...]
    typical_size: tuple[int, int]  # (H, W) of the data set's images, for GFLOPs
    weights_url: str | None
    weights_sha1: str | None = None
    checksum_status: str = NO_CHECKSUM
    atonce: bool = False  # Scale layers before the skip scores (at-once FCN-8s)
    paper: str = ""  # where the paper reports numbers for it (table name), "" for none
    aliases: tuple[str, ...] = ()

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(head.output for head in self.heads)


def _bgr(mean: tuple[float, float, float], name: str = "data") -> InputInfo:
    return InputInfo(name, 3, "bgr", mean)


NYUD_COLOR = _bgr(NYUD_COLOR_MEAN)
NYUD_HHA = InputInfo("data", 3, "hha", NYUD_HHA_MEAN)
NYUD_LOGD = InputInfo("depth", 1, "logd", NYUD_LOG_DEPTH_MEAN)

_VOC = dict(dataset="PASCAL VOC", trunk="vgg16", inputs=(_bgr(VOC_MEAN),), fusion="none",
            heads=(Head("", 21, "semantic"),), typical_size=(500, 500))
_NYUD = dict(dataset="NYUDv2", trunk="vgg16", stride=32, heads=(Head("", 40, "semantic"),),
             typical_size=(425, 560), paper="CVPR Table 4")
_SIFTFLOW = dict(dataset="SIFT Flow", trunk="vgg16", inputs=(_bgr(SIFTFLOW_MEAN),), fusion="none",
                 heads=(Head("_sem", 33, "semantic"), Head("_geo", 3, "geometric")),
                 typical_size=(256, 256))
_CONTEXT = dict(dataset="PASCAL-Context", trunk="vgg16", inputs=(_bgr(CONTEXT_MEAN),),
                fusion="none", heads=(Head("", 60, "semantic"),), typical_size=(375, 500),
                paper="CVPR Table 6")

MODEL_ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry("voc-fcn32s", "fcn32s", stride=32, aliases=("fcn32s",),
               weights_url=f"{_CAFFE}/fcn32s-heavy-pascal.caffemodel",
               paper="CVPR Table 2", **_VOC),
    ModelEntry("voc-fcn16s", "fcn16s", stride=16, aliases=("fcn16s",),
               weights_url=f"{_CAFFE}/fcn16s-heavy-pascal.caffemodel",
               paper="CVPR Table 2", **_VOC),
    ModelEntry("voc-fcn8s", "fcn8s", stride=8, aliases=("fcn8s",),
               weights_url=f"{_CAFFE}/fcn8s-heavy-pascal.caffemodel",
               weights_sha1="c449ea74dd7d83751d1357d6a8c323fcf4038962",
               checksum_status="sha1 from opencv/opencv_extra download_models.py",
               paper="CVPR Table 2, 3", **_VOC),
    ModelEntry("voc-fcn8s-atonce", "fcn8s-atonce", stride=8, atonce=True,
               aliases=("fcn8s-atonce",),
               weights_url=f"{_CAFFE}/fcn8s-atonce-pascal.caffemodel", paper="PAMI", **_VOC),
    ModelEntry("voc-fcn-alexnet", "voc-fcn-alexnet", dataset="PASCAL VOC", trunk="alexnet",
               stride=32, inputs=(_bgr(VOC_MEAN),), fusion="none",
               heads=(Head("", 21, "semantic"),), typical_size=(500, 500),
               weights_url=f"{_CAFFE}/fcn-alexnet-pascal.caffemodel", paper="CVPR Table 1"),
    ModelEntry("nyud-fcn32s-color", "nyud-fcn32s-color", inputs=(NYUD_COLOR,), fusion="none",
               weights_url=f"{_CAFFE}/nyud-fcn32s-color-heavy.caffemodel", **_NYUD),
    ModelEntry("nyud-fcn32s-hha", "nyud-fcn32s-hha", inputs=(NYUD_HHA,), fusion="none",
               weights_url=f"{_CAFFE}/nyud-fcn32s-hha-heavy.caffemodel", **_NYUD),
    ModelEntry("nyud-fcn32s-color-d", "nyud-fcn32s-color-d",
               inputs=(_bgr(NYUD_COLOR.mean, "color"), NYUD_LOGD), fusion="early",
               weights_url=None, checksum_status="no weights released", **_NYUD),
    ModelEntry("nyud-fcn32s-color-hha", "nyud-fcn32s-color-hha",
               inputs=(_bgr(NYUD_COLOR.mean, "color"),
                       InputInfo("hha", 3, "hha", NYUD_HHA.mean)), fusion="late",
               weights_url=f"{_CAFFE}/nyud-fcn32s-color-hha-heavy.caffemodel", **_NYUD),
    ModelEntry("siftflow-fcn32s", "siftflow-fcn32s", stride=32,
               weights_url=f"{_CAFFE}/siftflow-fcn32s-heavy.caffemodel", **_SIFTFLOW),
    ModelEntry("siftflow-fcn16s", "siftflow-fcn16s", stride=16,
               weights_url=f"{_CAFFE}/siftflow-fcn16s-heavy.caffemodel",
               paper="CVPR Table 5", **_SIFTFLOW),
    ModelEntry("siftflow-fcn8s", "siftflow-fcn8s", stride=8,
               weights_url=f"{_CAFFE}/siftflow-fcn8s-heavy.caffemodel", **_SIFTFLOW),
    ModelEntry("pascalcontext-fcn32s", "pascalcontext-fcn32s", stride=32,
               weights_url=f"{_CAFFE}/pascalcontext-fcn32s-heavy.caffemodel", **_CONTEXT),
    ModelEntry("pascalcontext-fcn16s", "pascalcontext-fcn16s", stride=16,
               weights_url=f"{_CAFFE}/pascalcontext-fcn16s-heavy.caffemodel", **_CONTEXT),
    ModelEntry("pascalcontext-fcn8s", "pascalcontext-fcn8s", stride=8,
               weights_url=f"{_CAFFE}/pascalcontext-fcn8s-heavy.caffemodel", **_CONTEXT),
    ModelEntry("ade20k-fcn8s", "ade20k-fcn8s", dataset="ADE20K", trunk="vgg16", stride=8,
               atonce=True, inputs=(_bgr(ADE_MEAN),), fusion="none",
               heads=(Head("", 151, "semantic"),), typical_size=(384, 384),
               weights_url="http://sceneparsing.csail.mit.edu/model/caffe/"
                           "FCN_iter_160000.caffemodel",
               paper="PSPNet Table 4"),  # quoting Zhou et al. 2017
)
