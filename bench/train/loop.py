"""Training recipes as data and the framework-free training loop that drives a backend's trainer.

Everything both backends must agree on lives here: the Caffe solver settings of each recipe, the
per-tensor learning rates and decays derived from the spec, the sampler (REF's order), dropout
seeds, the staged-initialisation surgery, snapshots in the neutral archive plus the solver state,
the CSV log and the curves. The backends only implement `Trainer` (forward/backward, the explicit
Caffe update, prediction). Must not import torch or tensorflow.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save

from bench.core.atomic import atomic_write_bytes, atomic_write_text, write_json
from bench.core.contracts import Trainer
from bench.core.errors import BackendUnavailable, FcnBenchError, UsageError, WeightsError
from bench.core.records import make_record
from bench.data.voc import prefetch
from bench.evaluation.metrics import ConfusionMatrix, evaluation_record
from bench.model.init import fixed_params, imagenet_init_params, new_layer_params, random_params
from bench.model.memory import ImageMemoryCheck
from bench.model.spec import NUM_CLASSES, Concat, Conv, FcnSpec, build_spec
from bench.weights.archive import BACKBONE as VGG16
from bench.weights.archive import (
    detect_variant,
    load_archive,
    save_archive,
    sha256_file,
    spec_from_archive,
)
from bench.weights.detect import ALEXNET as ALEXNET_TRUNK
from bench.weights.detect import BACKBONES

# ----------------------------------------------------------------------------------------------
# Recipes (docs/training_recipes.md). Iterations count solver updates, as Caffe's `iter`
# does; one update consumes `iter_size` images on every process.


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
# CVPR: it is trained like FCN-32s (from VGG16, 1e-4).
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
# README): 20 images per update, each loss divided by its non-void pixels, momentum 0.9.
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

# Staged initialisation (REF): each finer net starts from the next coarser one; FCN-32s and the
# all-at-once FCN-8s start from VGG16 (fc6/fc7 convolutionalized, fc8 dropped).
TRUNKS = BACKBONES  # bare ImageNet trunks: VGG16, and CaffeNet for FCN-AlexNet
INIT_SOURCE = {"fcn32s": VGG16, "fcn16s": "fcn32s", "fcn8s": "fcn16s", "fcn8s-atonce": VGG16,
               "voc-fcn-alexnet": ALEXNET_TRUNK,  # bench.weights.detect's name of a CaffeNet trunk
               "nyud-fcn32s-color": VGG16, "nyud-fcn32s-hha": VGG16,
               # conv1_1_bgrd from VGG16's conv1_1 (depth channel = mean of B, G, R filters)
               "nyud-fcn32s-color-d": VGG16,
               # REF transplants a colour and an HHA FCN-32s into the *color / *hha layers:
               # `--init COLOR,HHA` (LATE_FUSION_SOURCES), or continue from color-hha weights
               "nyud-fcn32s-color-hha": "nyud-fcn32s-color-hha",
               "siftflow-fcn32s": VGG16, "siftflow-fcn16s": "siftflow-fcn32s",
               "siftflow-fcn8s": "siftflow-fcn16s",
               "pascalcontext-fcn32s": VGG16, "pascalcontext-fcn16s": "pascalcontext-fcn32s",
               "pascalcontext-fcn8s": "pascalcontext-fcn16s", "ade20k-fcn8s": VGG16}
# Late fusion (REF nyud-fcn32s-color-hha/solve.py): one trained single-input FCN-32s per stream,
# transplanted into the layers suffixed by that stream's input (conv1_1 -> conv1_1color, ...).
LATE_FUSION_SOURCES = {"nyud-fcn32s-color-hha": (("color", "nyud-fcn32s-color"),
                                                 ("hha", "nyud-fcn32s-hha"))}
# Early fusion: the 4-channel first layer of a colour+depth net and the VGG16 layer it comes from.
BGRD_LAYER, BGRD_SOURCE = "conv1_1_bgrd", "conv1_1"
RANDOM_INIT = "random"
# Python's `random` module, seeded like REF's train.prototxt (seed 1337).
DEFAULT_SEED = 1337


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return RECIPES[name]


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
    momentum at zero, so they never move; the backends exclude them from the gradient.
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


# ----------------------------------------------------------------------------------------------
# Randomness: which image each update sees, and each forward pass's dropout mask.


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


# ----------------------------------------------------------------------------------------------
# Initialisation surgery (REF surgery.transplant / copy_from + interp).


def required_init_names(spec: FcnSpec, source_kind: str) -> list[str]:
    """Tensors an init archive of `source_kind` must provide to start training `spec`."""
    if source_kind in TRUNKS:
        # The trunk: every conv/fc that is not a new (zero-initialised) score layer; an
        # early-fusion net's conv1_1_bgrd comes from the trunk's conv1_1.
        layers = [BGRD_SOURCE if layer.name == BGRD_LAYER else layer.name
                  for layer in spec.layers if isinstance(layer, Conv) and not layer.zero_init]
        return [f"{name}.{kind}" for name in layers for kind in ("weight", "bias")]
    source = build_spec(source_kind, spec.num_classes, spec.width_divisor)
    names = {param.name for param in spec.parameters() if param.trainable}
    return [param.name for param in source.parameters() if param.trainable and param.name in names]


def initial_params(spec: FcnSpec, source: Mapping[str, np.ndarray], source_kind: str,
                   source_path: str | Path, learned_upsampling: frozenset[str] = frozenset()
                   ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Parameters to start training from, and the archive's tensors that were not used.

    New score layers start at zero (Caffe's default filler), fixed upsampling kernels are (re)set
    to bilinear (REF re-runs interp) and at-once scales to their constants; every other tensor,
    including upsampling the recipe learns (cvpr), is copied by name when present. Missing,
    mis-shaped or non-finite tensors are all listed in one WeightsError.
    """
    required = required_init_names(spec, source_kind)
    shapes = spec.param_shapes()
    if source_kind in TRUNKS and f"{BGRD_LAYER}.weight" in shapes:
        shapes = {**shapes, f"{BGRD_SOURCE}.weight": (shapes[f"{BGRD_LAYER}.weight"][0], 3,
                                                      *shapes[f"{BGRD_LAYER}.weight"][2:]),
                  f"{BGRD_SOURCE}.bias": shapes[f"{BGRD_LAYER}.bias"]}
    missing = [name for name in required if name not in source]
    misshaped = {name: f"{name} {tuple(source[name].shape)} != {shapes[name]}"
                 for name in source
                 if name in shapes and tuple(source[name].shape) != shapes[name]}
    nonfinite = [name for name in required if name in source and name not in misshaped
                 and not np.isfinite(source[name]).all()]
    if missing or misshaped or nonfinite:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if misshaped:
            problems.append(f"wrong shape {'; '.join(misshaped.values())}")
        if nonfinite:
            problems.append(f"NaN/inf in {', '.join(nonfinite)}")
        raise WeightsError(source_path, f"cannot initialise {spec.variant} from this "
                           f"{source_kind} archive: {'; '.join(problems)}")
    if f"{BGRD_LAYER}.weight" in shapes and source_kind in TRUNKS:
        source = {**source, **_bgrd_from_rgb(spec, source, source_path)}
    params = {p.name: np.zeros(p.shape, np.float32) for p in spec.parameters()}
    fixed = fixed_params(spec)
    learned = {f"{layer}.weight" for layer in learned_upsampling}
    for name in params:
        if name in fixed and not (name in learned and name in source):
            params[name] = fixed[name]
        elif name in source:
            params[name] = np.ascontiguousarray(source[name], dtype=np.float32)
    unused = sorted(name for name in source if name not in shapes)
    return params, unused


