"""Fetching data and weights: the source catalog, resumable verified downloads, safe extraction.

Stdlib (urllib, tarfile, zipfile; hashing via bench.cache) plus tqdm for the progress bar; never
imports torch or tensorflow. Policy (harness_anchors.md §6):

* https first; a host that only serves plain http is listed after its https URL and the switch is
  announced on stderr, never silent; an https URL that redirects to http is refused.
* Downloads go to `<dest>.part`, resume with an HTTP Range request (a server that ignores Range
  restarts the file cleanly), retry with exponential backoff, and are renamed into place only once
  the size and checksum match. A `.part` with a wrong checksum is deleted.
* Files without a published checksum get their SHA-256 recorded on first download
  (`bench.cache.record_sha256`) and enforced afterwards.
* Archives are extracted with Python's `filter="data"` plus an explicit refusal of absolute paths,
  `..`, links and special files, into a staging folder that is renamed into place.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import urlparse

from tqdm import tqdm

from bench import __version__
from bench.cache import downloads_dir, file_digests, record_sha256, recorded_sha256
from bench.errors import DataError, DownloadError, UsageError
from bench.voc import (
    SEG11VALID,
    SEG11VALID_SHA256,
    SEG11VALID_URL,
    convert_sbd_labels,
    download_seg11valid,
    seg11valid_cache_path,
)

Log = Callable[[str], None]

USER_AGENT = f"fcn-bench/{__version__} (python-urllib)"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0  # per blocking socket operation, not for the whole transfer
RETRIES = 4
BACKOFF_S = 2.0  # 2, 4, 8, 16 s between attempts on the same URL


def _stderr(message: str) -> None:
    # tqdm.write keeps an active progress bar intact.
    tqdm.write(message, file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# The catalog: every file fcn-bench can fetch, with its mirrors and pinned checksums (as data).


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
    expect: tuple[str, ...] = ()
    # FCN weights: the variant the caffemodel converts to.
    variant: str | None = None
    note: str = ""

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
        sha1=sha1, variant=variant,
        checksum_source=checksum_source or "none published: SHA-256 recorded on first download",
        note="official Caffe model (shelhamer/fcn.berkeleyvision.org voc-*/caffemodel-url); "
             "the http URL is used only if https fails")


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
    Source(
        name="seg11valid", group="split", filename="seg11valid.txt",
        urls=(SEG11VALID_URL,), sha256=SEG11VALID_SHA256,
        checksum_source="bench.voc (pinned from the REF repository file)",
        expect=(f"splits/{SEG11VALID}.txt",),
        note="736 ids: VOC2011 segval minus SBD train (CVPR footnote 7); fetched by "
             "bench.voc.download_seg11valid, which also validates the count"),
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
        size=553_432_081,
        checksum_source="size from listings and Caffe's protobuf read log; SHA-256 recorded on "
                        "first download",
        note="the ImageNet VGG16 FCN was fine-tuned from (BGR, 0-255, mean subtraction)"),
    Source(
        name="vgg16-torchvision", group="weights", filename="vgg16-397923af.pth",
        urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        checksum_source="torchvision (hash prefix in the file name)",
        note="NOT the Caffe VGG16: RGB 0-1 std-normalised, costs 2-6 mIU (fcn_facts.md pitfall 1)"),
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


def verify_file(path: str | Path, *, size: int | None = None, md5: str | Sequence[str] = (),
                sha1: str | None = None, sha256: str | None = None) -> str:
    """Check size (first: cheap) then every given checksum; returns what matched, e.g.
    "md5 82b4d87c... (published value 1 of 2)". Raises DownloadError naming the mismatch."""
    path = Path(path)
    md5s = (md5,) if isinstance(md5, str) else tuple(md5)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DownloadError(f"{path}: size is {actual_size:,} bytes, expected {size:,}")
    wanted = {"md5": md5s, "sha1": (sha1,) if sha1 else (), "sha256": (sha256,) if sha256 else ()}
    wanted = {algo: tuple(v.lower() for v in values) for algo, values in wanted.items() if values}
    if not wanted:
        return "no checksum to verify"
    digests = file_digests(path, wanted)
    matched = []
    for algo, values in wanted.items():
        if digests[algo] not in values:
            expected = " or ".join(values)
            raise DownloadError(f"{path}: {algo} is {digests[algo]}, expected {expected}")
        which = values.index(digests[algo])
        alternative = f" (published value {which + 1} of {len(values)})" if len(values) > 1 else ""
        matched.append(f"{algo} {digests[algo]}{alternative}")
    return ", ".join(matched)


# ----------------------------------------------------------------------------------------------
# Downloading


class _Transient(Exception):
    """A failure worth retrying on the same URL (timeouts, resets, 5xx, truncated transfers)."""


class _Permanent(Exception):
    """A failure that retrying the same URL will not fix (404, refused redirect...)."""


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http (urllib would do it silently)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlparse(req.full_url).scheme == "https" and urlparse(newurl).scheme != "https":
            raise _Permanent(f"refusing redirect from https to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngradeRedirect)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from 'bytes 100-199/1000' or 'bytes */1000'."""
    if not header or not header.startswith("bytes "):
        return None, None
    span, _, total = header[6:].partition("/")
    first = span.split("-")[0]
    return (int(first) if first.isdigit() else None, int(total) if total.isdigit() else None)


