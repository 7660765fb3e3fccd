"""`download`: datasets, the seg11valid list and weights, resumable and checksum-verified.

Thin: parses options and prints what was done; the work is bench/downloads/ (provision.py: fetch,
extract, convert and mark complete; fetch.py: verification and trust; transfer.py: HTTP).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bench.cli.options import data_root_option
from bench.core.errors import UsageError
from bench.core.outputs import check_writable
from bench.downloads.cache import default_data_root, downloads_dir, weights_dir
from bench.downloads.catalog import CATALOG, DATASETS, WEIGHTS, pinned_checksums, trust_state
from bench.downloads.fetch import forget
from bench.downloads.provision import prepare_dataset, prepare_weights
from bench.model.spec import VARIANTS

TARGETS = (*DATASETS, "weights", "list", "forget")


def _short(checksum: str) -> str:
    algo, _, value = checksum.partition(" ")
    return f"{algo} {value[:12]}..."


def _catalog_rows() -> list[dict]:
    """Per file: the pinned checksums (with where they were published) and what is not pinned."""
    rows = []
    for source in CATALOG.values():
        pinned = pinned_checksums(source)
        rows.append({"name": source.name, "group": source.group, "file": source.filename,
                     "bytes": source.size, "pinned": pinned,
                     "pinned_source": source.checksum_source if pinned else None,
                     "not_pinned": None if pinned else trust_state(source),
                     "urls": list(source.urls)})
    return rows


def _catalog_table(rows: list[dict]) -> str:
    """Fits 120 columns: checksums shortened (`--format json` has them in full)."""
    from tabulate import tabulate

    table = []
    for row in rows:
        size = f"{row['bytes']:,}" if row["bytes"] else "-"
        if row["pinned"]:
            pinned, unpinned = "\n".join(_short(c) for c in row["pinned"]), "-"
        else:
            state = row["not_pinned"]
            pinned = "none published"
            unpinned = (f"sha256 {state.split()[1][:12]}... (TOFU)"
                        if state.startswith("sha256") else "none recorded yet (TOFU)")
        file = row["file"] if len(row["file"]) <= 29 else row["file"][:26] + "..."
        table.append([row["name"], file, size, pinned, unpinned])
    return tabulate(table, headers=["name", "file", "bytes", "pinned (published)",
                                   "not pinned"],
                    tablefmt="simple")


@click.command(name="download")
@click.argument("target", type=click.Choice(TARGETS))
@click.argument("names", nargs=-1)
@data_root_option()
@click.option("--archive", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Use this local copy of the dataset archive instead of "
                                 "downloading it (verified against the pinned checksum).")
@click.option("--allow-http", is_flag=True, default=False,
              help="Weights without a published checksum: accept a plain-http copy when https "
                   "fails (used, content-checked, but its hash is never recorded).")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]),
              default="table", show_default=True, help="`download list` output.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars on stderr.")
def command(target: str, names: tuple[str, ...], data_root: Path | None,
            archive: Path | None, allow_http: bool, output_format: str,
            progress: bool) -> None:
    """Download and verify data or weights (https first, resumable, pinned checksums).

    TARGET is a dataset (voc2012, voc2011, sbd; nyud, siftflow, voc2010 and pascalcontext,
    ade20k: docs/datasets.md), the seg11valid list, `weights` followed by
    one or more of: fcn32s fcn16s fcn8s fcn8s-atonce vgg16-caffe vgg16-torchvision
    vgg16-keras, `list` to show the catalog and which checksums are pinned, or `forget NAME`
    to drop a checksum recorded on first use (and the cached copy). Archives and weights are
    kept in the cache ($FCN_BENCH_CACHE or ~/.cache/fcn-bench); an interrupted download
    resumes when run again; concurrent runs take turns. FCN weights are converted to the
    archive `reproduce` uses by default. Offline: put the file where the error says, or pass
    --archive FILE for a dataset. Threat model: docs/downloads.md.

    \b
    Examples:
      python cli.py download voc2012 --data-root data
      python cli.py download voc2011 --data-root data
      python cli.py download seg11valid --data-root data
      python cli.py download sbd --data-root data
      python cli.py download nyud --data-root data
      python cli.py download weights fcn8s fcn32s
      python cli.py download voc2012 --archive ~/VOCtrainval_11-May-2012.tar
      python cli.py download list
      python cli.py download forget fcn32s
    """
    if target == "list":
        rows = _catalog_rows()
        if output_format == "json":
            click.echo(json.dumps(rows, indent=2))
            return
        click.echo(_catalog_table(rows))
        click.echo(f"\ncache: {downloads_dir()} (full checksums and their sources: "
                   "--format json; docs/downloads.md)")
        return
    if target == "forget":
        if not names:
            raise UsageError(f"download forget needs one or more of: {', '.join(CATALOG)}")
        for name in dict.fromkeys(names):
            for action in forget(name):
                click.echo(f"{name}: {action}")
        return
    if allow_http and target != "weights" and (target not in CATALOG
                                               or CATALOG[target].pinned):
        raise UsageError("--allow-http applies to `download weights` and to data sets without a "
                         "published checksum (pinned ones already accept plain http)")
    if target != "weights":
        if names:
            raise UsageError(f"download {target} takes no names (got {' '.join(names)})")
        root = data_root if data_root is not None else default_data_root()
        check_writable(root, folder=True, what="data root")
        if archive is None and CATALOG[target].group == "dataset":  # archives go to the cache
            check_writable(downloads_dir(), folder=True, what="download cache")
        extra = {"allow_http": True} if allow_http else {}
        result = prepare_dataset(target, root, archive=archive, progress=progress, **extra)
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
        result = prepare_weights(name, progress=progress, allow_http=allow_http)
        for action in result.actions:
            click.echo(f"{name}: {action}")
        if result.archive is not None and CATALOG[name].variant in VARIANTS:
            click.echo(f"{name}: reproduce uses it by default: python cli.py reproduce "
                       f"--variant {CATALOG[name].variant} --backend torch")
        elif result.archive is not None:
            click.echo(f"{name}: segment an image with it: python cli.py predict --weights "
                       f"{result.archive} --image IMAGE --out-labels LABELS.png")
        else:
            target = ("voc-fcn-alexnet" if CATALOG[name].content == "alexnet-caffemodel"
                      else "fcn32s")
            click.echo(f"{name}: to build an FCN training init from it: python cli.py convert "
                       f"{result.download} {target}-init.safetensors --init-for {target}")
