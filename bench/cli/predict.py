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

from bench.cli.options import backend_option, device_option, variant_option, weights_option
from bench.core.contracts import PRECISIONS
from bench.model.spec import MODEL_NAMES

# The overlay (blended photo + class legend) is drawn by bench/evaluation/overlay.py.


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# Data sets whose class 0 is a background/"other" class, left unblended in overlays.
BACKGROUND_ZERO = ("PASCAL VOC", "PASCAL-Context", "ADE20K")
# Which option feeds each input kind of the catalogue (bench.model.zoo.InputInfo.kind).
INPUT_OPTIONS = {"bgr": "--image", "hha": "--hha", "logd": "--depth"}
INPUT_HELP = {"--image": "a colour photo (JPEG/PNG)", "--hha": "a 3-channel HHA PNG",
              "--depth": "a 1-channel depth PNG or .npy"}


def class_names(dataset: str, classes: int) -> list[str]:
    """Names of the output channels: VOC's where known, else `class N`."""
    from bench.data.labels import VOC_CLASSES

    if dataset == "PASCAL VOC" and classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return [f"class {index}" for index in range(classes)]


def head_paths(path: Path | None, outputs: tuple[str, ...]) -> dict[str, Path | None]:
    """One output file per head: the path itself for one head; `NAME_sem.png`, `NAME_geo.png`
    (the head's layer suffix) for several."""
    if len(outputs) == 1 or path is None:
        return {name: path for name in outputs}
    return {name: path.with_name(f"{path.stem}{name.removeprefix('score')}{path.suffix}")
            for name in outputs}


@click.command(name="predict")
@variant_option(default=None, default_help="detected from --weights, else fcn8s",
                models=MODEL_NAMES)
