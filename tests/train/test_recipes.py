"""Training recipes as data: the reference solver settings of each regime
(bench/train/recipes.py)."""

from __future__ import annotations

import pytest

from bench.train.recipes import CVPR, HEAVY


def test_heavy_recipe_is_the_reference_solver():
    voc = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
    assert {k: HEAVY.base_lr[k] for k in voc} == {"fcn32s": 1e-10, "fcn16s": 1e-12,
                                                  "fcn8s": 1e-14, "fcn8s-atonce": 1e-10}
    assert (HEAVY.momentum, HEAVY.weight_decay, HEAVY.iter_size) == (0.99, 5e-4, 1)
    assert HEAVY.loss_normalization == "sum"
    assert {k: HEAVY.max_iter[k] for k in voc} == {"fcn32s": 100_000, "fcn16s": 100_000,
                                                   "fcn8s": 100_000, "fcn8s-atonce": 300_000}
    assert (HEAVY.eval_every, HEAVY.snapshot_every) == (4000, 4000)
    assert not HEAVY.learned_upsampling


def test_cvpr_recipe_is_batch_20_momentum_09_normalized():
    assert (CVPR.momentum, CVPR.iter_size, CVPR.loss_normalization) == (0.9, 20, "valid")
    # 1e-4 for VGG16, lowered 100x per skip stage (CVPR §4.2).
    assert CVPR.base_lr["fcn32s"] == 1e-4
    assert CVPR.base_lr["fcn16s"] == pytest.approx(1e-6)
    assert CVPR.base_lr["fcn8s"] == pytest.approx(1e-8)
