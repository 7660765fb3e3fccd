"""Resuming a run: the newest complete snapshot, checked against this run's settings, id lists,
process count and the hashes in its solver state, so that the continuation is the same run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as safetensors_load

from bench.core.errors import FcnBenchError, WeightsError
from bench.core.json_text import loads_bounded
from bench.model.spec import FcnSpec
from bench.train.plan import check_momentum, solver_plan
from bench.train.run_config import TrainConfig
from bench.train.snapshots import SNAPSHOT_DIR, SnapshotPaths, list_snapshots
from bench.weights.archive import load_archive, sha256_file


@dataclass
class ResumeState:
    iteration: int
    params: dict[str, np.ndarray]
    momentum: dict[str, np.ndarray]
    sampler_state: dict[str, Any]
    record: dict[str, Any]
    paths: SnapshotPaths


# Settings that must not change when resuming, or the continuation would not be the same run.
_RESUME_INVARIANTS = ("variant", "base_lr", "seed", "num_classes", "width_divisor")


def load_resume_state(out_dir: Path, config: TrainConfig, spec: FcnSpec,
                      fingerprint: str, world_size: int) -> ResumeState:
    """The newest complete snapshot in `out_dir`, verified against this run's settings."""
    snapshots = list_snapshots(out_dir, config.variant)
    if not snapshots:
        raise FcnBenchError(f"{out_dir / SNAPSHOT_DIR}: no complete {config.variant} snapshot "
                            f"to resume from; start without --resume")
    iteration, paths = snapshots[-1]
    record = read_solver_state(paths.state)
    saved = record["config"]
    changed = [f"{key} {saved[key]!r} -> {getattr(config, key)!r}" for key in _RESUME_INVARIANTS
               if saved[key] != getattr(config, key)]
    if saved["recipe"] != config.recipe.to_json():
        changed.append(f"recipe {saved['recipe']['name']} -> {config.recipe.name} (or its "
                       "settings)")
    if record.get("data_fingerprint") != fingerprint:
        changed.append("the training/validation id lists")
    if record.get("world_size", 1) != world_size:
        changed.append(f"processes {record.get('world_size', 1)} -> {world_size}")
    if changed:
        raise FcnBenchError(f"{paths.state}: cannot resume exactly, the run changed: "
                            f"{'; '.join(changed)}; resume with the original settings or start "
                            f"a new --out")
    for path, key in ((paths.weights, "weights_sha256"), (paths.solver, "solver_sha256")):
        if not path.is_file() or sha256_file(path) != record[key]:
            raise WeightsError(path, "missing or does not match the hash in its solver state; "
                               "delete this snapshot to resume from the previous one")
    params, _ = load_archive(paths.weights, spec)
    try:
        momentum = dict(safetensors_load(paths.solver.read_bytes()))
    except (SafetensorError, OSError) as error:
        raise WeightsError(paths.solver, f"unreadable momentum buffers ({error})") from None
    check_momentum(momentum, solver_plan(spec, config.recipe, config.base_lr), spec, paths.solver)
    return ResumeState(iteration, dict(params), momentum, record["sampler"], record, paths)


# What load_resume_state reads from a solver state: key -> its JSON type.
_STATE_FIELDS = {"config": dict, "sampler": dict, "weights_sha256": str, "solver_sha256": str}
_JSON_NAMES = {dict: "object", str: "string", list: "array"}
_STATE_CONFIG_FIELDS = (*_RESUME_INVARIANTS, "recipe")


def read_solver_state(path: Path) -> dict[str, Any]:
    """A snapshot's `.solver.json`, parsed with bounded depth and its shape checked, so that a
    damaged or hand-edited file (a JSON array, a missing key) is one line naming it."""
    try:
        record = loads_bounded(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, ValueError) as error:  # ValueError: too deep
        raise FcnBenchError(f"{path}: unreadable solver state ({error})") from None
    problems = [f"{key} is not a JSON {_JSON_NAMES[kind]}" for key, kind in _STATE_FIELDS.items()
                if not isinstance(record, dict) or not isinstance(record.get(key), kind)]
    if isinstance(record, dict) and isinstance(record.get("config"), dict):
        config = record["config"]
        problems += [f"config has no {key}" for key in _STATE_CONFIG_FIELDS if key not in config]
        if not isinstance(config.get("recipe"), dict) or "name" not in config["recipe"]:
            problems.append("config.recipe is not a recipe object")
    if not isinstance(record, dict):
        problems = [f"a JSON {_JSON_NAMES.get(type(record), 'value')}, expected an object"]
    if problems:
        raise FcnBenchError(f"{path}: not a solver state ({'; '.join(problems)}); delete this "
                            "snapshot to resume from the previous one")
    return record