@backend_option(several=False, name="backend_name")
@weights_option()
@click.option("--image", "image_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="A JPEG/PNG photo (the colour input).")
@click.option("--hha", "hha_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="HHA PNG (3 channels, file order) for the NYUD HHA models.")
@click.option("--depth", "depth_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Depth map (1-channel PNG or 2-D .npy) for "
                                 "nyud-fcn32s-color-d; see --depth-units.")
@click.option("--depth-units", type=click.Choice(["mm", "m"]), default="mm", show_default=True,
              help="Units of the --depth values (NYUD's depth PNGs are millimetres).")
@click.option("--out-labels", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the palette label PNG here (two-head models: NAME_sem.png and "
                   "NAME_geo.png).")
@click.option("--out-scores", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write raw class scores (C, H, W) float32 .npy here (per head as above).")
@click.option("--overlay", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the photo blended with the class colours (PNG) here (per head).")
@device_option
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32 (TF32 off), tf32 (GPU), fp16, bf16.")
def command(variant: str | None, backend_name: str, weights: Path, image_path: Path | None,
            hha_path: Path | None, depth_path: Path | None, depth_units: str,
            out_labels: Path | None, out_scores: Path | None, overlay: Path | None, device: str,
            precision: str) -> None:
    """Segment one image: label PNG, raw scores and/or an overlay picture, for any model.

    Inputs are used at their own size (no resizing), each prepared as its data layer does:
    colour RGB -> BGR minus the model's mean; HHA in file order minus its mean; depth as
    log(mm) minus its mean (docs/fidelity.md "Inputs per model").

    \b
    Examples:
      python cli.py demo --data-root demo
      python cli.py predict --backend torch --weights demo/weights/fcn8s.safetensors \\
          --image demo/VOCdevkit/VOC2012/JPEGImages/2007_000006.jpg \\
          --out-labels labels.png --overlay overlay.png
      python cli.py download weights fcn8s
      python cli.py predict --image photo.jpg --overlay overlay.png   # cached official fcn8s
      python cli.py predict --weights color-hha.safetensors --image rgb.png --hha hha.png \\
          --out-labels labels.png
      python cli.py predict --weights sift.safetensors --image im.jpg --out-labels l.png
          # writes l_sem.png and l_geo.png
    """
    import backends
    from bench.core.atomic import atomic_write_bytes
    from bench.core.contracts import RunOptions
    from bench.core.errors import UsageError
    from bench.core.outputs import Output, check_outputs, writing
    from bench.data.labels import write_label_png
    from bench.evaluation.overlay import class_shares, overlay_png
    from bench.model.memory import check_forward_memory, forward_bytes
    from bench.model.spec import resolve_model
    from bench.weights.archive import open_archive

    outputs = {"--out-labels": (out_labels, ".png", "label PNG"),
               "--out-scores": (out_scores, ".npy", "scores"),
               "--overlay": (overlay, ".png", "overlay")}
    if all(path is None for path, _, _ in outputs.values()):
        raise UsageError("nothing to write: give --out-labels, --out-scores and/or --overlay")
    for option, (path, suffix, _) in outputs.items():
        if path is not None and path.suffix.lower() != suffix:  # PNG / .npy whatever the name
            raise UsageError(f"{option} {path}: the file is written as {suffix}; name it so")
    given = {"--image": image_path, "--hha": hha_path, "--depth": depth_path}
    # The model (from the archive's header: content, never the file name) says which inputs
    # and heads there are, before any input or the tensors are read.
    archive = open_archive(weights, variant)
    spec = archive.spec
    entry = resolve_model(spec.variant)
    needed = {INPUT_OPTIONS[item.kind]: item for item in entry.inputs}
    for option, path in given.items():
        if path is not None and option not in needed and not (option == "--image" and overlay):
            raise UsageError(f"{option} {path}: {entry.name} takes no such input (it takes "
                             f"{', '.join(needed)})")
    missing = [f"{option} FILE ({INPUT_HELP[option]})" for option in needed
               if given[option] is None]
    if missing:
        raise UsageError(f"{entry.name} needs {' and '.join(missing)}")
    if overlay is not None and image_path is None:
        raise UsageError("--overlay needs --image (the photo to draw on)")
    files = {option: path for option, path in given.items() if path is not None}
    per_head = {option: head_paths(path, spec.outputs) for option, (path, _, _) in outputs.items()}
    # Before the forward pass: writable, not an input or the weights, not the same path twice.
    check_outputs({f"{option} ({name})" if len(spec.outputs) > 1 else option:
                   Output(path, what=outputs[option][2]) if path is not None else None
                   for option, paths in per_head.items() for name, path in paths.items()},
                  {**files, "--weights": weights})
    backend_name = backends.canonical_name(backend_name)
    arrays = _read_inputs(files, depth_units)  # DataError naming a file of the wrong kind
    batch = _network_inputs(entry, needed, arrays, files)
    in_height, in_width = (next(iter(batch.values())) if isinstance(batch, dict)
                           else batch).shape[-2:]
    # Before the weights and the framework: a photo too large for memory is one line.
    check_forward_memory(f"{spec.variant} on a {in_width}x{in_height} image ({precision})",
                         forward_bytes(spec, in_height, in_width, precision=precision), device,
                         advice="use a smaller image")
    params = archive.read_tensors()

    backend = backends.create_backend(backend_name, spec,
                                      RunOptions(device=device, precision=precision))
    backend.load_params(params)
    del params
    start = time.perf_counter()
    raw = backend.predict(batch)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    scores = raw if isinstance(raw, dict) else {spec.output: raw}

    height, width = next(iter(batch.values())).shape[-2:] if isinstance(batch, dict) else \
        batch.shape[-2:]
    click.echo(f"{', '.join(str(p) for p in files.values())}: {width}x{height}, {spec.variant} "
               f"on {backend_name} ({backend.device}, {precision}), forward {elapsed_ms:.0f} ms "
               f"(first call, includes set-up)")
    background = 0 if entry.dataset in BACKGROUND_ZERO else None
    written = []
    for head, name in zip(entry.heads, spec.outputs, strict=True):
        head_scores = scores[name][0]  # (classes, H, W) float32
        classes = head_scores.shape[0]
        labels = head_scores.argmax(axis=0)
        if out_labels is not None and classes > 256:
            raise UsageError(f"--out-labels: {classes} classes do not fit an 8-bit PNG; use "
                             "--out-scores")
        labels = labels.astype(np.uint8 if classes <= 256 else np.int32)
        paths = {option: per_head[option][name] for option in outputs}
        names = class_names(entry.dataset, classes)
        if paths["--out-labels"] is not None:
            write_label_png(paths["--out-labels"], labels)
        if paths["--out-scores"] is not None:
            with writing(paths["--out-scores"], "scores"):
                atomic_write_bytes(paths["--out-scores"],
                                   npy_bytes(head_scores.astype(np.float32, copy=False)))
        if paths["--overlay"] is not None:
            with writing(paths["--overlay"], "overlay"):
                atomic_write_bytes(paths["--overlay"],
                                   overlay_png(arrays["--image"], labels, background=background,
                                               names=names))
        present = [f"{names[c]} {share}" for c, share in class_shares(labels, classes)]
        prefix = "classes" if len(spec.outputs) == 1 else f"{head.task} classes ({name})"
        click.echo(f"{prefix}: " + ", ".join(present))
        written += [path for path in paths.values() if path is not None]
    for path in written:
        click.echo(f"wrote {path}")


def _read_inputs(files: dict[str, Path], depth_units: str) -> dict[str, np.ndarray]:
    from bench.data.inputs import read_depth, read_hha, read_photo

    readers = {"--image": read_photo, "--hha": read_hha,
               "--depth": lambda path: read_depth(path, depth_units)}
    return {option: readers[option](path) for option, path in files.items()}


def _network_inputs(entry, needed, arrays, files):
    """The backend's input: one (1, C, H, W) array, or {input name: array} for several."""
    from bench.core.errors import UsageError
    from bench.data.inputs import encode
    from bench.data.voc import preprocess
    from bench.model.zoo import VOC_MEAN

    sizes = {option: arrays[option].shape[:2] for option in needed}
    if len(set(sizes.values())) > 1:
        raise UsageError("the inputs differ in size: " + ", ".join(
            f"{option} {files[option]} is {w}x{h}" for option, (h, w) in sizes.items()))
    encoded = {}
    for option, item in needed.items():
        if item.kind == "bgr" and item.mean == VOC_MEAN:  # VOC's exact mean (bench.data.voc)
            encoded[item.name] = preprocess(arrays[option])[None]
        else:
            encoded[item.name] = encode(item, arrays[option])[None]
    if len(encoded) == 1:
        return next(iter(encoded.values()))
    return encoded
