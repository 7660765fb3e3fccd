"""`demo`: a generated VOC2011/VOC2012/SBD tree and random weights, to try every command offline.

The data is bench.data.synthetic's (seeded: everybody gets the same bytes); the weights are
bench.weights.convert.convert_random archives. The command ends by printing the walkthrough of the
README section "Try it without downloads", with this run's paths filled in. Imports no framework.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from bench.cli.options import data_root_option, plural, seed_option, variant_option
from bench.data.synthetic import DEMO_MARKER, DEMO_MAX_SIZE, DEMO_MIN_SIZE, DEMO_SEED

# The walkthrough's training run (README "Try it without downloads" says why): a narrow FCN-8s
# from random weights, 200 updates, validated on the demo's val split.
TRAIN_VARIANT = "fcn8s"
TRAIN_WIDTH_DIVISOR = 8
TRAIN_LR = "1e-9"
TRAIN_ITERS = 200
WEIGHTS_SEED = 0
# The paper's other benchmarks (bench.data.synthetic_zoo trees): one released model per family, on
# narrow random weights (channels // 8: a few MB each) so each reproduce takes seconds.
BENCHMARK_MODELS = ("voc-fcn-alexnet", "nyud-fcn32s-color-hha", "siftflow-fcn8s",
                    "pascalcontext-fcn8s", "ade20k-fcn8s")
BENCHMARK_WIDTH_DIVISOR = 8
BENCHMARK_IMAGES = 6


def walkthrough(data_root: Path, variant: str, first_val_id: str,
                backends: list[str]) -> list[tuple[str, list[str]]]:
    """(what it shows, argv after `python cli.py`) for every step of the README walkthrough."""
    root = str(data_root)
    runs = data_root / "runs"
    weights = str(data_root / "weights" / f"{variant}.safetensors")
    preds = runs / "predictions"
    # reproduce writes one sub-folder per backend only when it runs several.
    first_preds = preds / backends[0] if len(backends) > 1 else preds
    image = data_root / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{first_val_id}.jpg"
    train_out = runs / f"train-{TRAIN_VARIANT}"
    return [
        ("score the random weights on the demo's val split, every installed backend",
         ["reproduce", "--variant", variant, "--backend", "all", "--data-root", root,
          "--split", "val", "--weights", weights, "--save-predictions", str(preds),
          "--output", str(runs / f"reproduce-{variant}.json")]),
        ("re-score the saved label PNGs (any framework's predictions work)",
         ["evaluate", "--data-root", root, "--split", "val", "--predictions", str(first_preds),
          "--output", str(runs / f"evaluate-{backends[0]}.json")]),
        ("segment one photo: labels, overlay with a class legend",
         ["predict", "--variant", variant, "--weights", weights, "--image", str(image),
          "--out-labels", str(runs / "labels.png"), "--overlay", str(runs / "overlay.png")]),
        (f"train a narrow {TRAIN_VARIANT} for {TRAIN_ITERS} updates: mean IU climbs above the "
         "all-background score",
         ["train", "--variant", TRAIN_VARIANT, "--backend", backends[0], "--data-root", root,
          "--init", "random", "--width-divisor", str(TRAIN_WIDTH_DIVISOR), "--lr", TRAIN_LR,
          "--iters", str(TRAIN_ITERS), "--eval-every", str(TRAIN_ITERS // 2),
          "--snapshot-every", str(TRAIN_ITERS), "--val-split", "val", "--out", str(train_out),
          "--plots"]),
        ("the two backends layer by layer on these weights",
         ["parity", "--variant", variant, "--weights", weights]),
        ("the deterministic CI suite against the committed baseline, keeping this run's record",
         ["golden", "--record", str(runs / "golden.json")]),
        ("this run's golden record against the committed baseline (a PR comment: failures only)",
         ["compare", "reference_results/ci/golden.json", str(runs / "golden.json"),
          "--format", "github", "--failures-only"]),
        ("the training run's validation records over its iterations",
         ["history", str(train_out / "eval"), "--format", "github"]),
    ]


def benchmark_walkthrough(data_root: Path) -> list[tuple[str, list[str]]]:
    """(what it shows, argv) for one model of every other benchmark family on the demo trees."""
    from bench.data.model_data import dataset_name, default_split

    steps = []
    for model in BENCHMARK_MODELS:
        weights = data_root / "weights" / f"{model}-w{BENCHMARK_WIDTH_DIVISOR}.safetensors"
        record = data_root / "runs" / f"reproduce-{model}.json"
        # The demo's VOC tree is too small for seg11valid (736 ids): its own val split.
        split = "val" if dataset_name(model) == "voc" else default_split(model)
        steps.append((f"{model} on the generated {dataset_name(model)} '{split}' split, its "
                      "paper table beside the run",
                      ["reproduce", "--variant", model, "--backend", "all", "--data-root",
                       str(data_root), "--split", split, "--weights", str(weights),
                       "--output", str(record)]))
    return steps


def format_command(argv: list[str], width: int = 96) -> str:
    """`python cli.py ARGV`, shell-quoted, wrapped with backslashes between options so that a
    line stays under `width` columns (an option and its value stay together)."""
    groups: list[str] = []
    for arg in argv:
        quoted = shlex.quote(arg)
        if groups and groups[-1].startswith("--") and " " not in groups[-1] and \
                not arg.startswith("--"):
            groups[-1] += " " + quoted
        else:
            groups.append(quoted)
    lines = ["python cli.py"]
    for group in groups:
        if len(lines[-1]) + 1 + len(group) > width:
            lines[-1] += " \\"
            lines.append("    " + group)
        else:
            lines[-1] += " " + group
    return "\n".join(lines)


def _check_root(data_root: Path) -> None:
    """Refuse to mix generated images into a real data set (a folder with data but no marker)."""
    from bench.core.errors import UsageError

    if not data_root.exists() or (data_root / DEMO_MARKER).is_file():
        return
    if not data_root.is_dir():
        raise UsageError(f"--data-root {data_root} is a file; give a folder for the demo data")
    if any(data_root.iterdir()):
        raise UsageError(f"--data-root {data_root} is not empty and holds no earlier demo "
                         f"({DEMO_MARKER}); give a new folder so generated images never mix "
                         "with real data")


@click.command(name="demo")
@data_root_option(required=True)
@click.option("--num-images", type=click.IntRange(2, 2000), default=24, show_default=True,
              help="Generated images: even positions train, odd ones val.")
@seed_option("--seed", default=DEMO_SEED, help="Seed of the generated images.")
@variant_option(multiple=True, default_help="all four")
@click.option("--width-divisor", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Random weights for a narrow net (channels // N); 1 = VGG16 (~540 MB a "
                   "variant).")
@click.option("--benchmarks/--no-benchmarks", default=True, show_default=True,
              help="Also write NYUDv2, SIFT Flow, PASCAL-Context and ADE20K trees in their real "
                   f"layouts ({BENCHMARK_IMAGES} images each) and narrow random weights for "
                   f"one model per family ({', '.join(BENCHMARK_MODELS)}).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
def command(data_root: Path, num_images: int, seed: int, variants: tuple[str, ...],
            width_divisor: int, benchmarks: bool, progress: bool) -> None:
    """Write a generated VOC2011/VOC2012/SBD data set and random weights; print what to try next.

    The images are VOC-sized (375-500 px a side), seeded (the same bytes everywhere) and
    learnable: every class is drawn in its own colour, with VOC's void borders. Weights are
    seeded random archives of every variant in DATA_ROOT/weights/. No download, no GPU.
    Running it again on the same folder rewrites the same files and keeps existing weights.

    \b
    Examples:
      python cli.py demo --data-root demo
      python cli.py demo --data-root demo --variant fcn8s --width-divisor 8 --num-images 8
    """
    from tqdm import tqdm

    from backends import available_backends
    from bench.core.atomic import atomic_write_text
    from bench.data.synthetic import make_demo_tree
    from bench.model.spec import VARIANTS
    from bench.weights.convert import convert_random

    _check_root(data_root)
    variants = tuple(dict.fromkeys(variants)) or VARIANTS
    with tqdm(total=num_images, desc="demo images", unit="img", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        lists = make_demo_tree(data_root, num_images=num_images, seed=seed,
                               progress=lambda done, total: bar.update(1))
    atomic_write_text(data_root / DEMO_MARKER, json.dumps({
        "kind": "demo", "seed": seed, "num_images": num_images, "sizes_px":
        [DEMO_MIN_SIZE, DEMO_MAX_SIZE], "weights_seed": WEIGHTS_SEED,
        "width_divisor": width_divisor, "variants": list(variants)}, indent=2) + "\n")
    click.echo(f"wrote {plural(num_images, 'image')} ({len(lists['train'])} train, "
               f"{len(lists['val'])} val, {DEMO_MIN_SIZE}-{DEMO_MAX_SIZE} px) to "
               f"{data_root}/VOCdevkit and {data_root}/benchmark_RELEASE")
    for variant in tqdm(variants, desc="random weights", unit="variant", file=sys.stderr,
                        disable=not progress, dynamic_ncols=True):
        path = data_root / "weights" / f"{variant}.safetensors"
        if path.exists():
            click.echo(f"kept {path}")
            continue
        result = convert_random(path, variant, WEIGHTS_SEED, width_divisor=width_divisor)
        click.echo(result.summary())

    if benchmarks:
        _write_benchmarks(data_root, seed)

    backends = available_backends() or ["torch"]
    variant = "fcn8s" if "fcn8s" in variants else variants[0]
    click.echo("\nnext: the README's \"Try it without downloads\", with these paths (bash):\n")
    for what, argv in walkthrough(data_root, variant, lists["val"][0], backends):
        click.echo(f"# {what}\n{format_command(argv)}")
    if benchmarks:
        click.echo("\nthe paper's other benchmarks (generated NYUDv2, SIFT Flow, PASCAL-Context, "
                   "ADE20K; narrow random weights):\n")
        for what, argv in benchmark_walkthrough(data_root):
            click.echo(f"# {what}\n{format_command(argv)}")


def _write_benchmarks(data_root: Path, seed: int) -> None:
    """The four other data sets in their real layouts, and one narrow archive per family."""
    from bench.data.synthetic_zoo import WRITERS
    from bench.weights.convert import convert_random

    for name, write in WRITERS.items():
        folder = write(data_root, seed=seed, n=BENCHMARK_IMAGES)
        click.echo(f"wrote {plural(BENCHMARK_IMAGES, 'image')} of generated {name} to {folder}")
    for model in BENCHMARK_MODELS:
        path = data_root / "weights" / f"{model}-w{BENCHMARK_WIDTH_DIVISOR}.safetensors"
        if path.exists():
            click.echo(f"kept {path}")
            continue
        click.echo(convert_random(path, model, WEIGHTS_SEED,
                                  width_divisor=BENCHMARK_WIDTH_DIVISOR).summary())
