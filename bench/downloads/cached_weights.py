"""Which archive a command scores: the one given with --weights, else the converted official
weights in the cache (bench.downloads.cache, where `download weights` puts them), opened once with
bench.weights.archive.open_archive. A missing file names the command that fetches or converts it.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import WeightsError
from bench.downloads.cache import default_weights_path
from bench.weights.archive import OpenArchive, open_archive


def open_voc_weights(variant: str, weights: Path | None) -> OpenArchive:
    """PASCAL VOC weights for `variant`: the given file, or the converted official weights in
    the cache; another variant's or a non-21-class net is refused, and a missing file names the
    command that fetches it."""
    path = weights if weights is not None else default_weights_path(variant)
    if not path.exists():
        if weights is not None:
            raise WeightsError(path, "no such file")
        raise WeightsError(path, f"no converted {variant} weights in the cache: run `python "
                                 f"cli.py download weights {variant}` (fetches the official "
                                 "caffemodel and converts it here), or convert a caffemodel you "
                                 f"have: `python cli.py convert FILE.caffemodel {path}`; or pass "
                                 "--weights FILE")
    archive = open_archive(path, variant)
    if archive.spec.num_classes != 21:
        raise WeightsError(path, f"has {archive.spec.num_classes} classes; PASCAL VOC needs 21")
    return archive


def open_model_weights(variant: str, weights: Path | None) -> OpenArchive:
    """Weights of a model of another data set: --weights, else its converted weights in the
    cache (a missing file names the command that fetches them)."""
    path = weights if weights is not None else default_weights_path(variant)
    if not path.exists():
        raise WeightsError(path, "no such file" if weights is not None else
                           f"no converted {variant} weights in the cache: run `python cli.py "
                           f"download weights {variant}`, or pass --weights FILE")
    return open_archive(path, variant)
