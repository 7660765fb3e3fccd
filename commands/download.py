"""`download`: datasets, the seg11valid list and weights, resumable and checksum-verified.

Thin: parses options and prints what was done; the work is bench/download.py (catalog, HTTP,
extraction). Imports no framework.
"""

from __future__ import annotations

from pathlib import Path

import click

from bench.cache import default_data_root, downloads_dir, weights_dir
from bench.download import CATALOG, WEIGHTS, prepare_dataset, prepare_weights
from bench.errors import UsageError
from bench.outputs import check_writable
from commands._options import data_root_option

TARGETS = ("voc2012", "voc2011", "sbd", "seg11valid", "weights", "list")


def _catalog_table() -> str:
    from tabulate import tabulate

    rows = []
    for source in CATALOG.values():
        checksums = [f"md5 {v}" for v in source.md5]
        checksums += [f"sha1 {source.sha1}"] if source.sha1 else []
        checksums += [f"sha256 {source.sha256}"] if source.sha256 else []
        size = f"{source.size:,}" if source.size else "-"
        rows.append([source.name, source.group, source.filename, size,
                     "\n".join(checksums) or "recorded on first download", source.urls[0]])
    return tabulate(rows, headers=["name", "group", "file", "bytes", "checksum", "first URL"],
                    tablefmt="simple")


@click.command(name="download")
@click.argument("target", type=click.Choice(TARGETS))
@click.argument("names", nargs=-1)
@data_root_option()
@click.option("--archive", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Use this local copy of the dataset archive instead of "
                                 "downloading it (verified against the pinned checksum).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars on stderr.")
def command(target: str, names: tuple[str, ...], data_root: Path | None,
            archive: Path | None, progress: bool) -> None:
    """Download and verify data or weights (https first, resumable, pinned checksums).

    TARGET is a dataset (voc2012, voc2011, sbd), the seg11valid list, `weights` followed by
    one or more of: fcn32s fcn16s fcn8s fcn8s-atonce vgg16-caffe vgg16-torchvision
    vgg16-keras, or `list` to show the catalog. Archives and weights are kept in the cache
    ($FCN_BENCH_CACHE or ~/.cache/fcn-bench); an interrupted download resumes when run again.
    FCN weights are converted to the archive `reproduce` uses by default.

    \b
    Examples:
      python cli.py download voc2012 --data-root data
      python cli.py download voc2011 --data-root data
      python cli.py download seg11valid --data-root data
      python cli.py download sbd --data-root data
      python cli.py download weights fcn8s fcn32s
      python cli.py download voc2012 --archive ~/VOCtrainval_11-May-2012.tar
      python cli.py download list
    """
    if target == "list":
        click.echo(_catalog_table())
        click.echo(f"\ncache: {downloads_dir()}")
        return
    if target != "weights":
        if names:
            raise UsageError(f"download {target} takes no names (got {' '.join(names)})")
        root = data_root if data_root is not None else default_data_root()
        check_writable(root, folder=True, what="data root")
        if archive is None and CATALOG[target].group == "dataset":  # archives go to the cache
            check_writable(downloads_dir(), folder=True, what="download cache")
        result = prepare_dataset(target, root, archive=archive, progress=progress)
        for action in result.actions:
            click.echo(f"{target}: {action}")
        return
    if not names:
        raise UsageError(f"download weights needs one or more of: {', '.join(WEIGHTS)}")
    if archive is not None:
        raise UsageError("--archive applies to datasets; for a local weights file use "
                         "`python cli.py convert FILE OUTPUT.safetensors`")
    unknown = [name for name in names if name not in WEIGHTS]
    if unknown:
        raise UsageError(f"unknown weights {', '.join(repr(n) for n in unknown)}; choose from "
                         f"{', '.join(WEIGHTS)}")
    for folder, what in ((downloads_dir(), "download cache"), (weights_dir(), "weights cache")):
        check_writable(folder, folder=True, what=what)
    for name in dict.fromkeys(names):
        result = prepare_weights(name, progress=progress)
        for action in result.actions:
            click.echo(f"{name}: {action}")
        if result.archive is not None:
            click.echo(f"{name}: reproduce uses it by default: python cli.py reproduce "
                       f"--variant {CATALOG[name].variant} --backend torch")
        else:
            click.echo(f"{name}: to build an FCN training init from it: python cli.py convert "
                       f"{result.download} fcn32s-init.safetensors --init-for fcn32s")
