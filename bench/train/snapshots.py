"""Snapshots of a run: the neutral weight archive plus the solver state beside it (momentum and a
JSON state written last), listed oldest first and pruned to the newest few and the best.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as safetensors_save

from bench.core.atomic import atomic_write_bytes, write_json
from bench.core.records import make_record
from bench.train.run_config import TrainConfig
from bench.train.sampler import Sampler
from bench.weights.archive import save_archive, sha256_file

SNAPSHOT_DIR = "snapshots"
SOLVER_SUFFIX = ".solver.safetensors"
STATE_SUFFIX = ".solver.json"


@dataclass(frozen=True)
class SnapshotPaths:
    weights: Path
    solver: Path
    state: Path  # written last: a snapshot without it is incomplete and ignored

    @classmethod
    def at(cls, out_dir: Path, variant: str, iteration: int) -> SnapshotPaths:
        stem = out_dir / SNAPSHOT_DIR / f"{variant}_iter_{iteration:07d}"
        return cls(stem.with_suffix(".safetensors"), Path(f"{stem}{SOLVER_SUFFIX}"),
                   Path(f"{stem}{STATE_SUFFIX}"))

    def remove(self) -> None:
        # State first, so a crash midway never leaves a "complete" snapshot without its files.
        for path in (self.state, self.solver, self.weights):
            path.unlink(missing_ok=True)


def save_snapshot(out_dir: Path, config: TrainConfig, iteration: int,
                  params: Mapping[str, np.ndarray], momentum: Mapping[str, np.ndarray],
                  sampler: Sampler, extra: Mapping[str, Any]) -> SnapshotPaths:
    """Weights (bench.weights.archive archive), momentum (safetensors) and state (JSON), each
    atomic.

    The JSON goes last and carries the other two files' hashes, so a snapshot interrupted while
    being written is never mistaken for a complete one.
    """
    paths = SnapshotPaths.at(out_dir, config.variant, iteration)
    save_archive(paths.weights, params, {
        # The model by name: several zoo models share every tensor name (VOC/NYUD/Context 32s).
        "variant": config.variant, "num_classes": str(config.num_classes),
        "width_divisor": str(config.width_divisor),
        "kind": "trained", "origin": f"fcn-bench train {config.recipe.name} ({config.backend})",
        "iteration": str(iteration), "recipe": config.recipe.name, "seed": str(config.seed)})
    atomic_write_bytes(paths.solver, safetensors_save(
        {name: np.ascontiguousarray(value, np.float32) for name, value in momentum.items()},
        metadata={"layout": "canonical (Caffe)", "iteration": str(iteration)}))
    record = make_record(
        "train-solver-state", iteration=iteration, config=config.to_json(),
        sampler=sampler.state(), images_per_update=config.recipe.iter_size,
        weights_file=paths.weights.name, weights_sha256=sha256_file(paths.weights),
        solver_file=paths.solver.name, solver_sha256=sha256_file(paths.solver), **extra)
    write_json(paths.state, record)
    return paths


def list_snapshots(out_dir: Path, variant: str) -> list[tuple[int, SnapshotPaths]]:
    """Complete snapshots (state JSON present), oldest first."""
    found = []
    for state in (out_dir / SNAPSHOT_DIR).glob(f"{variant}_iter_*{STATE_SUFFIX}"):
        digits = state.name[len(f"{variant}_iter_"):-len(STATE_SUFFIX)]
        if digits.isdigit():
            found.append((int(digits), SnapshotPaths.at(out_dir, variant, int(digits))))
    return sorted(found, key=lambda item: item[0])


def prune_snapshots(snapshots: list[SnapshotPaths], keep: int,
                    best: SnapshotPaths | None) -> None:
    """Keep the newest `keep` snapshots (0 = all) and always the best-scoring one. The newest is
    never removed, so `--resume` (which continues the newest) always has its snapshot."""
    if keep <= 0:
        return
    old, newest = snapshots[:-keep], snapshots[-keep:]
    for paths in old:
        if paths != best:
            paths.remove()
    snapshots[:] = [paths for paths in old if paths == best] + newest