def _fetch_once(url: str, part: Path, expected_size: int | None, progress: bool,
                timeout: float, log: Log) -> None:
    """One HTTP request appending to (or restarting) `part`; raises _Transient/_Permanent."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == offset:
                return  # the part already holds the whole file
            part.unlink(missing_ok=True)
            raise _Transient("server refused the resume range; restarting from byte 0") from None
        if error.code in (408, 425, 429) or error.code >= 500:
            raise _Transient(f"HTTP {error.code} {error.reason}") from None
        raise _Permanent(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, _Permanent):
            raise reason from None
        if isinstance(reason, socket.gaierror) and reason.errno != socket.EAI_AGAIN:
            # The name does not resolve (offline, or a dead host): retrying it only waits.
            raise _Permanent(f"cannot resolve {urlparse(url).hostname}: "
                             f"{reason.strerror or reason}") from None
        raise _Transient(f"cannot connect: {reason}") from None

    with response:
        status = response.status
        mode = "wb"
        if offset and status == 206:
            first, _ = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"server sent bytes from {first}, asked {offset}; restarting")
            mode = "ab"
        elif offset and status == 200:
            log(f"  {urlparse(url).netloc} ignored the resume request (Range); "
                "restarting from byte 0")
            offset = 0
        elif status != 200:
            raise _Permanent(f"unexpected HTTP status {status}")
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        total = offset + remaining if remaining is not None else expected_size
        received = 0
        with open(part, mode) as handle, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), file=sys.stderr, disable=not progress,
                leave=False) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as error:
                    raise _Transient(f"transfer interrupted after {offset + received:,} bytes "
                                     f"({type(error).__name__}: {error})") from None
                if not chunk:
                    break
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if remaining is not None and received < remaining:
            raise _Transient(f"connection closed after {offset + received:,} of "
                             f"{offset + remaining:,} bytes")


def _fetch_with_retries(url: str, part: Path, expected_size: int | None, *, progress: bool,
                        timeout: float, retries: int, backoff_s: float, log: Log) -> None:
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have > expected_size:
            part.unlink()  # longer than the real file: not a prefix of it
        if expected_size is not None and have == expected_size:
            return
        try:
            _fetch_once(url, part, expected_size, progress, timeout, log)
            return
        except _Transient as error:
            attempt += 1
            if attempt > retries:
                raise _Permanent(f"{error} (gave up after {retries} retries)") from None
            delay = backoff_s * 2 ** (attempt - 1)
            kept = " (the .part is kept)" if part.exists() else ""
            log(f"  {error}; retry {attempt}/{retries} in {delay:g} s{kept}")
            time.sleep(delay)


def download_file(urls: str | Sequence[str], dest: str | Path, *, sha256: str | None = None,
                  md5: str | Sequence[str] | None = None, sha1: str | None = None,
                  size: int | None = None, progress: bool = True, log: Log = _stderr,
                  timeout: float = TIMEOUT_S, retries: int = RETRIES,
                  backoff_s: float = BACKOFF_S) -> Path:
    """Download the first URL that works into `dest`, resumable and verified; returns `dest`.

    `md5` may list several accepted values (the log says which matched). An existing `dest`
    that verifies is kept without any request. Raises DownloadError listing every URL's failure.
    """
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    md5s = () if md5 is None else ((md5,) if isinstance(md5, str) else tuple(md5))
    if not urls:
        raise ValueError("download_file needs at least one URL")
    for url in urls:
        if urlparse(url).scheme not in ("https", "http"):
            raise DownloadError(f"{url}: only https and http URLs are fetched")
    checks = {"size": size, "md5": md5s, "sha1": sha1, "sha256": sha256}
    dest = Path(dest)
    if dest.exists():
        try:
            matched = verify_file(dest, **checks)
            log(f"{dest}: already present ({matched})")
            return dest
        except DownloadError as error:
            log(f"{dest}: existing file fails verification ({error}); downloading it again")
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    for url in urls:
        scheme, host = urlparse(url).scheme, urlparse(url).netloc
        if scheme == "http":
            pinned = " and ".join(k for k in ("md5", "sha1", "sha256") if checks[k]) or "nothing"
            reason = "https failed above" if failures else f"{host} is listed as http-only"
            log(f"note: fetching over plain http ({reason}); integrity rests on the pinned "
                f"{pinned}")
        if part.exists():
            log(f"resuming {part.name} at {part.stat().st_size:,} bytes from {url}")
        else:
            log(f"downloading {url}")
        try:
            _fetch_with_retries(url, part, size, progress=progress, timeout=timeout,
                                retries=retries, backoff_s=backoff_s, log=log)
        except _Permanent as error:
            failures.append(f"{url}: {error}")
            continue
        try:
            matched = verify_file(part, **checks)
        except DownloadError as error:
            part.unlink(missing_ok=True)  # a wrong file is not worth resuming
            failures.append(f"{url}: {str(error).split(': ', 1)[-1]} (partial file deleted)")
            continue
        os.replace(part, dest)
        log(f"{dest}: verified ({matched})")
        return dest
    raise DownloadError(f"{dest.name}: download failed: " + "; ".join(failures))


def fetch_source(source: Source, dest_dir: str | Path | None = None, *, progress: bool = True,
                 log: Log = _stderr, **options) -> Path:
    """Download a catalog file into `dest_dir` (default: the cache's downloads/).

    A file without a published checksum is checked against its SHA-256 recorded on first download,
    or has it recorded now (and the log says so).
    """
    dest = Path(dest_dir or downloads_dir()) / source.filename
    sha256 = source.sha256
    recorded = None if source.pinned else recorded_sha256(source.filename)
    if recorded:
        log(f"{source.filename}: no published checksum; using the SHA-256 recorded on first "
            f"download ({recorded[:12]}...)")
        sha256 = recorded
    path = download_file(source.urls, dest, sha256=sha256, md5=source.md5, sha1=source.sha1,
                         size=source.size, progress=progress, log=log, **options)
    if not source.pinned and not recorded:
        digest = file_digests(path, ["sha256"])["sha256"]
        where = record_sha256(source.filename, digest, path.stat().st_size, source.urls[0])
        log(f"{source.filename}: no published checksum; recorded SHA-256 {digest} in {where} "
            "(trust on first use: later downloads must match it)")
    return path


# ----------------------------------------------------------------------------------------------
# Extraction


def _member_problem(name: str, kind: str, link: str | None) -> str | None:
    """Why an archive member is refused, or None. Checked before `filter="data"` as well."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive:
        return "has an absolute path"
    if ".." in posix.parts:
        return "contains a '..' component"
    if kind == "symlink":
        return f"is a symbolic link (-> {link})"
    if kind == "hardlink":
        return f"is a hard link (-> {link})"
    if kind not in ("file", "dir"):
        return f"is a {kind}, not a regular file or folder"
    return None


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.isdir():
        return "dir"
    if member.isfile():
        return "file"
    return "device or fifo"


def _refuse(archive: Path, name: str, problem: str) -> DataError:
    return DataError(archive, f"refusing to extract: member {name!r} {problem}")


def _extract_tar(archive: Path, staging: Path) -> None:
    # One pass over the (possibly gzip) stream: each member is checked, then extracted.
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            problem = _member_problem(member.name, _tar_kind(member), member.linkname or None)
            if problem:
                raise _refuse(archive, member.name, problem)
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, staging, filter="data")
            else:  # Python without PEP 706: the explicit checks above are the whole defence
                tar.extract(member, staging)


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            mode = info.external_attr >> 16
            kind = "symlink" if stat.S_ISLNK(mode) else ("dir" if info.is_dir() else "file")
            problem = _member_problem(info.filename, kind, None)
            if problem:
                raise _refuse(archive, info.filename, problem)
        for info in infos:
            zf.extract(info, staging)


