"""The golden suite's cases beyond the four VOC nets: one released model per family on its own
generated data set (bench.data.synthetic_zoo), through the same data path `reproduce` uses.

A family's row looks like a VOC row (digests, confusion matrix, metrics, label maps, parity
between backends) with two additions: named inputs (NYUD colour + HHA) and, for several heads
(SIFT Flow), the first head's matrix and metrics plus `<head>_label_digest` and
`<head>_mean_iou` / `<head>_pixel_accuracy` for every further head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.ci.label_maps import encode_label_maps
from bench.core.contracts import Backend
from bench.core.errors import describe_error
from bench.evaluation.parity import compare_blob, label_agreement
from bench.model.spec import FcnSpec

# One model per family, the one `golden` runs by default: early/late fusion is the NYUD case,
# two heads SIFT Flow's, the 8s at-once net ADE20K's, the grouped CaffeNet trunk AlexNet's.
GOLDEN_MODELS = ("nyud-fcn32s-color-hha", "siftflow-fcn16s", "pascalcontext-fcn32s",
                 "ade20k-fcn8s", "voc-fcn-alexnet")


@dataclass(frozen=True)
class ZooSample:
    """One preprocessed id: named inputs (C, H, W) and one label map per head, in head order."""

    id: str
    inputs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


@dataclass(frozen=True)
class ScoringRules:
    """What the golden suite reads of a data set to score it: its heads and fresh confusions
    (the VOC golden images come from the VOC suite, not from a `SegmentationSet`)."""

    heads: Sequence[Any]

    def confusions(self) -> dict[str, Any]:
        return {head.name: head.confusion() for head in self.heads}


def make_zoo_samples(model: str, workdir: str | Path, *, seed: int, num_images: int,
                     voc_samples: Sequence[Any] = (), voc_split: str = "trainval"
                     ) -> tuple[str, list[ZooSample], Any]:
    """(split, samples, data set) of `model`'s data set, generated under `workdir` and read
    back through bench.data.sets (decoders included); the data set gives the heads and their
    scoring rules. VOC models reuse the VOC golden images."""
    from bench.data.model_data import dataset_name, open_model_dataset
    from bench.data.synthetic_zoo import WRITERS

    name = dataset_name(model)
    if name == "voc":
        from bench.data.voc_set import HEADS

        voc = ScoringRules(HEADS)
        return voc_split, [ZooSample(s.id, {"data": s.image}, {"semantic": s.label})
                           for s in list(voc_samples)[:num_images]], voc
    # Three times the images asked for: NYUD's test third then holds that many.
    WRITERS[name](workdir, seed=seed, n=3 * num_images)
    dataset = open_model_dataset(model, workdir)
    samples = [dataset.load(i) for i in dataset.ids[:num_images]]
    return dataset.name, [ZooSample(s.id, dict(s.inputs), dict(s.labels))
                          for s in samples], dataset


def input_digest(samples: Sequence[ZooSample]) -> str:
    """sha256 over ids, every input (name order as loaded) and every label map."""
    digest = hashlib.sha256()
    for item in samples:
        digest.update(item.id.encode())
        for value in item.inputs.values():
            digest.update(np.ascontiguousarray(value, np.float32).tobytes())
        for value in item.labels.values():
            digest.update(np.ascontiguousarray(value, np.uint8).tobytes())
    return digest.hexdigest()


def label_digest(labels: Iterable[np.ndarray]) -> str:
    """sha256 over the predicted uint8 label arrays in id order."""
    digest = hashlib.sha256()
    for label in labels:
        digest.update(np.ascontiguousarray(label, np.uint8).tobytes())
    return digest.hexdigest()


def zoo_scores(backend: Backend, sample: ZooSample) -> list[np.ndarray]:
    """Per-head (C, H, W) scores of one sample (batch of one), in the spec's head order."""
    batch = {name: value[np.newaxis] for name, value in sample.inputs.items()}
    raw = backend.predict(batch if len(batch) > 1 else next(iter(batch.values())))
    outputs = list(raw.values()) if isinstance(raw, dict) else [raw]
    return [output[0] for output in outputs]


def run_zoo_backend(identity: dict[str, Any], spec: FcnSpec, params: dict[str, np.ndarray],
                    backend_name: str, backend_factory: Callable[[str, FcnSpec], Backend],
                    samples: Sequence[ZooSample], dataset: Any, near_tie_fraction: float
                    ) -> tuple[dict[str, Any], list[list[np.ndarray]] | None]:
    """One (model, backend) row and its per-image, per-head scores for the parity row."""
    try:
        backend = backend_factory(backend_name, spec)
        backend.load_params(params)
        scores = [zoo_scores(backend, sample) for sample in samples]
    except Exception as error:  # a crash is this row's verdict; the other rows still run
        return {**identity, "status": "failed", "error": describe_error(error)}, None
    heads = [head.name for head in dataset.heads]
    confusions = dataset.confusions()
    labels = {head: [] for head in heads}
    near_ties = 0
    for sample, per_head in zip(samples, scores, strict=True):
        for head, score in zip(heads, per_head, strict=True):
            label = score.argmax(axis=0).astype(np.uint8)
            labels[head].append(label)
            confusions[head].update(sample.labels[head], label)
            top2 = np.partition(score, -2, axis=0)[-2:]
            near_ties += int(np.count_nonzero(top2[1] - top2[0]
                                              < near_tie_fraction * np.abs(score).max()))
    first = heads[0]
    summary = confusions[first].summary()
    metrics = {k: v for k, v in summary.items() if k != "num_pixels"}
    row = {**identity, "status": "ok", "error": None, "num_images": len(samples),
           "num_pixels": int(sum(label.size for label in labels[first])),
           "input_digest": input_digest(samples), "label_digest": label_digest(labels[first]),
           "near_tie_pixels": near_ties}
    for head in heads[1:]:
        other = confusions[head].summary()
        row[f"{head}_label_digest"] = label_digest(labels[head])
        metrics[f"{head}_mean_iou"] = other["mean_iou"]
        metrics[f"{head}_pixel_accuracy"] = other["pixel_accuracy"]
    row.update(metrics=metrics, confusion_matrix=confusions[first].matrix.tolist(),
               label_maps=encode_label_maps([label for head in heads for label in labels[head]]))
    return row, scores


def zoo_parity_row(identity: dict[str, Any], left: str, right: str,
                   scores_left: Sequence[Sequence[np.ndarray]],
                   scores_right: Sequence[Sequence[np.ndarray]]) -> dict[str, Any]:
    """Backend agreement over every head: label mismatch and score difference."""
    differing = pixels = 0
    max_rel = max_abs = 0.0
    for heads_a, heads_b in zip(scores_left, scores_right, strict=True):
        for a, b in zip(heads_a, heads_b, strict=True):
            _, count = label_agreement(a[np.newaxis], b[np.newaxis])
            differing += count
            pixels += a.shape[1] * a.shape[2]
            diff = compare_blob("score", a, b, max_rel=np.inf)
            max_rel = max(max_rel, diff.max_rel_diff)
            max_abs = max(max_abs, diff.max_abs_diff)
    return {**identity, "backend": f"{left} vs {right}", "status": "ok", "error": None,
            "parity": True, "label_mismatch": differing / pixels if pixels else 0.0,
            "label_mismatch_px": differing, "num_pixels": pixels,
            "score_max_abs_diff": max_abs, "score_max_rel_diff": max_rel}
