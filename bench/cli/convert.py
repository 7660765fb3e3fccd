"""`convert`: weights from Caffe / PyTorch / Keras / safetensors (or random) -> the neutral archive.

Thin: parses options, shows progress, prints one summary line. The work is bench/weights/convert.py;
torch is imported (backends.read_torch_state_dict) only when the input is a .pth file.
"""

from __future__ import annotations

import click

from backends import read_torch_state_dict
from bench.cli.options import seed_option
from bench.core.errors import UsageError, printable
from bench.model.spec import MODEL_NAMES


@click.command(name="convert")
@click.argument("paths", nargs=-1, metavar="INPUT OUTPUT.safetensors",
                type=click.Path(dir_okay=False))
@click.option("--variant", type=click.Choice(MODEL_NAMES), default=None,
              help="Model of INPUT, only where its content cannot tell (NYUD colour vs HHA "
                   "have identical tensors; pytorch-fcn's at-once .pth); must agree with the "
                   "file and is recorded in the archive. With --random: the model to generate; "
                   "with --fuse: the late-fusion model to build.")
@click.option("--init-for", type=click.Choice(MODEL_NAMES), default=None,
              help="ImageNet INPUT (VGG16, or CaffeNet for voc-fcn-alexnet): build the "
                   "training init of this model (reference surgery) [default: fcn32s / "
                   "voc-fcn-alexnet].")
@click.option("--fuse", "fuse", multiple=True, metavar="INPUT=ARCHIVE",
              help="Late fusion: one single-stream archive per input of --variant "
                   "nyud-fcn32s-color-hha (--fuse color=A --fuse hha=B); no INPUT.")
@click.option("--pth-convention", type=click.Choice(["torchvision", "caffe"]),
              default="torchvision", show_default=True,
              help="Input convention of a VGG16 .pth: torchvision (RGB 0-1 mean/std; folded "
                   "into conv1_1) or caffe (BGR 0-255, e.g. pytorch-fcn's vgg16_from_caffe).")
@click.option("--random", "random_weights", is_flag=True,
              help="Write deterministic random weights (bench.model.init.random_params); no INPUT.")
@seed_option("--seed", help="Seed for --random.")
@click.option("--num-classes", type=click.IntRange(min=1), default=None,
              help="Classes of a --random or --init-for archive [default: the model's].")
@click.option("--width-divisor", type=click.IntRange(min=1), default=1, show_default=True,
              help="--random only: narrow test-only network (channels // N).")
@click.option("--force", is_flag=True,
              help="Replace OUTPUT if it exists (atomically: it is never half-written).")
def command(paths: tuple[str, ...], variant: str | None, init_for: str | None,
            fuse: tuple[str, ...], pth_convention: str, random_weights: bool, seed: int,
            num_classes: int | None, width_divisor: int, force: bool) -> None:
    """Convert weights into an fcn-bench archive (safetensors, Caffe names and layouts).

    The source format is read from the file's content (safetensors, HDF5, PyTorch zip or
    legacy, else a Caffe protobuf). OUTPUT must not exist unless --force is given.

    \b
    Examples:
      python cli.py convert fcn8s-heavy-pascal.caffemodel fcn8s.safetensors
      python cli.py convert VGG_ILSVRC_16_layers.caffemodel fcn32s-init.safetensors
      python cli.py convert vgg16-397923af.pth tv-init.safetensors --init-for fcn8s-atonce
      python cli.py convert vgg16_weights_tf_dim_ordering_tf_kernels.h5 keras-init.safetensors
      python cli.py convert fcn8s_atonce_from_caffe.pth atonce.safetensors --variant fcn8s-atonce
      python cli.py convert fcn8s.safetensors checked.safetensors      # re-validate an archive
      python cli.py convert --random --variant fcn8s --seed 3 random-fcn8s.safetensors
      python cli.py convert nyud-fcn32s-hha-heavy.caffemodel hha.safetensors \
          --variant nyud-fcn32s-hha               # colour and HHA nets have identical tensors
      python cli.py convert bvlc_reference_caffenet.caffemodel alexnet-init.safetensors
      python cli.py convert VGG_ILSVRC_16_layers.caffemodel rgbd-init.safetensors \
          --init-for nyud-fcn32s-color-d          # depth channel = mean of conv1_1's B,G,R
      python cli.py convert --fuse color=color.safetensors --fuse hha=hha.safetensors \
          --variant nyud-fcn32s-color-hha color-hha-init.safetensors
    """
    from pathlib import Path

    from bench.core.outputs import Output, check_outputs
    from bench.weights.convert import convert, convert_random
    from bench.weights.fusion import convert_fused
    from bench.weights.progress import ProgressBars

    if fuse:
        if random_weights or len(paths) != 1 or variant is None:
            raise UsageError("convert --fuse INPUT=ARCHIVE ... needs --variant (the late-fusion "
                             "model) and only OUTPUT.safetensors")
        sources = {}
        for item in fuse:
            name, sep, archive = item.partition("=")
            if not sep or not name or not archive or name in sources:
                raise UsageError(f"--fuse {item!r}: expected INPUT=ARCHIVE, each input once")
            sources[name] = Path(archive)
        check_outputs({"OUTPUT": Output(Path(paths[0]), what="weights archive")},
                      {f"--fuse {name}": path for name, path in sources.items()})
        result = convert_fused(paths[0], sources, variant, force=force)
        click.echo(printable(result.summary()))
        return
    if random_weights:
        if len(paths) != 1:
            raise UsageError("convert --random takes only OUTPUT.safetensors (no INPUT)")
        if variant is None:
            raise UsageError("convert --random needs --variant (one of "
                             f"{', '.join(MODEL_NAMES)})")
        result = convert_random(paths[0], variant, seed, num_classes=num_classes,
                                width_divisor=width_divisor, force=force)
        click.echo(printable(result.summary()))
        return
    if len(paths) != 2:
        raise UsageError("convert needs INPUT and OUTPUT.safetensors (or --random OUTPUT); "
                         "see `python cli.py convert --help`")
    if width_divisor != 1:
        raise UsageError("--width-divisor applies to --random only (a file has its own widths)")
    # Never replace the source with its own conversion (even with --force).
    check_outputs({"OUTPUT": Output(Path(paths[1]), what="weights archive")},
                  {"INPUT": Path(paths[0])})
    bars = ProgressBars()  # shown only when stderr is a terminal
    try:
        result = convert(paths[0], paths[1], variant=variant, init_for=init_for,
                         pth_convention=pth_convention, num_classes=num_classes, force=force,
                         progress=bars, read_pth=read_torch_state_dict)
    finally:
        bars.close()
    rate = result.source_bytes / 2**20 / max(result.seconds, 1e-9)
    click.echo(printable(f"{result.summary()} (from {result.source_format}, "
               f"{result.source_bytes / 2**20:.1f} MiB in {result.seconds:.1f} s, "
               f"{rate:.0f} MiB/s)"))  # origin comes from the file: escape it
