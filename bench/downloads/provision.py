"""Datasets and weights made ready to use: fetch (bench.downloads.fetch), extract
(bench.downloads.extract),
post-process, and say so, safely when several `download` runs share a data root or a cache.

A dataset is complete only when its completeness marker exists: DATA_ROOT/.fcn-bench/
<name>.complete.json, written atomically as the very last step (after extraction, the expected
paths check and, for SBD, the label conversion), by the one process holding DATA_ROOT/.fcn-bench/
extract.lock. A second run waits for the lock and then finds the marker; a tree without a marker
(an interrupted run, or one extracted by hand) is extracted again. docs/downloads.md explains why.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.atomic import atomic_write_text
from bench.core.errors import DataError, DownloadError, UsageError
from bench.core.json_text import to_json
from bench.core.records import utc_now
from bench.data.id_lists import read_id_list
from bench.data.voc import (
    SEG11VALID_SHA256,
    SEG11VALID_URL,
    convert_sbd_labels,
    seg11valid_cache_path,
    validate_seg11valid,
)
from bench.downloads.cache import default_weights_path
from bench.downloads.catalog import Source, get_source, verify_file
from bench.downloads.extract import leftover_staging, safe_extract
from bench.downloads.fetch import Log, _stderr, download_file, fetch_source, fetch_verified
from bench.downloads.lock import exclusive, lock_path_for

STATE_DIR = ".fcn-bench"  # inside DATA_ROOT: the extraction lock and the completeness markers


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


def completeness_marker(name: str, data_root: str | Path) -> Path:
    """The file whose presence says `name` was fully extracted (and post-processed)."""
    return Path(data_root) / STATE_DIR / f"{name}.complete.json"


def is_complete(name: str, data_root: str | Path) -> bool:
    """Marker written last, and the dataset's expected paths still there."""
    source = get_source(name)
    return completeness_marker(name, data_root).is_file() and not missing_paths(source,
                                                                                data_root)


def _extract_locked(source: Source, archive: Path, matched: str, data_root: Path,
                    result: DatasetResult, progress: bool, log: Log) -> None:
    """Extract + check + post-process + marker; the caller holds the data root's lock."""
    for leftover in leftover_staging(data_root):
        log(f"removing {leftover} (left by an interrupted extraction)")
        shutil.rmtree(leftover, ignore_errors=True)
    # An archive without a top folder of its own (SIFT Flow) is extracted into `extract_into`.
    dest = data_root / source.extract_into if source.extract_into else data_root
    log(f"extracting {archive.name} into {dest} ...")
    result.path = safe_extract(archive, dest, root=source.extract_root)
    result.actions.append(f"extracted to {result.path}")
    missing = missing_paths(source, data_root)
    if missing:
        raise DataError(archive, f"extracted, but {', '.join(missing)} are missing under "
                                 f"{data_root}; the archive is not the expected {source.name}")
    if source.name == "sbd":
        written = convert_sbd_labels(data_root / "benchmark_RELEASE" / "dataset",
                                     progress=progress)
        result.actions.append(f"SBD labels converted to PNG indices ({written} new)")
    atomic_write_text(completeness_marker(source.name, data_root), to_json({
        "dataset": source.name, "archive": archive.name, "verified": matched,
        "path": str(result.path), "completed_utc": utc_now()}))


def prepare_dataset(name: str, data_root: str | Path, *, archive: str | Path | None = None,
                    progress: bool = True, log: Log = _stderr, **options) -> DatasetResult:
    """Download (or take the local `archive`), verify, extract and post-process a dataset.

    Idempotent and safe to run twice at once: a complete dataset (marker present) is left
    alone; otherwise the archive is fetched under its own lock in the cache, then extracted
    under the data root's lock, after checking again whether another run completed it.
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
    result.path = data_root / (source.extract_root or source.extract_into or "")
    if is_complete(name, data_root):
        result.actions.append(f"already complete under {result.path}")
        return result
    if not missing_paths(source, data_root):
        log(f"{result.path}: present but not marked complete (an interrupted run, or extracted "
            "outside fcn-bench); extracting the archive again to be sure")
    if archive is not None:
        path = Path(archive)
        try:
            matched = verify_file(path, size=source.size, md5=source.md5, sha1=source.sha1,
                                  sha256=source.sha256)
        except DownloadError as error:
            detail = str(error).split(": ", 1)[-1]
            raise DataError(path, f"is not the published {name} archive ({detail}); "
                                  f"{source.filename} is expected") from None
        result.actions.append(f"using local archive {path} ({matched})")
    else:
        path, matched = fetch_verified(source, progress=progress, log=log, archive_option=True,
                                       **options)
        result.actions.append(f"downloaded {path} ({matched})")
    lock = data_root / STATE_DIR / "extract.lock"
    with exclusive(lock, f"extraction of {name} into {data_root}", log=log):
        if is_complete(name, data_root):  # another run finished it while we waited
            result.actions.append(f"completed by another run meanwhile: {result.path}")
            return result
        _extract_locked(source, path, matched, data_root, result, progress, log)
    return result


def download_seg11valid(data_root: str | Path, *, progress: bool = True) -> Path:
    """Fetch the published seg11valid list (pinned SHA-256) into DATA_ROOT/splits/ and validate
    it (736 ids, bench.data.voc.validate_seg11valid)."""
    cache = seg11valid_cache_path(data_root)
    download_file([SEG11VALID_URL], cache, sha256=SEG11VALID_SHA256, progress=progress)
    validate_seg11valid(read_id_list(cache), cache)
    return cache


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
                    allow_http: bool = False, **options) -> WeightsResult:
    """Download a weights file into the cache; an official FCN caffemodel is then converted to
    `bench.downloads.cache.default_weights_path(variant)`, where `reproduce` looks by default. The
    conversion holds `<archive>.lock`, so two runs convert once."""
    from bench.weights.header import read_header

    source = get_source(name, "weights")
    path = fetch_source(source, progress=progress, log=log, allow_http=allow_http, **options)
    result = WeightsResult(name, path, actions=[f"{path} verified"])
    if source.variant is None:
        return result
    target = default_weights_path(source.variant)
    origin = f"caffe:{Path(source.filename).stem}"
    with exclusive(lock_path_for(target), f"conversion of {path.name}", log=log):
        if target.exists():
            metadata = read_header(target).get("__metadata__") or {}
            if metadata.get("origin") == origin:
                result.archive = target
                result.actions.append(f"already converted: {target}")
                return result
            log(f"{target} holds other weights (origin {metadata.get('origin')!r}); "
                "replacing it")
        from bench.weights.convert import convert
        from bench.weights.progress import ProgressBars

        bars = ProgressBars(enabled=progress, prefix="convert: ")
        try:
            conversion = convert(path, target, variant=source.variant, force=True,
                                 progress=bars)
        finally:
            bars.close()
    result.archive = target
    result.actions.append(f"converted: {conversion.summary()}")
    return result
