"""The solver plan: every learned tensor with its effective learning rate and weight decay (Caffe's
base_lr * lr_mult and weight_decay * decay_mult), and the check that momentum buffers match it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import WeightsError
from bench.model.spec import FcnSpec
from bench.train.recipes import Recipe


@dataclass(frozen=True)
class TensorHyper:
    """Solver settings of one learned tensor: Caffe's base_lr * lr_mult and wd * decay_mult."""

    name: str
    role: str
    lr: float
    decay: float


def solver_plan(spec: FcnSpec, recipe: Recipe, base_lr: float) -> tuple[TensorHyper, ...]:
    """The learned tensors, in spec order, with their effective lr and decay.

    Tensors with lr_mult 0 (fixed upsampling, at-once scales) are absent: Caffe keeps their
    momentum at zero, so they never move; the backends exclude them from the gradient
    (docs/training_recipes.md "The update and the loss normalisation").
    """
    plan = []
    for param in spec.parameters():
        lr_mult, decay_mult = param.lr_mult, param.decay_mult
        if param.role == "upsample" and param.layer in recipe.learned_upsampling:
            lr_mult, decay_mult = 1.0, 1.0
        if lr_mult > 0:
            plan.append(TensorHyper(param.name, param.role, base_lr * lr_mult,
                                    recipe.weight_decay * decay_mult))
    return tuple(plan)


def check_momentum(buffers: Mapping[str, np.ndarray], plan: Sequence[TensorHyper],
                   spec: FcnSpec, path: str | Path) -> None:
    """Momentum buffers must be exactly the learned tensors, in canonical shapes."""
    shapes = spec.param_shapes()
    expected = {hyper.name for hyper in plan}
    missing = sorted(expected - set(buffers))
    unexpected = sorted(set(buffers) - expected)
    misshaped = [name for name in expected & set(buffers)
                 if tuple(buffers[name].shape) != shapes[name]]
    if missing or unexpected or misshaped:
        raise WeightsError(path, f"momentum buffers do not match the solver plan (missing "
                           f"{missing}, unexpected {unexpected}, wrong shape {misshaped})")
