"""`parity`: run two implementations of one FCN on the same weights and input, layer by layer.

The implementations are backends (torch, tensorflow/tf) or "reference" (the float64 numpy forward
pass of bench/model/reference_forward.py). Frameworks are imported only inside the command function.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from bench.cli.options import (
    SIZE,
    FiniteFloat,
    backend_pair_option,
    device_option,
    seed_option,
    variant_option,
    weights_option,
)
from bench.core.contracts import PRECISIONS
from bench.model.spec import MODEL_NAMES

REFERENCE = "reference"


def parity_image(height: int, width: int, seed: int) -> np.ndarray:
    """A deterministic (1, 3, H, W) input: a seeded random RGB photo, preprocessed like VOC."""
    from bench.data.voc import preprocess

    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return preprocess(rgb)[None]


def parity_inputs(spec, height: int, width: int, seed: int) -> np.ndarray | dict[str, np.ndarray]:
    """The input(s) of a model: `parity_image` for a one-input colour model; otherwise one
    seeded random 8-bit image per input minus its catalogue mean (bench/model/zoo.py), by name."""
    from bench.model.spec import resolve_model

    if spec.input_names == ("data",) and spec.inputs[0].channels == 3:
        return parity_image(height, width, seed)
    rng = np.random.default_rng(seed)
    inputs = {}
    for item in resolve_model(spec.variant).inputs:
        pixels = rng.integers(0, 256, (1, item.channels, height, width)).astype(np.float32)
        if item.kind == "logd":  # log depth of 0.5 .. 10 m in millimetres
            pixels = np.log(rng.uniform(500, 10_000, pixels.shape)).astype(np.float32)
        inputs[item.name] = pixels - np.asarray(item.mean, np.float32).reshape(1, -1, 1, 1)
    return inputs


@click.command(name="parity")
@variant_option(default=None, default_help="detected from --weights, else fcn8s",
                models=MODEL_NAMES)
@seed_option("--random-seed", default=None,
             help="Seed of the random weights used without --weights  [default: 0]")
@click.option("--width-divisor", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Narrow test-only net (channels // N); 1 = VGG16. Random weights only.")
@weights_option(random_fallback=True)
@click.option("--size", type=SIZE, default="37x53", show_default=True, metavar="HxW",
              help="Input height x width (odd sizes exercise ceil pooling and the crops).")
@seed_option("--input-seed", help="Seed of the random input image.")
@backend_pair_option("--backends", "pair", default="torch,tensorflow", extra=(REFERENCE,))
@device_option
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="Backend precision (fp32 = TF32 off); picks the tolerance.")
@click.option("--max-rel", type=FiniteFloat(min=0), default=None,
              help="Override the max relative difference per blob.")
@click.option("--min-label-agreement", type=FiniteFloat(0, 1), default=None,
              help="Override the fraction of pixels whose labels must agree.")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the 'parity' JSON record here (atomically).")
def command(variant: str | None, weights: Path | None, random_seed: int | None,
            size: tuple[int, int],
            input_seed: int, pair: str, device: str, precision: str, width_divisor: int,
            max_rel: float | None, min_label_agreement: float | None,
            output: Path | None) -> None:
    """Compare two backends blob by blob (pools, fc7, scores, upsampling, fusions, final score).

    Prints max absolute and relative differences per layer and the label agreement, and exits
    non-zero when any exceeds the tolerance of the precision (bench/evaluation/parity.py
    TOLERANCES).

    \b
    Examples:
      python cli.py parity --variant fcn8s --size 37x53
      python cli.py parity --variant fcn32s --weights demo/weights/fcn32s.safetensors --size 375x500
      python cli.py parity --variant fcn16s --backends torch,reference --width-divisor 16
    """
    import backends
    from bench.core.atomic import write_json
    from bench.core.contracts import RunOptions
    from bench.core.errors import FcnBenchError, UsageError
    from bench.core.outputs import Output, check_outputs, writing
    from bench.core.records import make_record
    from bench.evaluation.parity import compare, parity_layers, tolerance_for
    from bench.model.init import random_params
    from bench.model.memory import check_forward_memory, forward_bytes
    from bench.model.reference_forward import reference_forward
    from bench.model.spec import build_spec

    height, width = size
    names = [part.strip() for part in pair.split(",") if part.strip()]
    if len(names) != 2:
        raise UsageError(f"--backends needs exactly two names, got {pair!r}")
    sides = [REFERENCE if name == REFERENCE else backends.canonical_name(name) for name in names]
    # A framework against itself compares nothing and costs two forwards; reference,reference
    # stays allowed: a framework-free dry run of the command (its record, its checks).
    if sides[0] == sides[1] != REFERENCE:
        raise UsageError(f"--backends names {sides[0]} twice; parity compares two different "
                         f"implementations, e.g. torch,tensorflow or torch,reference")
    if weights is not None and (random_seed is not None or width_divisor != 1):
        raise UsageError("--weights cannot be combined with --random-seed or --width-divisor")
    check_outputs({"--output": Output(output, what="parity record") if output else None},
                  {"--weights": weights})

    if weights is not None:
        from bench.weights.archive import load_weights

        spec, params, metadata = load_weights(weights, variant)
        weights_desc = f"{weights} ({metadata.get('origin', 'unknown origin')})"
    else:
        spec = build_spec(variant or "fcn8s", width_divisor=width_divisor)
        if random_seed is None and width_divisor == 1:  # the cache had no official weights
            click.echo(f"note: no converted {spec.variant} weights in the cache (`python cli.py "
                       f"download weights {spec.variant}`); comparing on seeded random weights",
                       err=True)
        seed = 0 if random_seed is None else random_seed
        params = random_params(spec, seed)
        weights_desc = f"random:seed={seed}"
    variant = spec.variant
    layers = parity_layers(spec)
    # Both sides keep every compared blob (the reference in float64): refuse before allocating.
    kept = sum(8 if side == REFERENCE else 4 for side in sides)
    check_forward_memory(f"parity of {variant} at {height}x{width} ({precision})",
                         forward_bytes(spec, height, width, precision=precision,
                                       kept_blobs=layers, kept_bytes_per_element=kept), device,
                         advice="use a smaller --size")
    images = parity_inputs(spec, height, width, input_seed)

    blobs, environments = [], {}
    options = RunOptions(device=device, precision=precision)
    for side in sides:
        if side == REFERENCE:
            blobs.append(reference_forward(spec, params, images, layers))
            environments[side] = {"framework": "numpy", "precision": "float64"}
            continue
        backend = backends.create_backend(side, spec, options)
        backend.load_params(params)
        blobs.append(backend.forward_blobs(images, layers))
        environments[side] = backend.environment()
        del backend  # free its copy of the weights before the next framework loads them

    report = compare(blobs[0], blobs[1], layers, output=spec.output,  # labels of the first head
                     tolerance=tolerance_for(precision, max_rel, min_label_agreement),
                     left=sides[0], right=sides[1], precision=precision)
    click.echo(f"{variant}, {height}x{width} input (seed {input_seed}), weights {weights_desc}")
    click.echo(report.table())
    if output is not None:
        record = make_record("parity", variant=variant, width_divisor=spec.width_divisor,
                             input_size=[height, width], input_seed=input_seed,
                             weights=weights_desc, device=device, environments=environments,
                             **report.to_dict())
        with writing(output, "parity record"):
            write_json(output, record)
        click.echo(f"wrote {output}")
    if not report.passed:
        raise FcnBenchError(f"parity failed ({sides[0]} vs {sides[1]}): "
                            + "; ".join(report.failures()))
