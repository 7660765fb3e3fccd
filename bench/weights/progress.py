"""Progress of a conversion: `Progress(phase, bytes_done, bytes_total)` callbacks, phases "sha256"
and "read", and the tqdm bars the `convert` and `download weights` commands draw with them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

# `progress(phase, bytes_done, bytes_total)`, phases "sha256" and "read".
Progress = Callable[[str, int, int], Any]


class ProgressBars:
    """A `Progress` callback drawing one tqdm byte bar per phase on stderr (the `convert` and
    `download weights` commands). `enabled=None` shows them only when stderr is a terminal."""

    def __init__(self, enabled: bool | None = None, prefix: str = "") -> None:
        self.enabled = enabled
        self.prefix = prefix
        self.bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(phase)
        if bar is None:
            bar = self.bars[phase] = tqdm(
                total=total, desc=f"{self.prefix}{phase}", unit="B", unit_scale=True,
                unit_divisor=1024, leave=False, file=sys.stderr,
                disable=None if self.enabled is None else not self.enabled)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def byte_progress(progress: Progress | None, phase: str, total: int) -> Callable[[int], Any] | None:
    """Adapt chunk-size callbacks (sha256_file) to progress(phase, done, total)."""
    if progress is None:
        return None
    done = 0

    def step(chunk: int) -> None:
        nonlocal done
        done += chunk
        progress(phase, done, total)

    return step


def offset_progress(progress: Progress | None, phase: str,
                      total: int) -> Callable[[int], Any] | None:
    if progress is None:
        return None
    return lambda offset: progress(phase, offset, total)
