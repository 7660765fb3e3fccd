"""ConfusionMatrix.update vs score.py's per-image bincount loop on VOC-sized (500x375) label maps.

Not collected by the default `pytest` run (testpaths = tests). Run with:
    .venv/bin/python -m pytest benchmarks/test_bench_metrics.py --benchmark-only
Each benchmark reports `mpixels_per_s` in extra_info (pixels per round / mean round time).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation.metrics import ConfusionMatrix

NUM_CLASSES = 21
NUM_IMAGES = 16
HEIGHT, WIDTH = 375, 500  # the most common VOC image size
VOID_FRACTION = 0.05      # VOC labels have thin void (255) outlines


@pytest.fixture(scope="module")
def label_maps() -> list[tuple[np.ndarray, np.ndarray]]:
    """(label, prediction) uint8 pairs: ~75% correct, 5% void, like a decent FCN on VOC."""
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(NUM_IMAGES):
        label = rng.integers(0, NUM_CLASSES, (HEIGHT, WIDTH), dtype=np.uint8)
        label[rng.random(label.shape) < VOID_FRACTION] = 255
        noise = rng.integers(0, NUM_CLASSES, label.shape, dtype=np.uint8)
        pred = np.where((rng.random(label.shape) < 0.75) & (label != 255), label, noise)
        pairs.append((label, pred.astype(np.uint8)))
    return pairs


def score_py_hist(pairs: list[tuple[np.ndarray, np.ndarray]], n: int = NUM_CLASSES) -> np.ndarray:
    """The REF score.py way: mask, int64 index, one bincount per image."""
    hist = np.zeros((n, n))
    for a, b in pairs:
        k = (a >= 0) & (a < n)
        hist += np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)
    return hist


def confusion_matrix(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    cm = ConfusionMatrix(NUM_CLASSES)
    for label, pred in pairs:
        cm.update(label, pred)
    return cm.matrix


def _record_throughput(benchmark, pairs) -> None:
    pixels = sum(label.size for label, _ in pairs)
    benchmark.extra_info["pixels_per_round"] = pixels
    benchmark.extra_info["image_size"] = f"{WIDTH}x{HEIGHT}"
    benchmark.extra_info["mpixels_per_s"] = round(pixels / benchmark.stats.stats.mean / 1e6, 1)


def test_both_ways_agree(label_maps):
    np.testing.assert_array_equal(confusion_matrix(label_maps), score_py_hist(label_maps))


def test_bench_confusion_matrix_update(benchmark, label_maps):
    matrix = benchmark(confusion_matrix, label_maps)
    assert matrix.sum() == sum(int((label != 255).sum()) for label, _ in label_maps)
    _record_throughput(benchmark, label_maps)


def test_bench_score_py_bincount_loop(benchmark, label_maps):
    hist = benchmark(score_py_hist, label_maps)
    assert hist.sum() == sum(int((label != 255).sum()) for label, _ in label_maps)
    _record_throughput(benchmark, label_maps)
