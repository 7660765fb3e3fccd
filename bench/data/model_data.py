"""Which data set, split and input preparation each released model is evaluated and trained on.

The catalogue (bench/model/zoo.py) names a model's data set for people ("SIFT Flow"); the data set
registry (bench/data) names it for code ("siftflow"). This module joins the two, so a command
given only `--variant MODEL` opens the model's own data with the inputs its blobs expect
(docs/datasets.md; docs/training.md for the training splits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data.sets import DEFAULT_SPLITS
from bench.model.spec import resolve_model
from bench.model.zoo import ModelEntry

# ModelEntry.dataset (catalogue wording) -> bench.data.sets registry name.
REGISTRY_NAMES = {"PASCAL VOC": "voc", "NYUDv2": "nyud", "SIFT Flow": "siftflow",
                  "PASCAL-Context": "pascalcontext", "ADE20K": "ade20k"}
# The split each data set's reference trainer learns from (REF solve.py / *_layers.py).
TRAIN_SPLITS = {"voc": "train", "nyud": "trainval", "siftflow": "trainval",
                "pascalcontext": "train", "ade20k": "training"}


def dataset_name(model: str | ModelEntry) -> str:
    """Registry name of the data set a model (name, alias or entry) was released for."""
    entry = model if isinstance(model, ModelEntry) else resolve_model(model)
    return REGISTRY_NAMES[entry.dataset]


def default_split(model: str | ModelEntry) -> str:
    """The split the paper scores the model on (seg11valid, NYUD test, SIFT Flow test, Context
    val, ADE20K validation)."""
    return DEFAULT_SPLITS[dataset_name(model)]


def dataset_options(model: str | ModelEntry) -> dict[str, Any]:
    """open_dataset options that make `Sample.inputs` carry the model's own blob names (NYUD:
    {"color": "bgr", "hha": "hha"} for the late-fusion net, {"data": "hha"} for the HHA net)."""
    entry = model if isinstance(model, ModelEntry) else resolve_model(model)
    if dataset_name(entry) == "nyud":
        return {"inputs": {item.name: item.kind for item in entry.inputs}}
    return {}


def open_model_dataset(model: str | ModelEntry, data_root: str | Path, split: str | None = None,
                       **options: Any):
    """The model's data set and split (its default split when None), inputs named as its blobs."""
    from bench.data.sets import open_dataset

    entry = model if isinstance(model, ModelEntry) else resolve_model(model)
    return open_dataset(dataset_name(entry), data_root, split or default_split(entry),
                        **dataset_options(entry), **options)


# Where the reference table (reference_results/accuracy.csv) keys a model differently from
# FcnSpec.variant: FCN-AlexNet is "fcn-alexnet" there (CVPR Table 1).
_REFERENCE_KEYS = {"voc-fcn-alexnet": "fcn-alexnet"}


def reference_variant(model: str | ModelEntry) -> str:
    """The model's key in reference_results/accuracy.csv."""
    entry = model if isinstance(model, ModelEntry) else resolve_model(model)
    return _REFERENCE_KEYS.get(entry.key, entry.key)
