"""`evaluate`: score a folder of predicted label PNGs (from any framework) against VOC ground truth.

Framework-free: reads `<id>.png` index maps, so predictions from Caffe, PyTorch, TensorFlow or
anything else are scored by the same code (bench.metrics, FCN score.py semantics).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import click
import numpy as np

from bench.cache import default_data_root
from bench.errors import DataError
from bench.labels import read_label_png
from bench.metrics import ConfusionMatrix, evaluation_record, metrics_table
from bench.outputs import Output, check_outputs, dataset_inputs, writing
from bench.records import write_json
from bench.voc import VOCDataset, describe_size, more_missing, prefetch, resolve_split


def prediction_path(predictions_dir: Path, image_id: str) -> Path:
    return predictions_dir / f"{image_id}.png"


def check_predictions(dataset: VOCDataset, predictions_dir: Path) -> None:
    """Fail before any work if the folder or any `<id>.png` is missing (one line, counted)."""
    if not predictions_dir.is_dir():
        raise DataError(predictions_dir, "predictions folder not found")
    missing = [path for path in (prediction_path(predictions_dir, i) for i in dataset.ids)
               if not path.is_file()]
    if missing:
        raise DataError(missing[0], f"prediction file not found (split '{dataset.name}' lists "
                                    f"this id){more_missing(missing, names_only=True)}")


def load_pair(dataset: VOCDataset, predictions_dir: Path, image_id: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """(label, prediction), both (H, W) uint8, validated; runs in prefetch worker threads."""
    label = dataset.load_label(image_id)
    pred_path = prediction_path(predictions_dir, image_id)
    pred = read_label_png(pred_path, what="prediction", allow_void=False)
    if pred.shape != label.shape:
        raise DataError(pred_path, f"prediction is {describe_size(pred.shape)} but label "
                                   f"{dataset.label_path(image_id)} is "
                                   f"{describe_size(label.shape)}")
    return label, pred


@click.command(name="evaluate")
@click.option("--data-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder holding VOCdevkit/ (and splits/) [default: $FCN_BENCH_DATA or ./data].")
@click.option("--split", default="seg11valid", show_default=True,
              help="seg11valid (736 images, the paper's), train, val, trainval (VOC2012 lists) "
                   "or a path to a file of image ids.")
@click.option("--predictions", "predictions_dir", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Folder of <id>.png label maps holding class indices 0-20 (palette or grey).")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the 'evaluate' JSON record here (atomically).")
@click.option("--format", "table_format", type=click.Choice(["github", "plain"]),
              default="github", show_default=True, help="Table style printed to stdout.")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True,
              help="Decoding threads (0 = decode inline).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
def command(data_root: Path | None, split: str, predictions_dir: Path, output: Path | None,
            table_format: str, workers: int, progress: bool) -> None:
    """Score predicted label PNGs against VOC ground truth (FCN score.py metrics).

    One confusion matrix over the whole split (void 255 ignored); prints pixel accuracy, mean
    accuracy, mean IU, frequency-weighted IU and per-class IU in percent.

    \b
    Example:
      python cli.py evaluate --data-root data --split seg11valid --predictions preds/ \\
          --output results/fcn8s-eval.json
    """
    from tqdm import tqdm

    data_root = data_root if data_root is not None else default_data_root()
    dataset = resolve_split(data_root, split)
    check_predictions(dataset, predictions_dir)
    check_outputs({"--output": Output(output, what="record") if output else None},
                  {"--predictions": predictions_dir, **dataset_inputs(dataset)})

    confusion = ConfusionMatrix()
    pairs = prefetch(dataset, workers=workers, load=partial(load_pair, dataset, predictions_dir))
    with tqdm(total=len(dataset), desc=f"evaluate {dataset.name}", unit="img", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        for label, pred in pairs:
            confusion.update(label, pred)
            bar.update(1)

    record = evaluation_record(dataset.name, confusion, len(dataset),
                               predictions=str(predictions_dir), data_root=str(data_root),
                               split_source=str(dataset.source), voc_dir=str(dataset.voc_dir))
    metrics = record["metrics"]
    click.echo(metrics_table(metrics, tablefmt=table_format))
    click.echo(f"\n{len(dataset)} images, {metrics['num_pixels']} scored pixels, "
               f"split '{dataset.name}' ({dataset.source})")
    if metrics["absent_from_ground_truth"]:
        click.echo("classes without ground-truth pixels (excluded from mean acc.; mean IU counts "
                   "them only if predicted): " + ", ".join(metrics["absent_from_ground_truth"]))
    if output is not None:
        with writing(output, "record"):
            write_json(output, record)
        click.echo(f"wrote {output}")
