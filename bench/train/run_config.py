"""What defines a training run: its configuration (recorded beside every snapshot and checked on
resume), the fingerprint of its id lists, and the optional TensorBoard writer's requirement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.core.errors import BackendUnavailable
from bench.model.spec import NUM_CLASSES
from bench.train.recipes import Recipe
from bench.train.sampler import DEFAULT_SEED

DEFAULT_KEEP_SNAPSHOTS = 3


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; recorded beside every snapshot and checked on resume."""

    variant: str
    backend: str
    recipe: Recipe
    base_lr: float
    iters: int
    eval_every: int
    snapshot_every: int
    seed: int = DEFAULT_SEED
    num_classes: int = NUM_CLASSES
    width_divisor: int = 1
    log_every: int = 20  # REF solver "display: 20"
    val_split: str = "seg11valid"
    val_limit: int | None = None
    # The newest N snapshots and the best (by validation mean IU) are kept; 0 keeps every one
    # (REF, ~1.1 GB each for fcn32s: bench/train/disk.py).
    keep_snapshots: int = DEFAULT_KEEP_SNAPSHOTS
    plots: bool = False
    init: str = ""
    # Bitwise-repeatable kernels (docs/training_determinism.md); not a resume invariant: a run
    # may continue with the other setting, it is then no longer bitwise repeatable.
    deterministic: bool = True

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["recipe"] = self.recipe.to_json()
        return record


ScalarWriter = Callable[[str, float, int], None]


def require_tensorboard() -> None:
    """Both torch.utils.tensorboard and tf.summary.scalar need the `tensorboard` package."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise BackendUnavailable("--tensorboard needs the tensorboard package (pip install "
                                 "tensorboard); the CSV log and --plots work without it")


def id_lists_fingerprint(train_ids: Sequence[str], val_ids: Sequence[str]) -> str:
    """Hash of the ordered id lists (not file contents): the sampler's order depends on them,
    so resume checks it. Unlike runner.data_fingerprint, which hashes the label files."""
    digest = hashlib.sha256()
    for name, ids in (("train", train_ids), ("val", val_ids)):
        digest.update(f"{name}:{len(ids)}\n".encode())
        digest.update("\n".join(ids).encode())
    return digest.hexdigest()