def _find_root(staging: Path, name: str, max_depth: int = 3) -> Path | None:
    """The shallowest folder called `name` in the staged tree (breadth-first)."""
    level = [staging]
    for _ in range(max_depth + 1):
        for folder in level:
            if folder.name == name and folder != staging:
                return folder
        level = sorted(child for folder in level for child in folder.iterdir() if child.is_dir())
    return None


def _merge_into(src: Path, dst: Path) -> None:
    """Move `src`'s content into `dst`: whole folders are renamed in one step where `dst` has no
    such folder yet (so VOC2011 can join an existing VOCdevkit/ holding VOC2012)."""
    if not dst.exists():
        os.replace(src, dst)
        return
    if not dst.is_dir():
        raise DataError(dst, "exists and is not a folder; move it away and extract again")
    for child in sorted(src.iterdir()):
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            _merge_into(child, target)
        elif child.is_dir() == target.is_dir() or not target.exists():
            os.replace(child, target)
        else:
            raise DataError(target, f"conflicts with {child.name} from the archive (file vs "
                                    "folder); move it away and extract again")


def safe_extract(archive: str | Path, dest: str | Path, *, root: str | None = None) -> Path:
    """Extract a tar (any compression) or zip archive into `dest` safely; returns the result path.

    Absolute paths, `..`, symbolic and hard links and special files are refused (naming the
    member) before anything reaches `dest`; tar members additionally pass `filter="data"`.
    Everything is extracted into a staging folder inside `dest` first and moved in only when
    complete. With `root`, only the folder of that name (wherever it sits in the archive, e.g.
    TrainVal/VOCdevkit) is kept, as `dest/<root>`.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(archive, "archive not found")
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".staging-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)  # a leftover of an interrupted extraction
    staging.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        else:
            try:
                _extract_tar(archive, staging)
            except tarfile.TarError as error:
                raise DataError(archive, f"not a readable tar or zip archive ({error})") from None
            except EOFError:
                raise DataError(archive, "archive is truncated; delete it and download again"
                                ) from None
        if root is None:
            _merge_into(staging, dest)  # dest exists: moves staging's children into it
            return dest
        found = _find_root(staging, root)
        if found is None:
            raise DataError(archive, f"has no {root}/ folder; is it the right archive?")
        _merge_into(found, dest / root)
        return dest / root
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Datasets


@dataclass
class DatasetResult:
    """What `prepare_dataset` did, for the command to report."""

    name: str
    path: Path
    actions: list[str] = field(default_factory=list)


def missing_paths(source: Source, data_root: str | Path) -> list[str]:
    """The `expect` paths of a dataset that are absent under `data_root` (empty = complete)."""
    return [rel for rel in source.expect if not (Path(data_root) / rel).exists()]


def prepare_dataset(name: str, data_root: str | Path, *, archive: str | Path | None = None,
                    progress: bool = True, log: Log = _stderr, **options) -> DatasetResult:
    """Download (or take the local `archive`), verify, extract and post-process a dataset.

    Idempotent: a complete dataset is left alone. SBD's `.mat` labels are converted to PNG
    indices once (bench.voc.convert_sbd_labels); seg11valid goes to DATA_ROOT/splits/.
    """
    source = get_source(name)
    if source.group not in ("dataset", "split"):
        raise UsageError(f"{name!r} is weights; use `download weights {name}`")
    data_root = Path(data_root)
    result = DatasetResult(name, data_root)
    if source.group == "split":
        result.path = seg11valid_cache_path(data_root)
        existed = result.path.exists()
        download_seg11valid(data_root, progress=progress)
        result.actions.append(f"{'already present' if existed else 'verified and placed'} at "
                              f"{result.path} ({SEG11VALID_SHA256[:12]}..., "
                              "736 ids checked)")
        return result
    if not missing_paths(source, data_root):
        result.path = data_root / source.extract_root
        result.actions.append(f"already complete under {result.path}")
    else:
        if archive is not None:
            path = Path(archive)
            matched = verify_file(path, size=source.size, md5=source.md5, sha1=source.sha1,
                                  sha256=source.sha256)
            result.actions.append(f"using local archive {path} ({matched})")
        else:
            path = fetch_source(source, progress=progress, log=log, **options)
            result.actions.append(f"downloaded {path}")
        log(f"extracting {path.name} into {data_root} ...")
        result.path = safe_extract(path, data_root, root=source.extract_root)
        result.actions.append(f"extracted to {result.path}")
        missing = missing_paths(source, data_root)
        if missing:
            raise DataError(path, f"extracted, but {', '.join(missing)} are missing under "
                                  f"{data_root}; the archive is not the expected {name}")
    if name == "sbd":
        written = convert_sbd_labels(data_root / "benchmark_RELEASE" / "dataset",
                                     progress=progress)
        result.actions.append(f"SBD labels converted to PNG indices ({written} new)")
    return result


# ----------------------------------------------------------------------------------------------
# Weights


@dataclass
class WeightsResult:
    """What `prepare_weights` did: the downloaded file and, for FCN variants, the archive."""

    name: str
    download: Path
    archive: Path | None = None
    actions: list[str] = field(default_factory=list)


def prepare_weights(name: str, *, progress: bool = True, log: Log = _stderr,
                    **options) -> WeightsResult:
    """Download a weights file into the cache; an official FCN caffemodel is then converted to
    `bench.cache.default_weights_path(variant)`, where `reproduce` looks by default."""
    from bench.cache import default_weights_path
    from bench.weights import read_header

    source = get_source(name, "weights")
    path = fetch_source(source, progress=progress, log=log, **options)
    result = WeightsResult(name, path, actions=[f"{path} verified"])
    if source.variant is None:
        return result
    target = default_weights_path(source.variant)
    origin = f"caffe:{Path(source.filename).stem}"
    if target.exists():
        metadata = read_header(target).get("__metadata__") or {}
        if metadata.get("origin") == origin:
            result.archive = target
            result.actions.append(f"already converted: {target}")
            return result
        log(f"{target} holds other weights (origin {metadata.get('origin')!r}); replacing it")
    from bench.convert import ProgressBars, convert

    bars = ProgressBars(enabled=progress, prefix="convert: ")
    try:
        conversion = convert(path, target, variant=source.variant, force=True, progress=bars)
    finally:
        bars.close()
    result.archive = target
    result.actions.append(f"converted: {conversion.summary()}")
    return result
