"""The evaluation loop and its checkpoints, against a tiny numpy backend (no framework needed)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from bench.core.errors import DataError, FcnBenchError
from bench.data.labels import read_label_png
from bench.data.synthetic import make_voc
from bench.data.voc import resolve_split
from bench.evaluation.checkpoint import Checkpoint, CheckpointMismatch
from bench.evaluation.metrics import ConfusionMatrix
from bench.evaluation.runner import data_fingerprint, run_evaluation


class NumpyBackend:
    """Per-pixel linear classifier over the BGR values: varied, deterministic labels."""

    name = "numpy"

    def __init__(self, seed: int = 0, num_classes: int = 21):
        self.weight = np.random.default_rng(seed).standard_normal((num_classes, 3))
        self.calls = 0

    def predict_labels(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        scores = np.einsum("kc,nchw->nkhw", self.weight, images)
        return scores.argmax(axis=1).astype(np.uint8)


@pytest.fixture(scope="module")
def _template(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner_voc")
    make_voc(root, num_images=16, seed=3)
    return root


@pytest.fixture
def dataset(_template, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(_template, root)
    return resolve_split(root, "trainval")  # 16 images


def _expected(dataset, backend) -> ConfusionMatrix:
    confusion = ConfusionMatrix()
    for image_id in dataset.ids:
        sample = dataset.load(image_id)
        confusion.update(sample.label, backend.predict_labels(sample.image[None])[0])
    return confusion


def _checkpoint(tmp_path, dataset, every=4, **changes):
    key = {"weights_sha256": "a" * 64, "data": data_fingerprint(dataset).checkpoint_key(),
           "variant": "fcn8s",
           "backend": "numpy", "split": dataset.name, **changes}
    return Checkpoint(tmp_path / "ckpt.json", key, every=every)


def test_loop_matches_a_direct_computation_and_times_itself(dataset):
    result = run_evaluation(dataset, NumpyBackend(), progress=False)
    assert result.confusion == _expected(dataset, NumpyBackend())
    assert result.num_images == 16 and result.timing.images == 16
    assert result.confusion.summary()["pixel_accuracy"] > 0  # labels are varied, not constant
    timing = result.timing.as_dict()
    assert timing["images_per_s"] > 0 and timing["forward_ms"]["median"] >= 0
    assert set(timing["share_of_wall"]) >= {"data_wait_s", "forward_s", "accumulate_s"}


def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(dataset, tmp_path):
    uninterrupted = run_evaluation(dataset, NumpyBackend(), progress=False).confusion

    def stop_after_6(done, image_id):
        if done == 6:
            raise KeyboardInterrupt

    checkpoint = _checkpoint(tmp_path, dataset)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(dataset, NumpyBackend(), checkpoint=checkpoint, progress=False,
                       on_image=stop_after_6)
    saved = json.loads(checkpoint.path.read_text())
    assert saved["ids_done"] == dataset.ids[:6], "the interrupt saves beyond the last multiple"

    backend = NumpyBackend()
    resumed = run_evaluation(dataset, backend, checkpoint=checkpoint, resume=True,
                             progress=False)
    assert backend.calls == 10 and resumed.resumed_from == 6
    assert resumed.confusion == uninterrupted
    # The finished state is kept: resuming again runs nothing and gives the same matrix.
    again = NumpyBackend()
    final = run_evaluation(dataset, again, checkpoint=checkpoint, resume=True, progress=False)
    assert again.calls == 0 and final.resumed_from == 16 and final.confusion == uninterrupted


def test_corrupt_image_stops_naming_the_file_and_keeps_the_checkpoint(dataset, tmp_path):
    uninterrupted = run_evaluation(dataset, NumpyBackend(), progress=False).confusion
    bad = dataset.image_path(dataset.ids[9])
    original = bad.read_bytes()
    bad.write_bytes(original[: len(original) // 3])
    checkpoint = _checkpoint(tmp_path, dataset)
    expected = rf"{re.escape(bad.name)}: cannot decode.*checkpoint kept at .*\(9 of 16 images"
    with pytest.raises(DataError, match=expected):
        run_evaluation(dataset, NumpyBackend(), checkpoint=checkpoint, progress=False)
    assert json.loads(checkpoint.path.read_text())["ids_done"] == dataset.ids[:9]

    bad.write_bytes(original)  # the user fixes the file
    resumed = run_evaluation(dataset, NumpyBackend(), checkpoint=checkpoint, resume=True,
                             progress=False)
    assert resumed.resumed_from == 9 and resumed.confusion == uninterrupted


@pytest.mark.parametrize(("field", "value"), [("weights_sha256", "b" * 64), ("backend", "tf"),
                                              ("variant", "fcn32s")])
def test_checkpoint_from_another_run_is_refused_with_the_reason(dataset, tmp_path, field, value):
    checkpoint = _checkpoint(tmp_path, dataset)
    checkpoint.save(dataset.ids[:4], np.zeros((21, 21), np.int64))
    other = _checkpoint(tmp_path, dataset, **{field: value})
    with pytest.raises(CheckpointMismatch, match=f"{field} was"):
        run_evaluation(dataset, NumpyBackend(), checkpoint=other, resume=True, progress=False)


def test_checkpoint_from_other_data_is_refused(dataset, tmp_path):
    checkpoint = _checkpoint(tmp_path, dataset)
    checkpoint.save(dataset.ids[:4], np.zeros((21, 21), np.int64))
    label = dataset.label_path(dataset.ids[0])
    label.write_bytes(label.read_bytes() + b"\0")  # same pixels, different file
    with pytest.raises(CheckpointMismatch, match="data was"):
        _checkpoint(tmp_path, dataset).load(dataset.ids)


def test_corrupt_checkpoint_is_a_clear_error(dataset, tmp_path):
    checkpoint = _checkpoint(tmp_path, dataset)
    checkpoint.path.write_text("{not json")
    with pytest.raises(DataError, match="unreadable checkpoint"):
        checkpoint.load(dataset.ids)


def test_without_resume_an_old_checkpoint_is_ignored_and_replaced(dataset, tmp_path):
    checkpoint = _checkpoint(tmp_path, dataset, every=5)
    checkpoint.save(dataset.ids[:4], np.ones((21, 21), np.int64))  # would corrupt the counts
    result = run_evaluation(dataset, NumpyBackend(), checkpoint=checkpoint, progress=False)
    assert result.resumed_from == 0 and result.confusion == _expected(dataset, NumpyBackend())


def test_saved_predictions_are_palette_pngs_of_the_predictions(dataset, tmp_path):
    result = run_evaluation(dataset, NumpyBackend(), save_predictions=tmp_path / "preds",
                            progress=False)
    rescored = ConfusionMatrix()
    for image_id in dataset.ids:
        pred = read_label_png(tmp_path / "preds" / f"{image_id}.png", what="prediction")
        rescored.update(dataset.load_label(image_id), pred)
    assert rescored == result.confusion


def test_backend_returning_the_wrong_size_is_reported(dataset):
    class Cropping(NumpyBackend):
        def predict_labels(self, images):
            return super().predict_labels(images)[:, 1:, :]

    with pytest.raises(FcnBenchError, match="returned labels of shape"):
        run_evaluation(dataset, Cropping(), progress=False)


def test_data_fingerprint_tracks_ids_and_files(dataset):
    first = data_fingerprint(dataset).summary()
    assert first == data_fingerprint(dataset).summary()
    image = dataset.image_path(dataset.ids[0])
    image.write_bytes(image.read_bytes() + b"\0")
    changed = data_fingerprint(dataset).summary()
    assert changed["images_sha256"] != first["images_sha256"]
    assert changed["labels_sha256"] == first["labels_sha256"]


def test_checkpoint_files_are_keyed_by_the_run_content_not_its_names(dataset, tmp_path):
    """Issue 10.7: two split files both named list.txt shared one checkpoint file, so a run on
    one destroyed the other's progress."""
    from bench.evaluation.checkpoint import keyed_path

    def key(ids, **changes):
        subset = resolve_split(dataset.voc_dir.parent.parent, "trainval")
        subset.ids = list(ids)
        return {"weights_sha256": "a" * 64, "split": "list.txt",
                "data": data_fingerprint(subset).checkpoint_key(), **changes}

    first, second = key(dataset.ids[:4]), key(dataset.ids[4:8])
    stem = "reproduce-fcn8s-numpy-list.txt"
    assert keyed_path(tmp_path, stem, first) != keyed_path(tmp_path, stem, second)
    assert keyed_path(tmp_path, stem, first) == keyed_path(tmp_path, stem, dict(reversed(
        first.items())))  # key order does not matter
    assert keyed_path(tmp_path, stem, first) != keyed_path(tmp_path, stem, key(
        dataset.ids[:4], weights_sha256="b" * 64))
    # A checkpoint of the first run survives the second, and says why it is not this run's.
    Checkpoint(keyed_path(tmp_path, stem, first), first).save(dataset.ids[:2],
                                                              np.zeros((21, 21), np.int64))
    other = Checkpoint(keyed_path(tmp_path, stem, second), second)
    other.save(dataset.ids[4:5], np.zeros((21, 21), np.int64))
    assert len(list(tmp_path.glob(f"{stem}-*.json"))) == 2
    (path, differences), = Checkpoint(keyed_path(tmp_path, stem, first), first).siblings()
    assert path == other.path and any(d.startswith("data was") for d in differences)


