"""Training recipes as data: each optimisation regime written as the Caffe solver settings that
define it (docs/training_recipes.md), and which recipe a model was released with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bench.core.errors import UsageError

# Iterations count solver updates, as Caffe's `iter` does; one update consumes `iter_size` images
# on every process.


@dataclass(frozen=True)
class Recipe:
    """One optimisation regime, written as the Caffe solver settings that define it."""

    name: str
    description: str
    base_lr: Mapping[str, float]  # per variant, "fixed" policy: never decayed
    momentum: float
    weight_decay: float
    iter_size: int  # images whose gradients are accumulated (and averaged) per update
    # "sum": SoftmaxWithLoss normalize=false, batch 1 -> sum over non-void pixels.
    # "valid": normalize=true -> that sum / number of non-void pixels.
    # (docs/training_recipes.md "The update and the loss normalisation")
    loss_normalization: str
    max_iter: Mapping[str, int]
    eval_every: int
    snapshot_every: int
    # Upsampling layers that this recipe learns (lr_mult 1, decay_mult 1, Caffe's defaults);
    # every other Upsample keeps the spec's lr_mult 0 (fixed bilinear).
    learned_upsampling: frozenset[str] = frozenset()
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["learned_upsampling"] = sorted(self.learned_upsampling)
        return record


HEAVY = Recipe(
    name="heavy",
    description="PAMI/REF 'heavy': online (batch 1), momentum 0.99, unnormalized (summed) loss",
    # Every released VGG16 model was trained this way; only base_lr and the length differ
    # (docs/training_recipes.md lists each value with its solver.prototxt / solve.py).
    base_lr={"fcn32s": 1e-10, "fcn16s": 1e-12, "fcn8s": 1e-14, "fcn8s-atonce": 1e-10,
             "nyud-fcn32s-color": 1e-10, "nyud-fcn32s-hha": 1e-10,
             "nyud-fcn32s-color-d": 1e-10, "nyud-fcn32s-color-hha": 1e-12,
             "siftflow-fcn32s": 1e-10, "siftflow-fcn16s": 1e-12, "siftflow-fcn8s": 1e-12,
             "pascalcontext-fcn32s": 1e-10, "pascalcontext-fcn16s": 1e-12,
             "pascalcontext-fcn8s": 1e-14, "ade20k-fcn8s": 1e-14},
    momentum=0.99,
    weight_decay=5e-4,
    iter_size=1,
    loss_normalization="sum",
    # The updates each REF solve.py runs (its step loop), not solver.prototxt's max_iter, which
    # solve.py never reaches (NYUD, SIFT Flow: 50 x 2000; Context: 50 x 8000); ADE20K has no
    # solve.py, so CSAIL's solver max_iter.
    max_iter={"fcn32s": 100_000, "fcn16s": 100_000, "fcn8s": 100_000, "fcn8s-atonce": 300_000,
              "nyud-fcn32s-color": 100_000, "nyud-fcn32s-hha": 100_000,
              "nyud-fcn32s-color-d": 100_000, "nyud-fcn32s-color-hha": 100_000,
              "siftflow-fcn32s": 100_000, "siftflow-fcn16s": 100_000,
              "siftflow-fcn8s": 100_000, "pascalcontext-fcn32s": 400_000,
              "pascalcontext-fcn16s": 400_000, "pascalcontext-fcn8s": 400_000,
              "ade20k-fcn8s": 300_000},
    eval_every=4000,
    snapshot_every=4000,
    source="shelhamer/fcn.berkeleyvision.org */solver.prototxt, solve.py, net.py; "
           "CSAILVision/sceneparsing trainingCode/caffe/solver_FCN.prototxt",
)

# CVPR §4.2/4.3: minibatch 20, momentum 0.9, lr 1e-4 for VGG16, lowered 100x per skip stage,
# intermediate 2x upsampling learned. The loss is normalized per image (Caffe's default then; the
# summed loss with lr 1e-4 diverges) and the 20 images are accumulated one at a time
# (Caffe iter_size 20 divides the accumulated gradient by 20), as REF's FCN-AlexNet "accum" solver.
# CVPR states no iteration count; we give it the heavy recipe's image budget (100k images = 5000
# updates of 20) and evaluate/snapshot every 4000 images (200 updates). At-once did not exist in
# CVPR: it is trained like FCN-32s (from VGG16, 1e-4). docs/training_recipes.md "The CVPR 2015
# recipe".
CVPR = Recipe(
    name="cvpr",
    description="CVPR 2015: 20-image batches (accumulated), momentum 0.9, per-pixel-mean loss",
    base_lr={"fcn32s": 1e-4, "fcn16s": 1e-6, "fcn8s": 1e-8, "fcn8s-atonce": 1e-4},
    momentum=0.9,
    weight_decay=5e-4,
    iter_size=20,
    loss_normalization="valid",
    max_iter={"fcn32s": 5000, "fcn16s": 5000, "fcn8s": 5000, "fcn8s-atonce": 5000},
    eval_every=200,
    snapshot_every=200,
    learned_upsampling=frozenset({"upscore2", "upscore_pool4"}),
    source="Long, Shelhamer, Darrell, CVPR 2015, §4.2-4.3",
)

# REF voc-fcn-alexnet: "gradient accumulation, normalized loss, and standard momentum" (its
# README): 20 images per update, each loss divided by its non-void pixels, momentum 0.9
# (docs/training_recipes.md "The solver settings").
ALEXNET = Recipe(
    name="alexnet",
    description="REF FCN-AlexNet: 20-image accumulation, momentum 0.9, per-pixel-mean loss",
    base_lr={"voc-fcn-alexnet": 1e-4},
    momentum=0.9,
    weight_decay=5e-4,
    iter_size=20,
    loss_normalization="valid",
    max_iter={"voc-fcn-alexnet": 100_000},  # solve.py: 25 x 4000
    eval_every=4000,
    snapshot_every=4000,
    source="shelhamer/fcn.berkeleyvision.org voc-fcn-alexnet/solver.prototxt, solve.py, "
           "net.py, README",
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (HEAVY, CVPR, ALEXNET)}


def default_recipe(variant: str) -> Recipe:
    """The recipe a model was released with: FCN-AlexNet's own, every other model heavy."""
    return ALEXNET if variant in ALEXNET.base_lr else HEAVY


def recipe_for(recipe: Recipe, variant: str) -> Recipe:
    """`recipe`, refused with one line when it gives no learning rate for `variant`."""
    if variant not in recipe.base_lr:
        known = [name for name, r in RECIPES.items() if variant in r.base_lr]
        raise UsageError(f"recipe {recipe.name!r} has no settings for {variant}; use "
                         f"{' or '.join(repr(k) for k in known) or '--lr and --iters'}")
    return recipe


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return RECIPES[name]
