"""`predict`: segment one image with one backend; write labels, raw scores and an overlay.

Frameworks are imported only inside the command function (through backends.create_backend).
Every output is written atomically, and only after the whole forward pass succeeded.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import click
import numpy as np

from backends.base import PRECISIONS
from commands._options import backend_option, device_option, variant_option, weights_option

# The overlay (blended photo + class legend) is drawn by bench/overlay.py.


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@click.command(name="predict")
@variant_option(default=None, default_help="detected from --weights, else fcn8s")
@backend_option(several=False, name="backend_name")
@weights_option()
@click.option("--image", "image_path", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="A JPEG/PNG photo.")
@click.option("--out-labels", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the VOC-palette label PNG here.")
@click.option("--out-scores", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write raw class scores (21, H, W) float32 .npy here.")
@click.option("--overlay", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the photo blended with the class colours (PNG) here.")
@device_option
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32 (TF32 off), tf32 (GPU), fp16, bf16.")
def command(variant: str | None, backend_name: str, weights: Path, image_path: Path,
            out_labels: Path | None, out_scores: Path | None, overlay: Path | None, device: str,
            precision: str) -> None:
    """Segment one image: label PNG, raw scores and/or an overlay picture.

    The image is used at its own size (no resizing), BGR mean-subtracted exactly as in FCN.

    \b
    Example:
      python cli.py demo --data-root demo
      python cli.py predict --backend torch --weights demo/weights/fcn8s.safetensors \\
          --image demo/VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg \\
          --out-labels labels.png --overlay overlay.png
      python cli.py download weights fcn8s
      python cli.py predict --image demo/VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg \\
          --overlay overlay.png                     # the cached official fcn8s weights
    """
    import backends
    from backends.base import RunOptions
    from bench.errors import UsageError
    from bench.labels import write_label_png
    from bench.outputs import Output, check_outputs, writing
    from bench.overlay import class_name, class_shares, overlay_png
    from bench.records import atomic_write_bytes
    from bench.voc import load_image, preprocess
    from bench.weights import load_weights

    outputs = {"--out-labels": (out_labels, ".png", "label PNG"),
               "--out-scores": (out_scores, ".npy", "scores"),
               "--overlay": (overlay, ".png", "overlay")}
    if all(path is None for path, _, _ in outputs.values()):
        raise UsageError("nothing to write: give --out-labels, --out-scores and/or --overlay")
    for option, (path, suffix, _) in outputs.items():
        if path is not None and path.suffix.lower() != suffix:  # PNG / .npy whatever the name
            raise UsageError(f"{option} {path}: the file is written as {suffix}; name it so")
    # Before the forward pass: writable, not the image or weights, not the same path twice.
    check_outputs({option: Output(path, what=what) if path is not None else None
                   for option, (path, _, what) in outputs.items()},
                  {"--image": image_path, "--weights": weights})
    backend_name = backends.canonical_name(backend_name)
    rgb = load_image(image_path)  # DataError naming the file if it is not an image
    # Variant, classes and width are detected from the archive's content (never its file name).
    spec, params, _ = load_weights(weights, variant)

    backend = backends.create_backend(backend_name, spec,
                                      RunOptions(device=device, precision=precision))
    backend.load_params(params)
    del params
    start = time.perf_counter()
    scores = backend.predict(preprocess(rgb)[None])[0]  # (num_classes, H, W) float32
    elapsed_ms = (time.perf_counter() - start) * 1e3
    labels = scores.argmax(axis=0).astype(np.uint8)

    if out_labels is not None:
        write_label_png(out_labels, labels)
    if out_scores is not None:
        with writing(out_scores, "scores"):
            atomic_write_bytes(out_scores, npy_bytes(scores.astype(np.float32, copy=False)))
    if overlay is not None:
        with writing(overlay, "overlay"):
            atomic_write_bytes(overlay, overlay_png(rgb, labels))

    height, width = labels.shape
    present = [f"{class_name(c)} {share}" for c, share in class_shares(labels)]
    click.echo(f"{image_path}: {width}x{height}, {spec.variant} on {backend_name} "
               f"({backend.device}, {precision}), forward {elapsed_ms:.0f} ms "
               f"(first call, includes set-up)")
    click.echo("classes: " + ", ".join(present))
    for path in (out_labels, out_scores, overlay):
        if path is not None:
            click.echo(f"wrote {path}")
