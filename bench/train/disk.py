"""Disk a training run will need for its snapshots, checked against the free space at the start.

A full-width fcn32s snapshot is the weights archive plus the momentum of every learned tensor,
both float32: about 1.1 GB, so keeping all 25 snapshots of the reference recipe (100,000 updates,
one every 4,000) needs ~27 GB. `train` keeps the newest few and the best by default
(docs/outputs-and-disk.md); this module says how much that needs and refuses to start
a run the disk cannot hold, instead of failing hours later in the middle of a write.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import FcnBenchError
from bench.model.spec import FcnSpec

FLOAT32_BYTES = 4
# safetensors headers (JSON, ~100 bytes per tensor), the solver-state JSON and the log / eval
# records of one snapshot interval: generous, and tiny next to the tensors.
OVERHEAD_BYTES = 1 << 20


class DiskFull(FcnBenchError):
    """The run's snapshots would not fit on the disk holding its output folder."""


def snapshot_bytes(spec: FcnSpec, learned: Iterable[str]) -> int:
    """Bytes of one snapshot: every parameter (weights archive) plus the momentum of the
    `learned` tensors (the solver plan's names), float32."""
    sizes = {p.name: p.numel for p in spec.parameters()}
    momentum = sum(sizes[name] for name in set(learned))
    return FLOAT32_BYTES * (sum(sizes.values()) + momentum) + OVERHEAD_BYTES


def snapshot_iterations(iters: int, snapshot_every: int, start: int = 0) -> list[int]:
    """Iterations after `start` that write a snapshot: every `snapshot_every`, and the last."""
    steps = list(range(snapshot_every * (start // snapshot_every + 1), iters + 1, snapshot_every))
    if iters > start and (not steps or steps[-1] != iters):
        steps.append(iters)
    return steps


@dataclass(frozen=True)
class DiskPlan:
    """What the remaining run writes: `new_snapshots` of `snapshot_bytes` each, at most
    `kept_at_once` on disk together (existing ones included); `needed_bytes` is the growth of
    the folder at its peak."""

    folder: Path
    snapshot_bytes: int
    new_snapshots: int
    existing_snapshots: int
    kept_at_once: int
    needed_bytes: int
    free_bytes: int

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.free_bytes

    def summary(self) -> str:
        peak = (f"at most {self.kept_at_once} kept at once" if self.kept_at_once
                < self.existing_snapshots + self.new_snapshots else "all kept")
        return (f"disk: {self.new_snapshots} snapshot(s) of {format_bytes(self.snapshot_bytes)} "
                f"to write, {peak}: needs about {format_bytes(self.needed_bytes)} more in "
                f"{self.folder} ({format_bytes(self.free_bytes)} free)")


def plan_disk(folder: str | Path, spec: FcnSpec, learned: Iterable[str], *, iters: int,
              snapshot_every: int, start: int = 0, keep: int = 0,
              existing: int = 0) -> DiskPlan:
    """The disk a run from `start` to `iters` needs in `folder` with `keep` newest snapshots
    (0 = all) plus the best, given `existing` snapshots already there.

    With `keep`, a new snapshot is written before the oldest is pruned, and the best one may be
    none of the newest: at most keep + 2 are on disk at once.
    """
    size = snapshot_bytes(spec, learned)
    new = len(snapshot_iterations(iters, snapshot_every, start))
    total = existing + new
    peak = total if keep <= 0 else min(total, keep + 2)
    growth = max(0, peak - existing) * size
    return DiskPlan(Path(folder), size, new, existing, peak, growth, free_bytes(folder))


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the file system that holds (or will hold) `folder`."""
    path = Path(folder).expanduser().absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def check_disk(plan: DiskPlan) -> None:
    """Refuse a run whose snapshots cannot fit: one line with the estimate and the free space."""
    if not plan.fits:
        raise DiskFull(f"{plan.folder}: the run needs about {format_bytes(plan.needed_bytes)} "
                       f"for its snapshots ({plan.kept_at_once} of "
                       f"{format_bytes(plan.snapshot_bytes)} on disk at once) but only "
                       f"{format_bytes(plan.free_bytes)} is free; free some space, keep fewer "
                       "snapshots (--keep-snapshots N) or choose another --out")


def format_bytes(count: float) -> str:
    """1.09 GB, 545 MB, 12 kB (decimal units, as `df -H`)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
        count /= 1000
    raise AssertionError("unreachable")