# ----------------------------------------------------------------------------------------------
# Data sets with named inputs and several heads (bench.data.sets): SIFT Flow's two heads


class TwoHeadBackend:
    """Two linear per-pixel heads (33 and 3 classes), returned as a dict like a backend's."""

    name = "numpy-two-heads"

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.weights = {"score_sem": rng.standard_normal((33, 3)),
                        "score_geo": rng.standard_normal((3, 3))}

    def predict_labels(self, images):
        assert isinstance(images, np.ndarray) and images.shape[1] == 3  # one input: an array
        return {name: np.einsum("kc,nchw->nkhw", weight, images).argmax(axis=1).astype(np.uint8)
                for name, weight in self.weights.items()}


@pytest.fixture
def siftflow(tmp_path):
    from bench.data.sets import open_dataset
    from bench.data.synthetic_zoo import write_siftflow_tree

    write_siftflow_tree(tmp_path / "data", seed=5, n=8)
    return open_dataset("siftflow", tmp_path / "data", "test")


def test_two_heads_get_one_matrix_each_and_predictions_per_head(siftflow, tmp_path):
    backend = TwoHeadBackend()
    result = run_evaluation(siftflow, backend, progress=False, workers=0,
                            save_predictions=tmp_path / "preds")
    expected = siftflow.confusions()
    for image_id in siftflow.ids:
        sample = siftflow.load(image_id)
        labels = backend.predict_labels(sample.inputs["data"][None])
        expected["semantic"].update(sample.labels["semantic"], labels["score_sem"][0])
        expected["geometric"].update(sample.labels["geometric"], labels["score_geo"][0])
        written = read_label_png(tmp_path / "preds" / "geometric" / f"{image_id}.png",
                                 num_classes=3)
        np.testing.assert_array_equal(written, labels["score_geo"][0])
    assert list(result.confusions) == ["semantic", "geometric"]
    assert result.confusions["semantic"] == expected["semantic"]
    assert result.confusions["geometric"] == expected["geometric"]
    assert result.confusion is result.confusions["semantic"]


def test_resume_restores_every_heads_matrix(siftflow, tmp_path):
    key = {"data": data_fingerprint(siftflow).checkpoint_key(), "variant": "siftflow-fcn16s"}
    checkpoint = Checkpoint(tmp_path / "ckpt.json", key, every=1)

    def stop(done, image_id):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(siftflow, TwoHeadBackend(), checkpoint=checkpoint, progress=False,
                       workers=0, on_image=stop)
    stored = json.loads(checkpoint.path.read_text())
    assert set(stored["head_matrices"]) == {"geometric"}
    resumed = run_evaluation(siftflow, TwoHeadBackend(), checkpoint=checkpoint, resume=True,
                             progress=False, workers=0)
    straight = run_evaluation(siftflow, TwoHeadBackend(), progress=False, workers=0)
    assert resumed.resumed_from == 2
    assert resumed.confusions["geometric"] == straight.confusions["geometric"]
    assert resumed.confusions["semantic"] == straight.confusions["semantic"]
