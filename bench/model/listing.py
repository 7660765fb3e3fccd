"""What `cli.py models` shows: one row per catalogued model, with figures computed from its spec.

Parameters and GFLOPs come from `bench.model.spec` (never typed); everything else is
catalogue data (bench/model/zoo.py). Rows are plain dicts so the command can print a table, JSON or
CSV.
"""

from __future__ import annotations

from typing import Any

from bench.model.spec import build_spec
from bench.model.zoo import MODEL_ENTRIES, ModelEntry

# One short word per input kind, for the table ("+" = concatenated, "|" = separate streams).
_KIND_LABELS = {"bgr": "BGR", "hha": "HHA", "logd": "logD"}
_FUSION_JOIN = {"none": "", "early": "+", "late": "|"}


def weights_status(entry: ModelEntry) -> str:
    """'sha1 pinned', 'unpinned' (published without a checksum) or 'not released'."""
    if entry.weights_url is None:
        return "not released"
    return "sha1 pinned" if entry.weights_sha1 else "unpinned"


def describe(entry: ModelEntry) -> dict[str, Any]:
    """Everything known about one model, as JSON-ready data."""
    spec = build_spec(entry.name)
    height, width = entry.typical_size
    return {
        "model": entry.name,
        "aliases": list(entry.aliases),
        "variant": spec.variant,
        "dataset": entry.dataset,
        "trunk": entry.trunk,
        "stride": entry.stride,
        "fusion": entry.fusion,
        "inputs": [{"name": item.name, "channels": item.channels, "kind": item.kind,
                    "mean": list(item.mean)} for item in entry.inputs],
        "heads": [{"output": head.output, "classes": head.classes, "task": head.task}
                  for head in entry.heads],
        "parameters": spec.num_parameters(),
        "size": [height, width],
        "gflops": spec.flops(height, width) / 1e9,
        "weights_url": entry.weights_url,
        "weights_sha1": entry.weights_sha1,
        "checksum_status": entry.checksum_status,
        "weights": weights_status(entry),
        "paper": entry.paper,
    }


def catalogue() -> list[dict[str, Any]]:
    return [describe(entry) for entry in MODEL_ENTRIES]


def table_row(row: dict[str, Any]) -> list[str]:
    """The short form of a row for a table that fits 120 columns."""
    join = _FUSION_JOIN[row["fusion"]]
    inputs = join.join(_KIND_LABELS[item["kind"]] for item in row["inputs"])
    classes = " + ".join(str(head["classes"]) for head in row["heads"])
    return [row["model"], row["dataset"], inputs, classes, f"{row['parameters'] / 1e6:.1f}M",
            "x".join(map(str, row["size"])), f"{row['gflops']:.1f}", row["weights"],
            row["paper"] or "-"]


TABLE_HEADERS = ["model", "data set", "inputs", "classes", "params", "size", "GFLOPs", "weights",
                 "paper"]


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV line: nested inputs/heads flattened to ';'-separated text."""
    return {
        "model": row["model"], "aliases": ";".join(row["aliases"]), "variant": row["variant"],
        "dataset": row["dataset"], "trunk": row["trunk"], "stride": row["stride"],
        "fusion": row["fusion"],
        "inputs": ";".join(f"{i['name']}:{i['kind']}:{i['channels']}" for i in row["inputs"]),
        "heads": ";".join(f"{h['output']}:{h['classes']}" for h in row["heads"]),
        "parameters": row["parameters"], "height": row["size"][0], "width": row["size"][1],
        "gflops": f"{row['gflops']:.3f}", "weights_url": row["weights_url"] or "",
        "weights_sha1": row["weights_sha1"] or "", "checksum_status": row["checksum_status"],
        "paper": row["paper"],
    }
