"""Randomness of a run: REF's sampler order, its replay on resume, the dropout seeds
(bench/train/sampler.py)."""

from __future__ import annotations

import json
import random

from bench.train.sampler import Sampler, dropout_seed


def test_sampler_draws_refs_python_random_sequence():
    # REF voc_layers.SBDDSegDataLayer: random.seed(1337); random.randint(0, n - 1) per image.
    random.seed(1337)
    reference = [random.randint(0, 8497) for _ in range(500)]
    sampler = Sampler(8498, 1337)
    assert [sampler.next() for _ in range(500)] == reference


def test_sampler_replay_reproduces_the_saved_state_and_ranks_differ():
    sampler = Sampler(50, 7)
    for _ in range(123):
        sampler.next()
    replayed = Sampler(50, 7)
    replayed.fast_forward(123)
    assert replayed.matches(json.loads(json.dumps(sampler.state())))
    assert replayed.next() == sampler.next()
    twin = sampler.clone()
    assert [twin.next() for _ in range(5)] == [sampler.next() for _ in range(5)]
    rank0, rank1 = Sampler(1000, 7, rank=0), Sampler(1000, 7, rank=1)
    assert [rank0.next() for _ in range(20)] != [rank1.next() for _ in range(20)]


def test_dropout_seed_depends_on_every_coordinate_only():
    base = dropout_seed(1337, 0, 10, 0)
    assert base == dropout_seed(1337, 0, 10, 0)
    others = {dropout_seed(1338, 0, 10, 0), dropout_seed(1337, 1, 10, 0),
              dropout_seed(1337, 0, 11, 0), dropout_seed(1337, 0, 10, 1)}
    assert base not in others and len(others) == 4
    assert 0 <= base < 2**63
