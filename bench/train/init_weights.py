"""Initial weights of a training run: REF's staged initialisation surgery (transplant by name,
fixed upsampling re-set to bilinear, new score layers zero), early and late fusion, and the
He-random start of smoke tests. docs/training_recipes.md lists each model's init source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as safetensors_load

from bench.core.errors import UsageError, WeightsError
from bench.model.init import fixed_params, imagenet_init_params, new_layer_params, random_params
from bench.model.spec import Concat, Conv, FcnSpec, build_spec
from bench.train.recipes import HEAVY, Recipe
from bench.weights.archive import BACKBONE as VGG16
from bench.weights.archive import detect_variant, open_archive
from bench.weights.detect import ALEXNET as ALEXNET_TRUNK
from bench.weights.detect import BACKBONES

# Staged initialisation (REF): each finer net starts from the next coarser one; FCN-32s and the
# all-at-once FCN-8s start from VGG16 (fc6/fc7 convolutionalized, fc8 dropped).
# docs/training_recipes.md "Initialisation chains".
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
# transplanted into the layers suffixed by that stream's input (conv1_1 -> conv1_1color, ...);
# docs/fidelity.md "Late fusion".
LATE_FUSION_SOURCES = {"nyud-fcn32s-color-hha": (("color", "nyud-fcn32s-color"),
                                                 ("hha", "nyud-fcn32s-hha"))}
# Early fusion: the 4-channel first layer of a colour+depth net and the VGG16 layer it comes from.
BGRD_LAYER, BGRD_SOURCE = "conv1_1_bgrd", "conv1_1"
RANDOM_INIT = "random"


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

    New score layers start at zero (Caffe's default filler; docs/fidelity.md "Heads: FCN-32s,
    FCN-16s, FCN-8s"), fixed upsampling kernels are (re)set to bilinear (REF re-runs interp) and
    at-once scales to their constants; every other tensor, including upsampling the recipe learns
    (cvpr), is copied by name when present. Missing, mis-shaped or non-finite tensors are all
    listed in one WeightsError.
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
        archive = open_archive(path)
        found = archive.spec
        if found.variant != model:
            raise WeightsError(path, f"is a {found.variant} archive; the {suffix} stream of "
                                     f"{spec.variant} starts from {model} weights")
        params = archive.read_tensors(found)
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
    nyud-fcn32s-color-d surgery: conv1_1 on B, G, R, their mean on log-depth; docs/fidelity.md
    "Initialisation from ImageNet")."""
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
        archive = open_archive(path)
        archived = archive.spec
        if archived.width_divisor != spec.width_divisor:
            raise UsageError(f"{path}: a narrow network (channels / {archived.width_divisor}); "
                             f"train it with --width-divisor {archived.width_divisor}"
                             if archived.width_divisor > 1 else
                             f"{path}: a full-width network; train it without --width-divisor")
        source, metadata = archive.read_tensors(archived), archive.metadata
    params, unused = initial_params(spec, source, kind, path, recipe.learned_upsampling)
    return params, {"init": str(path), "init_kind": kind,
                    "init_archive_kind": metadata.get("kind"),
                    "init_origin": metadata.get("origin"), "init_unused_tensors": unused}
