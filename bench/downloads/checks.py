"""What a downloaded file without a published checksum must contain before fcn-bench trusts it.

Trust on first use records a SHA-256 for good, so the first copy has to be right: an HTML error
page served with status 200, or a transfer cut short with no Content-Length, must not become the
trusted hash (docs/downloads.md, "Trust on first use"). A caffemodel is accepted only if it
parses completely (bench.weights.caffe.read_caffemodel, streaming) and every layer's blobs have the
shapes the spec (bench/model/spec.py) derives for the variant: nothing here is typed in.

Stdlib + numpy (through bench.weights.caffe).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from bench.core.errors import DownloadError, WeightsError
from bench.downloads.catalog import Source
from bench.model.spec import Conv, build_spec
from bench.weights.caffe import read_caffemodel

HTML_PREFIXES = (b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")


def _drop_leading_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    index = 0
    while index < len(shape) - 1 and shape[index] == 1:
        index += 1
    return shape[index:]


def _same_shape(found: tuple[int, ...], expected: tuple[int, ...], flattened_ok: bool) -> bool:
    """Equal up to legacy leading 1-dims (Caffe's 4-D BlobProto); an InnerProduct weight may
    be stored flattened ([4096, 25088] for fc6's 4096x512x7x7) where `flattened_ok`
    (docs/fidelity.md "The caffemodel format", "Weight layouts")."""
    if _drop_leading_ones(found) == _drop_leading_ones(expected):
        return True
    found = _drop_leading_ones(found)
    return (flattened_ok and len(found) == 2 and found[0] == expected[0]
            and math.prod(found) == math.prod(expected))


def looks_like_html(path: str | Path) -> bool:
    """True when the file starts like an HTML/XML page (an error or login page served as 200)."""
    with open(path, "rb") as handle:
        head = handle.read(512).lstrip().lower()
    return head.startswith(HTML_PREFIXES)


def check_dataset_archive(source: Source, path: Path) -> str:
    """A data set archive with no published checksum must read to its end as a tar or zip (a
    truncated transfer fails here, before its hash is recorded) and hold every `expect` path."""
    import tarfile
    import zipfile

    if looks_like_html(path):
        raise DownloadError(f"{path}: is an HTML page, not the {source.name} archive")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        else:
            with tarfile.open(path) as archive:  # reads the whole stream: truncation shows
                names = [member.name for member in archive]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise DownloadError(f"{path}: not a complete tar or zip archive ({error})") from None
    prefix = f"{source.extract_into}/" if source.extract_into else ""
    wanted = [rel.removeprefix(prefix) for rel in source.expect]
    padded = [f"/{name.strip('/')}/" for name in names]
    missing = [rel for rel in wanted if not any(f"/{rel}/" in name for name in padded)]
    if missing:
        raise DownloadError(f"{path}: not the {source.name} archive: no {', '.join(missing)}")
    return f"read to its end as an archive of {len(names):,} entries holding {', '.join(wanted)}"


def _blob_shapes(path: Path) -> dict[str, list[tuple[int, ...]]]:
    """layer name -> its blobs' shapes, streaming (each layer's arrays are dropped at once)."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for layer in read_caffemodel(path):
        if layer.blobs:
            shapes[layer.name] = [tuple(int(d) for d in blob.shape) for blob in layer.blobs]
    return shapes


def _expected(source: Source) -> tuple[dict[str, list[tuple[int, ...]]], bool]:
    """(layer -> expected blob shapes, whether other layers are allowed) for `source`."""
    if source.content == "fcn-caffemodel":
        spec = build_spec(source.variant or "", width_divisor=source.width_divisor)
        exact = True
    else:  # an ImageNet trunk (VGG16 conv1_1 .. fc7, CaffeNet conv1 .. fc7); fc8 may follow
        model = "voc-fcn-alexnet" if source.content == "alexnet-caffemodel" else "fcn32s"
        spec = build_spec(model, width_divisor=source.width_divisor)
        exact = False
    trunk = {layer.name for layer in spec.layers if isinstance(layer, Conv) and not
             layer.zero_init}
    expected: dict[str, list[tuple[int, ...]]] = {}
    for param in spec.parameters():
        if exact or param.layer in trunk:
            expected.setdefault(param.layer, []).append(param.shape)
    return expected, not exact


def _problems(found: Mapping[str, list[tuple[int, ...]]],
              expected: Mapping[str, list[tuple[int, ...]]], extra_ok: bool) -> list[str]:
    problems = []
    for layer, shapes in expected.items():
        blobs = found.get(layer)
        if blobs is None:
            problems.append(f"layer {layer} is missing")
        elif len(blobs) != len(shapes):
            problems.append(f"layer {layer} has {len(blobs)} blobs, expected {len(shapes)}")
        else:
            problems += [f"{layer} blob {i} has shape {list(got)}, expected {list(want)}"
                         for i, (got, want) in enumerate(zip(blobs, shapes, strict=True))
                         if not _same_shape(got, want, flattened_ok=layer.startswith("fc"))]
    if not extra_ok:
        problems += [f"unexpected layer {layer}" for layer in found if layer not in expected]
    return problems


def check_content(source: Source, path: str | Path) -> str:
    """Validate `path` as the file `source` describes; returns a short description of what was
    checked. Raises DownloadError (one line, naming the file) when it is not that file."""
    path = Path(path)
    if not source.content:
        return "no content check (the pinned checksum identifies the file)"
    if source.content == "dataset-archive":
        return check_dataset_archive(source, path)
    if looks_like_html(path):
        raise DownloadError(f"{path}: is an HTML page, not a Caffe model (an error or login "
                            "page served in its place)")
    try:
        found = _blob_shapes(path)
    except WeightsError as error:
        raise DownloadError(f"{path}: not a complete Caffe model ({error.problem})") from None
    expected, extra_ok = _expected(source)
    problems = _problems(found, expected, extra_ok)
    what = {"fcn-caffemodel": source.variant, "alexnet-caffemodel": "CaffeNet"}.get(
        source.content, "VGG16")
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more"
                                           if len(problems) > 4 else "")
        raise DownloadError(f"{path}: not the {what} Caffe model: {shown}")
    count = sum(len(v) for v in expected.values())
    return f"parsed as the {what} Caffe model ({count} blobs with the expected shapes)"
