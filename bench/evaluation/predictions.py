"""Scoring saved predictions: find and read the `<id>.png` label maps of a folder, match them to
a split's ids and ground truth, accumulate the confusions and build the 'evaluate' record.

Predictions from Caffe, PyTorch, TensorFlow or anything else are index maps on disk, scored by
the same code (bench.evaluation.metrics: docs/fidelity.md "Evaluation protocol").
The `evaluate` command (bench/cli/evaluate.py) parses the options and prints.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.core.errors import DataError, not_a_file
from bench.core.records import make_record
from bench.data.base import SegmentationSet
from bench.data.labels import read_label_png
from bench.data.prefetch import prefetch
from bench.data.sets import open_dataset
from bench.data.voc import VOCDataset, describe_size, more_missing
from bench.evaluation.metrics import ConfusionMatrix, evaluation_record


def prediction_path(predictions_dir: Path, image_id: str) -> Path:
    return predictions_dir / f"{image_id}.png"


def check_predictions(dataset: VOCDataset, predictions_dir: Path) -> None:
    """Fail before any work if the folder or any `<id>.png` is missing (one line, counted)."""
    if not predictions_dir.is_dir():
        raise DataError(predictions_dir, "predictions folder not found")
    missing = [path for path in (prediction_path(predictions_dir, i) for i in dataset.ids)
               if not path.is_file()]
    if missing:
        raise DataError(missing[0], f"{not_a_file(missing[0], 'prediction file')} (split "
                                    f"'{dataset.name}' lists "
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


def score_voc_predictions(dataset: VOCDataset, predictions_dir: Path, data_root: Path,
                          workers: int, progress: bool) -> dict[str, Any]:
    """One confusion matrix over a VOC split's checked prediction folder; returns the record."""
    confusion = ConfusionMatrix()
    pairs = prefetch(dataset, workers=workers, load=partial(load_pair, dataset, predictions_dir))
    with tqdm(total=len(dataset), desc=f"evaluate {dataset.name}", unit="img", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        for label, pred in pairs:
            confusion.update(label, pred)
            bar.update(1)

    return evaluation_record(dataset.name, confusion, len(dataset),
                             predictions=str(predictions_dir), data_root=str(data_root),
                             split_source=str(dataset.source), voc_dir=str(dataset.voc_dir))


def _other_dataset_pairs(dataset: SegmentationSet, folders: dict[str, Path], image_id: str
                         ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{head: (label, prediction)} of one id; runs in prefetch worker threads."""
    labels = dataset.load_labels(image_id)
    pairs = {}
    for head in dataset.heads:
        path = prediction_path(folders[head.name], image_id)
        pred = read_label_png(path, num_classes=head.num_classes, what="prediction",
                              allow_void=False)
        label = labels[head.name]
        if pred.shape != label.shape:
            raise DataError(path, f"prediction is {describe_size(pred.shape)} but the "
                                  f"{head.name} label of id {image_id} is "
                                  f"{describe_size(label.shape)}")
        pairs[head.name] = (label, pred)
    return pairs


def score_dataset_predictions(dataset_name: str, data_root: Path, split: str | None,
                              folders: dict[str, Path], workers: int, progress: bool
                              ) -> dict[str, Any]:
    """Score a non-VOC data set's prediction folders (one per head); returns the record."""
    # Only labels are read here: images need not be present.
    dataset = open_dataset(dataset_name, data_root, split, check_files=False)
    missing = [p for image_id in dataset.ids for key, p in dataset.files(image_id).items()
               if key in folders and not p.is_file()]
    if missing:
        raise DataError(missing[0], f"label file not found ({dataset_name} split "
                                    f"'{dataset.name}'){more_missing(missing)}")
    for head, folder in folders.items():
        if not folder.is_dir():
            raise DataError(folder, f"predictions folder for the {head} head not found")
        absent = [prediction_path(folder, i) for i in dataset.ids
                  if not prediction_path(folder, i).is_file()]
        if absent:
            raise DataError(absent[0], f"{not_a_file(absent[0], 'prediction file')} (split "
                                       f"'{dataset.name}' "
                                       f"lists this id){more_missing(absent, names_only=True)}")
    confusions = dataset.confusions()
    items = prefetch(dataset, workers=workers,
                     load=partial(_other_dataset_pairs, dataset, folders))
    with tqdm(total=len(dataset), desc=f"evaluate {dataset_name} {dataset.name}", unit="img",
              file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        for pairs in items:
            for head, (label, pred) in pairs.items():
                confusions[head].update(label, pred)
            bar.update(1)
    metrics = dataset.summarize(confusions)
    metrics.update(num_images=len(dataset), split=dataset.name)
    return make_record("evaluate", split=dataset.name, num_images=len(dataset),
                       dataset=dataset_name, split_source=str(dataset.source),
                       published_split=dataset.split.published, data_root=str(data_root),
                       predictions={h: str(f) for h, f in folders.items()}, metrics=metrics)
