"""Randomness of a run: which image each update sees (REF's data-layer order, see `Sampler`) and
each forward pass's dropout seed, both replayable so that a resumed run is the same run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from bench.core.errors import UsageError

# Python's `random` module, seeded like REF's train.prototxt (seed 1337).
DEFAULT_SEED = 1337


class Sampler:
    """Images drawn uniformly WITH replacement, in exactly REF's order for rank 0.

    REF's SBDDSegDataLayer calls `random.seed(seed)` then `random.randint(0, n - 1)` once per
    image; `random.Random(seed).randint` is the same Mersenne-Twister stream (stable across Python
    versions), so with the same train.txt order our sample sequence is REF's. Process `rank` of a
    data-parallel run uses seed + rank. The state is the number of draws: a resumed run replays
    them (100k draws take ~0.1 s), and the saved generator state double-checks the replay.
    """

    def __init__(self, num_items: int, seed: int, rank: int = 0):
        if num_items < 1:
            raise UsageError("the training split is empty")
        self.num_items = num_items
        self.seed = seed + rank
        self._rng = random.Random(self.seed)
        self.draws = 0

    def next(self) -> int:
        self.draws += 1
        return self._rng.randint(0, self.num_items - 1)

    def fast_forward(self, draws: int) -> None:
        for _ in range(draws - self.draws):
            self.next()

    def clone(self) -> Sampler:
        twin = Sampler.__new__(Sampler)
        twin.num_items, twin.seed, twin.draws = self.num_items, self.seed, self.draws
        twin._rng = random.Random()
        twin._rng.setstate(self._rng.getstate())
        return twin

    def state(self) -> dict[str, Any]:
        """JSON-safe: seed, draws and the full Mersenne-Twister state (625 words)."""
        version, words, gauss = self._rng.getstate()
        return {"seed": self.seed, "draws": self.draws, "num_items": self.num_items,
                "python_random_state": [version, list(words), gauss]}

    def matches(self, state: Mapping[str, Any]) -> bool:
        return self.state() == dict(state)


def dropout_seed(seed: int, rank: int, iteration: int, image_index: int) -> int:
    """A 63-bit dropout seed that depends only on (seed, rank, iteration, image within the batch).

    Seeding each forward pass from this, not from a running generator, makes a resumed run draw
    the same masks as an uninterrupted one, in either backend.
    """
    words = np.random.SeedSequence([seed, rank, iteration, image_index]).generate_state(
        1, dtype=np.uint64)
    return int(words[0] >> np.uint64(1))


def sampled_ids(sampler: Sampler, ids: Sequence[str]) -> Iterator[str]:
    """The endless id stream `sampler` draws (the training prefetch reads a clone ahead)."""
    while True:
        yield ids[sampler.next()]
