"""The training loop's view of any data set: one id -> the network's input(s) and the label(s)
its loss reads, with each head's ignored values turned into the loss's void label.

bench/train/loop.py and the backend trainers were written for VOC samples (`image`, `label`); this
view hands them a bench.data.sets set the same way, with a dict of named inputs for multi-input
models (NYUD colour + HHA / depth) and a dict of labels, one per head, for SIFT Flow's two
losses (each of weight 1, REF siftflow-fcn*/net.py). ADE20K ignores class 0 in training
(CSAIL train_FCN.prototxt ignore_label 0): such values become 255 here (docs/training_recipes.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bench.data.labels import VOID_LABEL


class TrainingItem(Protocol):
    """One decoded training example as the loop reads it: a TrainingSample, or a
    bench.data.voc.Sample (one image, one label)."""

    @property
    def id(self) -> str: ...

    @property
    def image(self) -> np.ndarray | dict[str, np.ndarray]: ...

    @property
    def label(self) -> np.ndarray | dict[str, np.ndarray]: ...


class TrainingSet(Protocol):
    """What the loop reads from a data set: its ids in order and one example per id
    (bench.data.voc's data sets, or a TrainingView of any bench.data.sets set)."""

    @property
    def ids(self) -> Sequence[str]: ...

    def load(self, image_id: str) -> TrainingItem: ...


@dataclass(frozen=True)
class TrainingSample:
    """`image`: (C, H, W) float32, or {input: array}; `label`: (H, W) uint8, or {head: array}."""

    id: str
    image: np.ndarray | dict[str, np.ndarray]
    label: np.ndarray | dict[str, np.ndarray]


class TrainingView:
    """A bench.data.sets set seen by the training loop (ids, load, and the paths that the output
    checks protect)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset
        self.ids = list(dataset.ids)
        self.name = dataset.name
        self.source = dataset.source
        self.heads = dataset.heads
        # Values each head's loss must skip, beyond the void label itself.
        self._ignored = {head.name: tuple(v for v in head.ignore_labels if v != VOID_LABEL)
                         for head in dataset.heads}

    def __len__(self) -> int:
        return len(self.ids)

    def label_path(self, image_id: str) -> Path:
        return self.dataset.label_path(image_id)

    def image_path(self, image_id: str) -> Path:
        return self.dataset.image_path(image_id)

    def load(self, image_id: str) -> TrainingSample:
        sample = self.dataset.load(image_id)
        labels = {}
        for head in self.heads:
            label = sample.labels[head.name]
            if self._ignored[head.name]:
                label = np.where(np.isin(label, self._ignored[head.name]),
                                 np.uint8(VOID_LABEL), label).astype(np.uint8)
            labels[head.name] = label
        inputs = dict(sample.inputs)
        image = inputs if len(inputs) > 1 else next(iter(inputs.values()))
        label = labels if len(labels) > 1 else next(iter(labels.values()))
        return TrainingSample(sample.id, image, label)