def _late_fusion_init(spec: FcnSpec, paths: Sequence[str]
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`--init COLOR,HHA`: REF's suffix transplant of two FCN-32s into a late-fusion net; every
    learned tensor of each stream comes from its archive, upsampling is bilinear."""
    streams = LATE_FUSION_SOURCES[spec.variant]
    if len(paths) != len(streams):
        raise UsageError(f"--init for {spec.variant} takes {len(streams)} archives separated by "
                         f"a comma ({', '.join(model for _, model in streams)}), in that order")
    source: dict[str, np.ndarray] = {}
    for text, (suffix, model) in zip(paths, streams, strict=True):
        path = Path(text)
        if not path.is_file():
            raise WeightsError(path, f"{model} init archive not found")
        found = spec_from_archive(path)
        if found.variant != model:
            raise WeightsError(path, f"is a {found.variant} archive; the {suffix} stream of "
                                     f"{spec.variant} starts from {model} weights")
        params, _ = load_archive(path, found)
        for name, value in params.items():
            layer, kind = name.rsplit(".", 1)
            source[f"{layer}{suffix}.{kind}"] = value
    joined = ",".join(paths)
    params, unused = initial_params(spec, source, spec.variant, joined)
    return params, {"init": joined, "init_kind": "+".join(m for _, m in streams),
                    "init_unused_tensors": unused}


def _bgrd_from_rgb(spec: FcnSpec, source: Mapping[str, np.ndarray],
                   path: str | Path) -> dict[str, np.ndarray]:
    """conv1_1_bgrd from a trunk archive, by the one early-fusion rule of bench.model.init (REF
    nyud-fcn32s-color-d surgery: conv1_1 on B, G, R, their mean on log-depth)."""
    layers = {name.rsplit(".", 1)[0] for name in source}
    trunk = {layer: (source[f"{layer}.weight"], source[f"{layer}.bias"])
             for layer in sorted(layers, key=lambda n: n != BGRD_SOURCE)  # conv1_1 first
             if f"{layer}.weight" in source and f"{layer}.bias" in source}
    surgery = imagenet_init_params(trunk, spec, path)
    return {name: surgery[name] for name in (f"{BGRD_LAYER}.weight", f"{BGRD_LAYER}.bias")}


# He scaling assumes unit-variance inputs; ours are BGR 0-255 minus the mean (std ~ 60).
RANDOM_INPUT_SCALE = 64.0


def random_initial_params(spec: FcnSpec, seed: int) -> dict[str, np.ndarray]:
    """He-random trunk with REF's surgery applied (score layers zero): smoke tests only.

    conv1_1 is divided by RANDOM_INPUT_SCALE so activations are O(1) instead of O(60): with the
    summed loss, gradients grow with the activations, and a 60x larger net makes batch-1 momentum
    SGD oscillate at any rate that still moves the biases.
    """
    params = random_params(spec, seed)
    # Every first layer: conv1_1, conv1_1color/conv1_1hha (late fusion), conv1_1_bgrd, conv1.
    sources = {*spec.input_names, *(layer.name for layer in spec.layers
                                    if isinstance(layer, Concat))}
    for layer in spec.layers:
        if isinstance(layer, Conv) and layer.bottom in sources:
            params[f"{layer.name}.weight"] /= np.float32(RANDOM_INPUT_SCALE)
    params.update(new_layer_params(spec))
    return params


def load_init(spec: FcnSpec, init: str, seed: int, recipe: Recipe = HEAVY
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Starting parameters from `--init` and a description of them for the record.

    `init` is an archive path (the staged source, a VGG16 trunk or an "init" archive written by
    `convert`, or the variant itself to continue fine-tuning) or "random" (smoke tests only).
    """
    if init == RANDOM_INIT:
        return random_initial_params(spec, seed), {"init": RANDOM_INIT, "init_kind": "random",
                                                   "init_seed": seed}
    if spec.variant in LATE_FUSION_SOURCES and "," in init:
        return _late_fusion_init(spec, init.split(","))
    path = Path(init)
    if not path.is_file():
        raise WeightsError(path, "init archive not found; create one with `python cli.py "
                           "convert` (VGG16 for fcn32s/fcn8s-atonce) or pass the previous "
                           "stage's snapshot")
    kind = detect_variant(path)
    expected = INIT_SOURCE[spec.variant]
    if kind not in (expected, spec.variant):
        raise WeightsError(path, f"is a {kind} archive; {spec.variant} training starts from a "
                           f"{expected} archive (staged: 32s <- vgg16, 16s <- 32s, 8s <- 16s, "
                           "at-once <- vgg16, AlexNet <- alexnet; docs/training_recipes.md) or "
                           f"from {spec.variant} weights to continue training")
    metadata: Mapping[str, str] = {}
    if kind in TRUNKS:
        # A bare trunk is not an FCN archive, so load_archive (strict against a spec) cannot
        # read it; the required-tensor check in initial_params is the strict part here.
        try:
            source = dict(safetensors_load(path.read_bytes()))
        except (SafetensorError, OSError) as error:
            raise WeightsError(path, f"not a readable safetensors file ({error})") from None
    else:
        archived = spec_from_archive(path)
        if archived.width_divisor != spec.width_divisor:
            raise UsageError(f"{path}: a narrow network (channels / {archived.width_divisor}); "
                             f"train it with --width-divisor {archived.width_divisor}"
                             if archived.width_divisor > 1 else
                             f"{path}: a full-width network; train it without --width-divisor")
        source, metadata = load_archive(path, archived)
    params, unused = initial_params(spec, source, kind, path, recipe.learned_upsampling)
    return params, {"init": str(path), "init_kind": kind,
                    "init_archive_kind": metadata.get("kind"),
                    "init_origin": metadata.get("origin"), "init_unused_tensors": unused}


# ----------------------------------------------------------------------------------------------
# Run configuration and the backend interface.


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


# ----------------------------------------------------------------------------------------------
# Snapshots: the neutral weight archive + the solver state beside it.

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


def id_lists_fingerprint(train_ids: Sequence[str], val_ids: Sequence[str]) -> str:
    """Hash of the ordered id lists (not file contents): the sampler's order depends on them,
    so resume checks it. Unlike runner.data_fingerprint, which hashes the label files."""
    digest = hashlib.sha256()
    for name, ids in (("train", train_ids), ("val", val_ids)):
        digest.update(f"{name}:{len(ids)}\n".encode())
        digest.update("\n".join(ids).encode())
    return digest.hexdigest()


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


@dataclass
class ResumeState:
    iteration: int
    params: dict[str, np.ndarray]
    momentum: dict[str, np.ndarray]
    sampler_state: dict[str, Any]
    record: dict[str, Any]
    paths: SnapshotPaths


# Settings that must not change when resuming, or the continuation would not be the same run.
_RESUME_INVARIANTS = ("variant", "base_lr", "seed", "num_classes", "width_divisor")


def load_resume_state(out_dir: Path, config: TrainConfig, spec: FcnSpec,
                      fingerprint: str, world_size: int) -> ResumeState:
    """The newest complete snapshot in `out_dir`, verified against this run's settings."""
    snapshots = list_snapshots(out_dir, config.variant)
    if not snapshots:
        raise FcnBenchError(f"{out_dir / SNAPSHOT_DIR}: no complete {config.variant} snapshot "
                            f"to resume from; start without --resume")
    iteration, paths = snapshots[-1]
    record = read_solver_state(paths.state)
    saved = record["config"]
    changed = [f"{key} {saved[key]!r} -> {getattr(config, key)!r}" for key in _RESUME_INVARIANTS
               if saved[key] != getattr(config, key)]
    if saved["recipe"] != config.recipe.to_json():
        changed.append(f"recipe {saved['recipe']['name']} -> {config.recipe.name} (or its "
                       "settings)")
    if record.get("data_fingerprint") != fingerprint:
        changed.append("the training/validation id lists")
    if record.get("world_size", 1) != world_size:
        changed.append(f"processes {record.get('world_size', 1)} -> {world_size}")
    if changed:
        raise FcnBenchError(f"{paths.state}: cannot resume exactly, the run changed: "
                            f"{'; '.join(changed)}; resume with the original settings or start "
                            f"a new --out")
    for path, key in ((paths.weights, "weights_sha256"), (paths.solver, "solver_sha256")):
        if not path.is_file() or sha256_file(path) != record[key]:
            raise WeightsError(path, "missing or does not match the hash in its solver state; "
                               "delete this snapshot to resume from the previous one")
    params, _ = load_archive(paths.weights, spec)
    try:
        momentum = dict(safetensors_load(paths.solver.read_bytes()))
    except (SafetensorError, OSError) as error:
        raise WeightsError(paths.solver, f"unreadable momentum buffers ({error})") from None
    check_momentum(momentum, solver_plan(spec, config.recipe, config.base_lr), spec, paths.solver)
    return ResumeState(iteration, dict(params), momentum, record["sampler"], record, paths)


# What load_resume_state reads from a solver state: key -> its JSON type.
_STATE_FIELDS = {"config": dict, "sampler": dict, "weights_sha256": str, "solver_sha256": str}
_JSON_NAMES = {dict: "object", str: "string", list: "array"}
_STATE_CONFIG_FIELDS = (*_RESUME_INVARIANTS, "recipe")


def read_solver_state(path: Path) -> dict[str, Any]:
    """A snapshot's `.solver.json`, parsed with bounded depth and its shape checked, so that a
    damaged or hand-edited file (a JSON array, a missing key) is one line naming it."""
    from bench.core.json_text import loads_bounded  # imported here to keep this edit local

    try:
        record = loads_bounded(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, ValueError) as error:  # ValueError: too deep
        raise FcnBenchError(f"{path}: unreadable solver state ({error})") from None
    problems = [f"{key} is not a JSON {_JSON_NAMES[kind]}" for key, kind in _STATE_FIELDS.items()
                if not isinstance(record, dict) or not isinstance(record.get(key), kind)]
    if isinstance(record, dict) and isinstance(record.get("config"), dict):
        config = record["config"]
        problems += [f"config has no {key}" for key in _STATE_CONFIG_FIELDS if key not in config]
        if not isinstance(config.get("recipe"), dict) or "name" not in config["recipe"]:
            problems.append("config.recipe is not a recipe object")
    if not isinstance(record, dict):
        problems = [f"a JSON {_JSON_NAMES.get(type(record), 'value')}, expected an object"]
    if problems:
        raise FcnBenchError(f"{path}: not a solver state ({'; '.join(problems)}); delete this "
                            "snapshot to resume from the previous one")
    return record


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


# ----------------------------------------------------------------------------------------------
# Log, curves and the run record.

LOG_NAME = "train_log.csv"
CURVES_NAME = "curves.png"
RECORD_NAME = "train_record.json"
LOG_COLUMNS = ("iteration", "phase", "images", "loss", "pixel_accuracy", "mean_accuracy",
               "mean_iou", "fw_iou", "lr", "elapsed_s", "images_per_s")


class TrainLog:
    """CSV of training loss (every `log_every` updates) and validation metrics.

    Each row is one `write` on an O_APPEND file, so a kill leaves whole rows; on resume, rows after
    the snapshot's iteration are dropped (they will be produced again).
    """

    def __init__(self, path: Path, resume_iteration: int | None):
        self.path = path
        if resume_iteration is None or not path.is_file():
            atomic_write_text(path, ",".join(LOG_COLUMNS) + "\n")
        else:
            rows = [row for row in read_log(path) if int(row["iteration"]) <= resume_iteration]
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, LOG_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(path, buffer.getvalue())

    def append(self, **values: Any) -> None:
        row = [_format_cell(values.get(column)) for column in LOG_COLUMNS]
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(",".join(row) + "\n")


def _format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_curves(log_path: Path, png_path: Path, title: str) -> None:
    """Training loss and validation metrics against iteration, one PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = read_log(log_path)
    train = [(int(r["iteration"]), float(r["loss"])) for r in rows
             if r["phase"] == "train" and r["loss"]]
    val = [r for r in rows if r["phase"] == "val"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, metric_axes = figure.subplots(1, 2)
    if train:
        loss_axes.plot(*zip(*train, strict=True), label="train (window mean)")
    val_loss = [(int(r["iteration"]), float(r["loss"])) for r in val if r["loss"]]
    if val_loss:
        loss_axes.plot(*zip(*val_loss, strict=True), "o-", label="val (mean per image)")
    loss_axes.set(xlabel="iteration", ylabel="loss per image", title="loss")
    loss_axes.legend()
    for key in ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou"):
        points = [(int(r["iteration"]), float(r[key])) for r in val if r[key]]
        if points:
            metric_axes.plot(*zip(*points, strict=True), "o-", label=key)
    metric_axes.set(xlabel="iteration", ylabel="fraction", title="validation", ylim=(0, 1))
    metric_axes.legend()
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(png_path, buffer.getvalue())


# ----------------------------------------------------------------------------------------------
# Stopping cleanly.


class TrainingDiverged(FcnBenchError):
    """The loss or the weights became NaN/inf."""


class TrainingInterrupted(FcnBenchError):
    exit_code = 130


class StopRequest:
    """SIGINT/SIGTERM set a flag that the loop reads between updates (never mid-update).

    A second signal more than a second later aborts at once (KeyboardInterrupt; the last snapshot
    is then the resume point). Repeats within that second are ignored: a Ctrl-C under torchrun
    reaches each worker twice, once from the terminal and once forwarded by torchrun. Signal
    handlers can only be installed from the main thread; elsewhere this is a no-op.
    """

    REPEAT_GRACE_S = 1.0

    def __init__(self) -> None:
        self.requested = False
        self._first_signal = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread
            self._previous.clear()
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.requested:
            if now - self._first_signal > self.REPEAT_GRACE_S:
                raise KeyboardInterrupt
            return
        self.requested, self._first_signal = True, now
        print(f"\n{signal.Signals(signum).name}: stopping after this update and writing a "
              "snapshot (press Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# ----------------------------------------------------------------------------------------------
# The loop.


def _prefetch_stream(load: Callable[[str], Any], keys: Iterator[str],
                     depth: int = 4) -> Iterator[Any]:
    """`load(key)` for an endless key stream, decoded `depth` ahead in threads, in order.

    bench.data.voc.prefetch takes a finite id list; the training stream is an endless sampled
    sequence. Closing the generator cancels what is queued and waits for the running decodes.
    """
    pending: deque = deque()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fcn-train-load")
    try:
        while True:
            while len(pending) < depth:
                pending.append(pool.submit(load, next(keys)))
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _sampled_ids(sampler: Sampler, ids: Sequence[str]) -> Iterator[str]:
    while True:
        yield ids[sampler.next()]


def evaluate(trainer: Trainer, dataset: Any, ids: Sequence[str],
             num_classes: int) -> dict[str, Any]:
    """Score `ids` (this process's shard) and sum the confusion matrices over all processes."""
    shard = SimpleNamespace(ids=list(ids)[trainer.rank::trainer.world_size])
    matrix = ConfusionMatrix(num_classes)
    loss_sum = 0.0
    for sample in prefetch(shard, load=dataset.load):
        labels, loss = trainer.predict(sample.image, sample.label)
        # Several heads (SIFT Flow): the loss covers all; the matrix scores the first head.
        truth = (next(iter(sample.label.values())) if isinstance(sample.label, Mapping)
                 else sample.label)
        matrix.update(truth, labels)
        loss_sum += loss
    # One all_reduce for the matrix and the loss; float64 holds pixel counts exactly (< 2**53).
    local = np.concatenate([matrix.matrix.ravel().astype(np.float64), [loss_sum]])
    total = trainer.all_reduce_sum(local)
    summed = ConfusionMatrix.from_matrix(np.rint(total[:-1]).reshape(num_classes, num_classes))
    return {"images": len(ids), "loss": float(total[-1]) / max(1, len(ids)), "confusion": summed}


@dataclass
class _Progress:
    """Running numbers for the bar, the log window and the final record."""

    window_loss: float = 0.0
    window_updates: int = 0
    window_images: int = 0
    window_seconds: float = 0.0  # training time only (validation and snapshots excluded)
    train_seconds: float = 0.0
    smoothed_loss: float | None = None
    best: dict[str, Any] | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)


def _input_size(image: Any) -> tuple[int, int]:
    """(H, W) of a training input: one array, or {input name: array} for multi-input models."""
    array = next(iter(image.values())) if isinstance(image, Mapping) else image
    return int(array.shape[-2]), int(array.shape[-1])


def run_training(trainer: Trainer, config: TrainConfig, spec: FcnSpec, train_set: Any,
                 val_set: Any, val_ids: Sequence[str], out_dir: Path, *, fingerprint: str,
                 resume: ResumeState | None = None, progress: bool | None = None,
                 scalar_writer: ScalarWriter | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train up to `config.iters` updates, evaluating and snapshotting on schedule.

    Only rank 0 writes files. Raises TrainingDiverged on NaN/inf (nothing written for the bad
    state) and TrainingInterrupted after snapshotting when SIGINT/SIGTERM arrives.
    """
    from tqdm import tqdm

    recipe = config.recipe
    writer = trainer.rank == 0
    start = resume.iteration if resume else 0
    if start > config.iters:
        raise UsageError(f"--iters {config.iters} is below the resumed snapshot's iteration "
                         f"{start}")
    sampler = Sampler(len(train_set.ids), config.seed, trainer.rank)
    sampler.fast_forward(start * recipe.iter_size)
    if resume and trainer.rank == 0 and not sampler.matches(resume.sampler_state):
        raise FcnBenchError(f"{resume.paths.state}: the replayed sampler does not match the saved "
                            "generator state (different Python random implementation?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = TrainLog(out_dir / LOG_NAME, start if resume else None) if writer else None
    extra_state = {"data_fingerprint": fingerprint, "world_size": trainer.world_size}
    snapshots = [paths for _, paths in list_snapshots(out_dir, config.variant)] if writer else []
    last_snapshot = resume.paths if resume else None
    state = _Progress()
    if resume:
        state.best = resume.record.get("best")
    run_start = time.perf_counter()
    images_seen = 0

    def snapshot(iteration: int) -> None:
        nonlocal last_snapshot
        if not trainer.params_finite():
            raise TrainingDiverged(f"weights became NaN/inf by iteration {iteration} (base_lr "
                                   f"{config.base_lr:g}); nothing written; last good snapshot: "
                                   f"{last_snapshot.weights if last_snapshot else 'none'}")
        if not writer:
            return
        params, momentum = trainer.params(), trainer.momentum()
        paths = save_snapshot(out_dir, config, iteration, params, momentum, sampler,
                              {**extra_state, "best": state.best})
        last_snapshot = paths
        if paths not in snapshots:
            snapshots.append(paths)
        _prune(snapshots, config.keep_snapshots,
               SnapshotPaths.at(out_dir, config.variant, state.best["iteration"])
               if state.best else None)

    def validate(iteration: int) -> None:
        if not val_ids:
            return
        result = evaluate(trainer, val_set, val_ids, config.num_classes)
        summary = result["confusion"].summary()
        metrics = {key: summary[key] for key in ("pixel_accuracy", "mean_accuracy", "mean_iou",
                                                   "fw_iou")}
        entry = {"iteration": iteration, "loss": result["loss"], **metrics}
        state.evaluations.append(entry)
        if state.best is None or _score(entry) > _score(state.best):
            state.best = entry
        if not writer:
            return
        log.append(iteration=iteration, phase="val", images=result["images"],
                   loss=result["loss"], lr=config.base_lr,
                   elapsed_s=round(time.perf_counter() - run_start, 3), **metrics)
        write_json(out_dir / "eval" / f"iter_{iteration:07d}.json", evaluation_record(
            config.val_split, result["confusion"], result["images"], source="train",
            iteration=iteration, variant=config.variant, backend=config.backend,
            loss_per_image=result["loss"], world_size=trainer.world_size))
        if scalar_writer:
            for key, value in entry.items():
                if key != "iteration" and value is not None:
                    scalar_writer(f"val/{key}", float(value), iteration)
        tqdm.write(f"iteration {iteration}: {config.val_split} mean IU "
                   f"{_percent(summary['mean_iou'])}, pixel acc "
                   f"{_percent(summary['pixel_accuracy'])}, loss/image {result['loss']:.4g}",
                   file=sys.stderr)
        if config.plots:
            write_curves(out_dir / LOG_NAME, out_dir / CURVES_NAME,
                         f"{config.variant} {config.recipe.name} ({config.backend})")

    # tqdm: disable=None means "only on a terminal"; progress=True/False forces it.
    disable = True if not writer else (None if progress is None else not progress)
    bar = tqdm(total=config.iters, initial=start, unit="it", dynamic_ncols=True,
               disable=disable, file=sys.stderr,
               desc=f"train {config.variant}")
    fits = ImageMemoryCheck(spec, str(getattr(trainer, "device", "cpu")), training=True)
    lookahead = sampler.clone()
    stream = _prefetch_stream(train_set.load, _sampled_ids(lookahead, train_set.ids))
    iteration = start
    try:
        with StopRequest() as stop:
            if start == config.iters and not resume:
                validate(iteration)  # --iters 0: just score the initial weights
            while iteration < config.iters:
                step_start = time.perf_counter()
                loss = 0.0
                for image_index in range(recipe.iter_size):
                    sample = next(stream)
                    expected_id = train_set.ids[sampler.next()]
                    assert sample.id == expected_id, "prefetch order diverged from the sampler"
                    fits(*_input_size(sample.image), sample.id)  # docs/security.md
                    loss += trainer.forward_backward(
                        sample.image, sample.label,
                        dropout_seed(config.seed, trainer.rank, iteration, image_index),
                        last_of_batch=image_index == recipe.iter_size - 1)
                # One collective per update: the loss averaged over processes (NaN anywhere
                # makes it NaN everywhere) and whether any process was asked to stop.
                loss, stop_flag = trainer.all_reduce_sum(np.array(
                    [loss / recipe.iter_size, 1.0 if stop.requested else 0.0]))
                loss = float(loss) / trainer.world_size
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss} at iteration {iteration + 1} (base_lr "
                        f"{config.base_lr:g} is too large for the {recipe.loss_normalization} "
                        f"loss, or the init is broken); stopped before applying it; last good "
                        f"snapshot: {last_snapshot.weights if last_snapshot else 'none'}")
                trainer.update()
                step_seconds = time.perf_counter() - step_start
                state.window_seconds += step_seconds
                state.train_seconds += step_seconds
                iteration += 1
                images_seen += recipe.iter_size * trainer.world_size
                state.window_loss += loss
                state.window_updates += 1
                state.window_images += recipe.iter_size * trainer.world_size
                state.smoothed_loss = loss if state.smoothed_loss is None else (
                    0.9 * state.smoothed_loss + 0.1 * loss)
                bar.update(1)
                bar.set_postfix(loss=f"{state.smoothed_loss:.4g}", refresh=False)
                if iteration % config.log_every == 0 or iteration == config.iters:
                    _log_window(state, log, iteration, config, run_start, scalar_writer)
                if iteration % config.eval_every == 0 or iteration == config.iters:
                    validate(iteration)
                interrupted = bool(stop_flag) and iteration < config.iters
                if (iteration % config.snapshot_every == 0 or iteration == config.iters
                        or interrupted):
                    snapshot(iteration)
                if interrupted:
                    raise TrainingInterrupted(
                        f"training interrupted at iteration {iteration}; snapshot "
                        f"{last_snapshot.weights if last_snapshot else '(rank 0)'}; continue with "
                        f"the same command plus --resume")
    finally:
        bar.close()
        stream.close()
    elapsed = time.perf_counter() - run_start
    record = make_record(
        "train", config=config.to_json(), iterations=iteration, resumed_from=start if resume
        else None, world_size=trainer.world_size, images_seen_this_session=images_seen,
        elapsed_s=elapsed, train_seconds=state.train_seconds,
        # Training throughput (forward, backward, update; validation and snapshots excluded).
        images_per_s=images_seen / state.train_seconds if state.train_seconds > 0 else None,
        evaluations=state.evaluations, best=state.best,
        final_snapshot=str(last_snapshot.weights) if last_snapshot else None,
        data_fingerprint=fingerprint, **(extra or {}))
    if writer:
        write_json(out_dir / RECORD_NAME, record)
        if config.plots:
            write_curves(out_dir / LOG_NAME, out_dir / CURVES_NAME,
                         f"{config.variant} {config.recipe.name} ({config.backend})")
    return record


def _log_window(state: _Progress, log: TrainLog | None, iteration: int, config: TrainConfig,
                run_start: float, scalar_writer: ScalarWriter | None) -> None:
    mean_loss = state.window_loss / max(1, state.window_updates)
    rate = state.window_images / state.window_seconds if state.window_seconds > 0 else None
    if log is not None:
        log.append(iteration=iteration, phase="train", images=state.window_images,
                   loss=mean_loss, lr=config.base_lr,
                   elapsed_s=round(time.perf_counter() - run_start, 3),
                   images_per_s=round(rate, 4) if rate else None)
        if scalar_writer:
            scalar_writer("train/loss", mean_loss, iteration)
    state.window_loss, state.window_updates, state.window_images = 0.0, 0, 0
    state.window_seconds = 0.0


def _prune(snapshots: list[SnapshotPaths], keep: int, best: SnapshotPaths | None) -> None:
    """Keep the newest `keep` snapshots (0 = all) and always the best-scoring one. The newest is
    never removed, so `--resume` (which continues the newest) always has its snapshot."""
    if keep <= 0:
        return
    old, newest = snapshots[:-keep], snapshots[-keep:]
    for paths in old:
        if paths != best:
            paths.remove()
    snapshots[:] = [paths for paths in old if paths == best] + newest


def _score(entry: Mapping[str, Any]) -> float:
    """Mean IU for ranking evaluations; undefined (None/NaN) ranks last."""
    value = entry.get("mean_iou")
    return -1.0 if value is None or math.isnan(value) else float(value)


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}%"
