"""The per-tensor solver plan: effective lr and decay of every learned tensor, fixed upsampling
left out (bench/train/plan.py)."""

from __future__ import annotations

import pytest

from bench.model.spec import VARIANTS, Conv, build_spec
from bench.train.plan import solver_plan
from bench.train.recipes import CVPR, HEAVY


@pytest.mark.parametrize("variant", VARIANTS)
def test_heavy_plan_doubles_bias_lr_decays_weights_only_and_freezes_upsampling(variant):
    spec = build_spec(variant)
    base = HEAVY.base_lr[variant]
    plan = {hyper.name: hyper for hyper in solver_plan(spec, HEAVY, base)}
    for param in spec.parameters():
        if param.role in ("upsample", "scale"):
            assert param.name not in plan  # lr_mult 0: never touched
        elif param.role == "bias":
            assert (plan[param.name].lr, plan[param.name].decay) == (2 * base, 0.0)
        else:
            assert (plan[param.name].lr, plan[param.name].decay) == (base, 5e-4)
    convs = [layer for layer in spec.layers if isinstance(layer, Conv)]
    assert len(plan) == 2 * len(convs)


def test_cvpr_plan_learns_intermediate_upsampling_only():
    spec = build_spec("fcn8s")
    plan = {hyper.name: hyper for hyper in solver_plan(spec, CVPR, 1e-8)}
    assert (plan["upscore2.weight"].lr, plan["upscore2.weight"].decay) == (1e-8, 5e-4)
    assert "upscore_pool4.weight" in plan
    assert "upscore8.weight" not in plan  # the final deconv stays fixed bilinear
