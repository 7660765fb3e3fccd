"""The `Dataset` contract (bench.core.contracts): every data set the loops read satisfies it, and
the evaluation loop runs on a minimal class that does, with no data set module behind it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.core.contracts import Dataset, MultiHeadDataset
from bench.data.model_data import open_model_dataset
from bench.data.synthetic import make_sbd, synthetic_ids
from bench.data.synthetic_zoo import WRITERS
from bench.data.voc import SBDDataset, resolve_split, sbd_dir
from bench.evaluation.runner import data_fingerprint, run_evaluation


def test_voc_and_sbd_sets_are_single_head_datasets(voc_root, tmp_path):
    voc = resolve_split(voc_root, "val")
    make_sbd(tmp_path, synthetic_ids(3))
    sbd = SBDDataset(sbd_dir(tmp_path), "train")
    for dataset in (voc, sbd):
        assert isinstance(dataset, Dataset)
        assert not isinstance(dataset, MultiHeadDataset)  # one image, one label per id
        sample = dataset.load(dataset.ids[0])
        assert sample.id == dataset.ids[0] and sample.image.ndim == 3 and sample.label.ndim == 2


@pytest.mark.parametrize("model", ["siftflow-fcn8s", "nyud-fcn32s-color-hha"])
def test_the_other_data_sets_are_multi_head_datasets(tmp_path, model):
    from bench.data.model_data import dataset_name

    WRITERS[dataset_name(model)](tmp_path, seed=0, n=3)
    dataset = open_model_dataset(model, tmp_path)
    assert isinstance(dataset, Dataset) and isinstance(dataset, MultiHeadDataset)
    assert list(dataset.confusions()) == [head.name for head in dataset.heads]
    sample = dataset.load(dataset.ids[0])
    assert set(sample.labels) == {head.name for head in dataset.heads}


@dataclass(frozen=True)
class _Sample:
    id: str
    image: np.ndarray
    label: np.ndarray


class TinySet:
    """The smallest honest `Dataset`: two 4x5 images whose files are two small files each."""

    name = "tiny"

    def __init__(self, folder: Path):
        self.ids = ["a", "b"]
        self.source = folder
        for image_id in self.ids:
            self.image_path(image_id).write_bytes(image_id.encode() * 3)
            self.label_path(image_id).write_bytes(image_id.encode() * 2)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, image_id: str) -> _Sample:
        label = np.zeros((4, 5), np.uint8)
        label[:, :2] = 1 if image_id == "a" else 2
        return _Sample(image_id, np.zeros((3, 4, 5), np.float32), label)

    def image_path(self, image_id: str) -> Path:
        return self.source / f"{image_id}.img"

    def label_path(self, image_id: str) -> Path:
        return self.source / f"{image_id}.lbl"


class _ClassOneEverywhere:
    """A backend double answering class 1 for every pixel."""

    name = "ones"
    device = "cpu"

    def predict_labels(self, images: np.ndarray) -> np.ndarray:
        return np.ones((images.shape[0], *images.shape[2:]), np.uint8)


def test_the_evaluation_loop_runs_on_any_dataset(tmp_path):
    dataset = TinySet(tmp_path)
    assert isinstance(dataset, Dataset) and not isinstance(dataset, MultiHeadDataset)
    result = run_evaluation(dataset, _ClassOneEverywhere(), num_classes=3, progress=False,
                            workers=1)
    matrix = result.confusion.matrix
    assert result.num_images == 2
    assert matrix[0, 1] == 2 * 12  # background predicted as class 1, in both images
    assert matrix[1, 1] == 8 and matrix[2, 1] == 8  # image a's class 1, image b's class 2
    fingerprint = data_fingerprint(dataset)
    assert fingerprint.ids == ("a", "b") and len(set(fingerprint.image_sha256.values())) == 2
