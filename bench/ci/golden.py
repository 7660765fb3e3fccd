"""The golden suite: deterministic FCN outputs on generated data, checked against a baseline.

A seeded VOC-format data set (bench.data.synthetic), seeded random weights (bench.model.init) and
every
variant x backend give label maps, a confusion matrix and metrics that must not move unless the
network's semantics move. The core, `run_golden`, takes a spec factory and a backend factory, so
tests can inject a faulty spec and the command injects the real backends; this module never
imports backends/, torch or tensorflow.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from bench.ci.gates import Tolerances
from bench.ci.golden_zoo import (
    GOLDEN_MODELS,
    ZooSample,
    label_digest,
    make_zoo_samples,
    run_zoo_backend,
    zoo_parity_row,
    zoo_scores,
)
from bench.ci.judge import (
    INCONCLUSIVE,
    MISSING,
    OK,
    REGRESSION,
    VERDICTS,
    Comparison,
    Finding,
    compare_rows,
)
from bench.ci.label_maps import encode_label_maps
from bench.ci.record_rows import Row, rows_from_record
from bench.ci.regression_table import render
from bench.core.errors import UsageError
from bench.core.records import REPO_ROOT, make_record
from bench.data.synthetic import make_voc
from bench.data.voc import VOCDataset, read_id_list, voc_dir
from bench.evaluation.metrics import ConfusionMatrix
from bench.model.init import random_params
from bench.model.spec import (
    VARIANTS,
    Conv,
    Crop,
    Dropout,
    FcnSpec,
    Layer,
    Scale,
    Sum,
    build_spec,
    resolve_model,
)
from bench.perf.latency import describe_error

GOLDEN_BASELINE = REPO_ROOT / "reference_results" / "ci" / "golden.json"
GOLDEN_SPLIT = "trainval"  # every generated image (make_voc puts half in train, half in val)

SpecFactory = Callable[[str, int], FcnSpec]  # (variant, width_divisor) -> spec
BackendFactory = Callable[[str, FcnSpec], Any]  # (backend name, spec) -> backends.base.Backend


@dataclass(frozen=True)
class GoldenConfig:
    """Everything that defines the suite's inputs; a baseline is valid only for its own config.

    Narrow nets (channels / 16) keep 4 variants x 2 backends CPU-fast; geometry (pad 100, ceil
    pooling, crop offsets, skips, upsampling) does not depend on the width, and the full-width
    check runs the real VGG16 channel counts (fc6 as a 7x7x512 conv, 4096-wide fc7) once.
    Heights are odd (make_voc), so ceil-vs-floor pooling changes the geometry.
    """

    data_seed: int = 0
    weights_seed: int = 0
    num_images: int = 8
    min_size: int = 24
    max_size: int = 48
    width_divisor: int = 16
    full_width_variants: tuple[str, ...] = ("fcn8s",)
    full_width_images: int = 2
    # A pixel whose two best scores are closer than this fraction of the image's largest |score|
    # could flip under float noise (torch vs TensorFlow differ by <= 1.5e-6 of it): counted and
    # reported, not gated; it is the evidence behind the 0.1% label budget (docs/ci.md).
    near_tie_fraction: float = 1e-5
    # One released model per family beyond the VOC nets, on its own generated data set
    # (bench.ci.golden_zoo): `zoo_images` images each, same width and seeds.
    zoo_models: tuple[str, ...] = GOLDEN_MODELS
    zoo_images: int = 2

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self),
                "full_width_variants": list(self.full_width_variants),
                "zoo_models": list(self.zoo_models)}


def default_spec_factory(variant: str, width_divisor: int) -> FcnSpec:
    return build_spec(variant, width_divisor=width_divisor)


def golden_params(spec: FcnSpec, seed: int) -> dict[str, np.ndarray]:
    """`random_params`, with every scorer that reads a Scale layer divided by that scale.

    He scaling assumes unit-scale inputs; at-once FCN-8s shrinks pool4 by 0.01 and pool3 by 1e-4
    before scoring them, so with plain random weights its skips would add almost nothing and a
    broken skip (wrong crop, missing sum) would move no label. Training grows those scorers by
    the inverse factor; doing it here makes the golden at-once net as sensitive as FCN-8s while
    still exercising the Scale layers (dropping one changes the scores by 100x or 10^4x).
    """
    params = random_params(spec, seed)
    scales = {layer.name: layer.value for layer in spec.layers if isinstance(layer, Scale)}
    for layer in spec.layers:
        if isinstance(layer, Conv) and layer.bottom in scales:
            key = f"{layer.name}.weight"
            params[key] = (params[key] / np.float32(scales[layer.bottom])).astype(np.float32)
    return params


# ----------------------------------------------------------------------------------------------
# Faults, for proving that the suite notices broken geometry (tests, docs/ci.md)


def _replace_layer(spec: FcnSpec, name: str, kind: type, make: Callable[[Any], Layer]) -> FcnSpec:
    """A copy of `spec` whose layer `name` (which must be a `kind`) is replaced by make(layer)."""
    layer = spec.layer(name)
    if not isinstance(layer, kind):
        raise UsageError(f"{spec.variant}: {name!r} is not a {kind.__name__} layer")
    layers = tuple(make(item) if item.name == name else item for item in spec.layers)
    return dataclasses.replace(spec, layers=layers)


def with_crop_offset(spec: FcnSpec, crop: str, delta: int) -> FcnSpec:
    """A copy of `spec` whose Crop layer `crop` is `delta` pixels off its derived offset."""
    return _replace_layer(spec, crop, Crop,
                          lambda layer: dataclasses.replace(layer, offset=layer.offset + delta))


def without_skip(spec: FcnSpec, fuse: str) -> FcnSpec:
    """A copy of `spec` whose Sum layer `fuse` passes its first input through (skip dropped).

    The blob keeps its name (an identity Dropout at inference), so every later layer and every
    parameter stay in place: only the fusion is gone.
    """
    return _replace_layer(spec, fuse, Sum, lambda layer: Dropout(layer.name, layer.bottoms[0]))


def without_stream(spec: FcnSpec, fuse: str, stream: str) -> FcnSpec:
    """A copy of `spec` whose Sum `fuse` leaves out its input `stream` (a late fusion that lost
    one stream): the others keep their coefficients; one left is passed through unweighted."""
    def drop(layer: Sum) -> Layer:
        if stream not in layer.bottoms:
            raise UsageError(f"{spec.variant}: {fuse!r} does not fuse {stream!r}")
        keep = [i for i, bottom in enumerate(layer.bottoms) if bottom != stream]
        if len(keep) == 1:
            return Dropout(layer.name, layer.bottoms[keep[0]])
        coeffs = None if layer.coeffs is None else tuple(layer.coeffs[i] for i in keep)
        return dataclasses.replace(layer, bottoms=tuple(layer.bottoms[i] for i in keep),
                                   coeffs=coeffs)
    return _replace_layer(spec, fuse, Sum, drop)


def with_conv_pad(spec: FcnSpec, conv: str, delta: int) -> FcnSpec:
    """A copy of `spec` whose Conv `conv` pads `delta` more (crop offsets left as derived before),
    like a port that drops or changes the pad of 100 but keeps the published offsets."""
    return _replace_layer(spec, conv, Conv,
                          lambda layer: dataclasses.replace(layer, pad=layer.pad + delta))


def stream_first_convs(spec: FcnSpec) -> list[Conv]:
    """The first convolution of each input stream: every Conv with no Conv upstream of it
    (conv1_1; conv1_1color and conv1_1hha of a two-stream net; conv1_1_bgrd after the early
    fusion Concat; AlexNet's conv1). These carry the pad of 100 (docs/ci.md)."""
    behind_conv: dict[str, bool] = {}  # blob -> whether some Conv lies upstream of it
    firsts = []
    for layer in spec.layers:
        bottoms = getattr(layer, "bottoms", None) or (
            (layer.bottom,) if getattr(layer, "bottom", None) else ())
        upstream = any(behind_conv.get(bottom, False) for bottom in bottoms)
        if isinstance(layer, Conv) and not upstream:
            firsts.append(layer)
        behind_conv[layer.name] = upstream or isinstance(layer, Conv)
    return firsts


Fault = tuple[str, Callable[[FcnSpec], FcnSpec]]


def geometry_faults(spec: FcnSpec) -> list[Fault]:
    """Every single geometry slip the suite must notice, derived from the spec: each Crop one
    pixel off either way, each skip fusion dropped (a weighted late fusion: each stream
    dropped in turn), and the first convolution of each stream with its pad one short."""
    faults: list[Fault] = []
    for layer in spec.layers:
        if isinstance(layer, Crop):
            for delta in (-1, 1):
                faults.append((f"{layer.name} offset {layer.offset}{delta:+d}",
                               functools.partial(with_crop_offset, crop=layer.name,
                                                 delta=delta)))
        elif isinstance(layer, Sum) and layer.coeffs is not None:
            for stream in layer.bottoms:
                faults.append((f"{layer.name} stream {stream} dropped",
                               functools.partial(without_stream, fuse=layer.name,
                                                 stream=stream)))
        elif isinstance(layer, Sum):
            faults.append((f"{layer.name} skip dropped",
                           functools.partial(without_skip, fuse=layer.name)))
    for conv in stream_first_convs(spec):
        faults.append((f"{conv.name} pad {conv.pad}-1",
                       functools.partial(with_conv_pad, conv=conv.name, delta=-1)))
    return faults


def faulty_factory(variant: str, fault: Callable[[FcnSpec], FcnSpec],
                   base: SpecFactory = default_spec_factory) -> SpecFactory:
    """A spec factory that applies `fault` to one variant (every width) and leaves the rest."""
    def factory(name: str, width_divisor: int) -> FcnSpec:
        spec = base(name, width_divisor)
        return fault(spec) if name == variant else spec
    return factory


# ----------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class GoldenImage:
    id: str
    image: np.ndarray  # (3, H, W) float32, preprocessed (BGR, mean subtracted)
    label: np.ndarray  # (H, W) uint8, 255 void


def make_golden_images(workdir: str | Path, config: GoldenConfig) -> list[GoldenImage]:
    """Write the seeded VOC data set under `workdir` and read it back through bench.data.voc.

    Going through the files (JPEG decode, palette PNG) is deliberate: the suite checks the data
    path evaluate uses, and `input_digest` notices if a decoder upgrade changes the pixels.
    """
    make_voc(workdir, num_images=config.num_images, seed=config.data_seed,
             min_size=config.min_size, max_size=config.max_size)
    root = voc_dir(workdir)
    ids = read_id_list(root / "ImageSets" / "Segmentation" / f"{GOLDEN_SPLIT}.txt")
    dataset = VOCDataset(root, ids, name=GOLDEN_SPLIT)
    return [GoldenImage(s.id, s.image, s.label) for s in (dataset.load(i) for i in ids)]


def input_digest(images: Sequence[GoldenImage]) -> str:
    """sha256 over ids, preprocessed float32 images and labels, in id order."""
    digest = hashlib.sha256()
    for item in images:
        digest.update(item.id.encode())
        digest.update(np.ascontiguousarray(item.image, np.float32).tobytes())
        digest.update(np.ascontiguousarray(item.label, np.uint8).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Running the suite


@dataclass(frozen=True)
class Case:
    """One network to check: a variant at a width on the first `num_images` images."""

    variant: str
    width_divisor: int
    num_images: int


def plan_cases(config: GoldenConfig, variants: Sequence[str], full_width: bool) -> list[Case]:
    cases = [Case(v, config.width_divisor, config.num_images) for v in variants]
    if full_width:
        cases += [Case(v, 1, min(config.full_width_images, config.num_images))
                  for v in config.full_width_variants if v in variants]
    return cases


def _case_identity(case: Case, backend: str) -> dict[str, Any]:
    return {"variant": case.variant, "backend": backend, "device": "cpu", "precision": "fp32",
            "width_divisor": case.width_divisor, "split": GOLDEN_SPLIT}


def _run_backend(case: Case, spec: FcnSpec, params: dict[str, np.ndarray], backend_name: str,
                 backend_factory: BackendFactory, images: Sequence[GoldenImage],
                 config: GoldenConfig) -> tuple[dict[str, Any], list[np.ndarray] | None]:
    """One (case, backend) row, and its per-image scores for the parity summary."""
    row = _case_identity(case, backend_name)
    try:
        backend = backend_factory(backend_name, spec)
        backend.load_params(params)
        scores = [backend.predict(item.image[np.newaxis])[0] for item in images]  # (C, H, W)
    except Exception as error:  # a crash is this row's verdict; the other rows still run
        return {**row, "status": "failed", "error": describe_error(error)}, None
    labels = [s.argmax(axis=0).astype(np.uint8) for s in scores]
    confusion = ConfusionMatrix(spec.num_classes)
    near_ties = 0
    for item, score, label in zip(images, scores, labels, strict=True):
        confusion.update(item.label, label)
        top2 = np.partition(score, -2, axis=0)[-2:]  # (2, H, W): second best, best
        near_ties += int(np.count_nonzero(top2[1] - top2[0]
                                          < config.near_tie_fraction * np.abs(score).max()))
    summary = confusion.summary()
    return {
        **row, "status": "ok", "error": None,
        "num_images": len(images),
        "num_pixels": int(sum(label.size for label in labels)),
        "input_digest": input_digest(images),
        "label_digest": label_digest(labels),
        "near_tie_pixels": near_ties,
        "metrics": {k: v for k, v in summary.items() if k != "num_pixels"},
        "confusion_matrix": confusion.matrix.tolist(),
        "label_maps": encode_label_maps(labels),
    }, scores


def _parity_row(case: Case, left: str, right: str, scores_left: Sequence[np.ndarray],
                scores_right: Sequence[np.ndarray]) -> dict[str, Any]:
    """Backend agreement on the same inputs and weights: one head per image (zoo_parity_row)."""
    # "backend" sits second as in every row; zoo_parity_row fills in "left vs right".
    identity = {"variant": case.variant, "backend": None, "device": "cpu", "precision": "fp32",
                "width_divisor": case.width_divisor, "split": GOLDEN_SPLIT}
    return zoo_parity_row(identity, left, right, [[a] for a in scores_left],
                          [[b] for b in scores_right])


def run_golden(spec_factory: SpecFactory, backend_factory: BackendFactory,
               backends: Sequence[str], *, variants: Sequence[str] = VARIANTS,
               config: GoldenConfig | None = None, full_width: bool = True,
               images: Sequence[GoldenImage] | None = None,
               progress: Callable[[str], None] | None = None,
               models: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every case on every backend; returns a "golden" record (see docs/records.md).

    `spec_factory(variant, width_divisor)` builds each network (inject a faulty spec here);
    `backend_factory(name, spec)` returns a fresh backend. Each case's parameters are derived
    from its own spec, so a faulty spec gets exactly the weights of the correct one. `images`
    (from make_golden_images with the same config) skips regenerating the data. `models`
    (default: the config's `zoo_models`) are the other families' cases (bench.ci.golden_zoo).
    """
    config = config or GoldenConfig()
    models = [resolve_model(m).key for m in (config.zoo_models if models is None else models)]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise UsageError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    rows: list[dict[str, Any]] = []
    if images is None:
        with tempfile.TemporaryDirectory(prefix="fcn-golden-") as workdir:
            images = make_golden_images(workdir, config)
    for case in plan_cases(config, variants, full_width):
        spec = spec_factory(case.variant, case.width_divisor)
        params = golden_params(spec, config.weights_seed)
        case_images = images[:case.num_images]
        scores: dict[str, list[np.ndarray]] = {}
        for name in backends:
            if progress:
                progress(f"{case.variant} width/{case.width_divisor} {name}")
            row, case_scores = _run_backend(case, spec, params, name, backend_factory,
                                            case_images, config)
            rows.append(row)
            if case_scores is not None:
                scores[name] = case_scores
        ran = [name for name in backends if name in scores]
        rows += [_parity_row(case, ran[0], other, scores[ran[0]], scores[other])
                 for other in ran[1:]]
    for model in models:
        rows += _zoo_rows(model, spec_factory, backend_factory, backends, config, images,
                          progress)
    return make_record("golden", suite={
        **config.as_dict(), "split": GOLDEN_SPLIT, "variants": list(variants),
        "models": models,
        "backends": list(backends), "full_width": full_width,
        "ids": [item.id for item in images],
        "image_sizes": [list(item.label.shape) for item in images],
        "weights": "bench.ci.golden.golden_params (bench.model.init.random_params, scorers "
                   "after a Scale divided by its value)",
    }, rows=rows)


def _zoo_rows(model: str, spec_factory: SpecFactory, backend_factory: BackendFactory,
              backends: Sequence[str], config: GoldenConfig, voc_images: Sequence[GoldenImage],
              progress: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """Every backend's row and the parity rows of one released model on its own data."""
    with tempfile.TemporaryDirectory(prefix="fcn-golden-zoo-") as workdir:
        split, samples, dataset = make_zoo_samples(
            model, workdir, seed=config.data_seed, num_images=config.zoo_images,
            voc_samples=voc_images, voc_split=GOLDEN_SPLIT)
    spec = spec_factory(model, config.width_divisor)
    params = golden_params(spec, config.weights_seed)
    identity = {"variant": model, "device": "cpu", "precision": "fp32",
                "width_divisor": config.width_divisor, "split": split}
    rows, scores = [], {}
    for name in backends:
        if progress:
            progress(f"{model} width/{config.width_divisor} {name}")
        row, model_scores = run_zoo_backend({**identity, "backend": name}, spec, params, name,
                                            backend_factory, samples, dataset,
                                            config.near_tie_fraction)
        rows.append(row)
        if model_scores is not None:
            scores[name] = model_scores
    ran = [name for name in backends if name in scores]
    return rows + [zoo_parity_row(identity, ran[0], other, scores[ran[0]], scores[other])
                   for other in ran[1:]]


# ----------------------------------------------------------------------------------------------
# Checking against the baseline

# Suite settings that must equal the baseline's for the comparison to mean anything.
_CONFIG_KEYS = tuple(field.name for field in dataclasses.fields(GoldenConfig))


def config_mismatch(current: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """Suite settings that differ between two golden records ("key: baseline -> current")."""
    cur, base = current.get("suite") or {}, baseline.get("suite") or {}
    return [f"{key}: {base.get(key)!r} -> {cur.get(key)!r}" for key in _CONFIG_KEYS
            if base.get(key) != cur.get(key)]


def _in_scope(row: Row, suite: dict[str, Any]) -> bool:
    """Whether the current run attempted this baseline row (selected variant and backends)."""
    identity = dict(row.identity)
    if identity.get("variant") not in (*suite.get("variants", ()), *suite.get("models", ())):
        return False
    if identity.get("width_divisor") == "1" and not suite.get("full_width", True):
        return False
    backends = set(suite.get("backends", ()))
    return all(part in backends for part in identity.get("backend", "").split(" vs "))


def check_baseline_config(baseline: dict[str, Any], baseline_name: str,
                          config: GoldenConfig | None = None) -> None:
    """Refuse, before the suite runs (minutes), a baseline made with other suite settings: the
    check after the run found out only once all the work was done."""
    planned = {"suite": (config or GoldenConfig()).as_dict()}
    mismatch = config_mismatch(planned, baseline)
    if mismatch:
        raise UsageError(f"the golden baseline {baseline_name} was made with other suite "
                         f"settings ({'; '.join(mismatch)}); run `golden --update` to rebuild it")


def check_golden(current: dict[str, Any], baseline: dict[str, Any], tolerances: Tolerances,
                 *, baseline_name: str = "baseline") -> Comparison:
    """Compare a golden record with the baseline, limited to what the current run attempted."""
    mismatch = config_mismatch(current, baseline)
    if mismatch:
        raise UsageError(f"the golden baseline {baseline_name} was made with other suite "
                         f"settings ({'; '.join(mismatch)}); run `golden --update` to rebuild it")
    suite = current["suite"]
    base_rows = rows_from_record(baseline, Path(baseline_name))
    in_scope = [row for row in base_rows if _in_scope(row, suite)]
    cur_rows = rows_from_record(current, Path("current run"))
    comparison = compare_rows(in_scope, cur_rows, tolerances, baseline_name=baseline_name,
                              current_name="this run")
    skipped = len(base_rows) - len(in_scope)
    if skipped:
        comparison.notes.append(f"{skipped} baseline rows not checked (backend or variant not "
                                f"selected or not installed)")
    return comparison


# ----------------------------------------------------------------------------------------------
# Tables


def _worst(verdicts: Iterable[str]) -> str:
    present = set(verdicts)
    return next((v for v in VERDICTS if v in present), OK)


def _width_label(width_divisor: str | None) -> str:
    return "full" if width_divisor in (None, "1") else f"1/{width_divisor}"


def render_golden(comparison: Comparison, current: dict[str, Any], fmt: str = "plain", *,
                  elapsed_s: float | None = None) -> str:
    """Three parts: one line per network, the backend parity summary, then the failing checks.

    Per network: current mean IU and pixel accuracy, confusion-matrix pixels moved and label
    pixels changed against the baseline, near-tie pixels, label digest, worst verdict.
    """
    if fmt not in ("github", "plain"):
        raise UsageError(f"unknown format {fmt!r}; choose from github, plain")
    tablefmt = "github" if fmt == "github" else "simple"
    by_identity: dict[tuple, list[Finding]] = {}
    for finding in comparison.findings:
        by_identity.setdefault(finding.identity, []).append(finding)
    rows = rows_from_record(current, Path("current run"))
    known = {row.identity for row in rows}
    missing = [key for key in by_identity if key not in known]

    def delta_of(key: tuple, metric: str) -> str:
        found = [f for f in by_identity.get(key, []) if f.metric == metric]
        return "" if not found or found[0].delta is None else str(found[0].delta)

    def verdict_of(key: tuple) -> str:
        verdict = _worst(f.verdict for f in by_identity.get(key, []))
        return f"**{verdict}**" if fmt == "github" and verdict in (REGRESSION, MISSING) else verdict

    networks, parity = [], []
    for row in rows:
        identity = dict(row.identity)
        width = _width_label(identity.get("width_divisor"))
        if " vs " in identity.get("backend", ""):
            mismatch = row.metrics.get("label_mismatch_px")
            pixels = row.metrics.get("num_pixels")
            parity.append([identity["variant"], width, identity["backend"],
                           f"{mismatch} / {pixels}", _sci(row.metrics.get("score_max_rel_diff")),
                           verdict_of(row.identity)])
            continue
        if row.metrics.get("status") != "ok":
            error = row.error or "?"
            short = error if len(error) <= 60 else error[:57] + "..."  # full text below
            networks.append([identity["variant"], width, identity["backend"], "", "", "", "", "",
                             f"failed: {short}", verdict_of(row.identity)])
            continue
        digest_changed = any(f.metric == "label_digest" and f.note == "changed"
                             for f in by_identity.get(row.identity, []))
        digest = str(row.metrics.get("label_digest", ""))[:12]
        networks.append([
            identity["variant"], width, identity["backend"],
            f"{100 * row.metrics['mean_iou']:.2f}", f"{100 * row.metrics['pixel_accuracy']:.2f}",
            delta_of(row.identity, "confusion_matrix"), delta_of(row.identity, "label_maps"),
            str(row.metrics.get("near_tie_pixels", "")),
            f"{digest} ({'changed' if digest_changed else 'same'})", verdict_of(row.identity)])
    for key in missing:
        identity = dict(key)
        networks.append([identity.get("variant", ""), _width_label(identity.get("width_divisor")),
                         identity.get("backend", ""), "", "", "", "", "", "not run",
                         verdict_of(key)])

    heading = "### " if fmt == "github" else ""
    lines = [f"{heading}Golden suite: outputs against {comparison.baseline}", ""]
    lines.append(tabulate(networks, headers=[
        "variant", "width", "backend", "mean IU %", "pixel acc. %", "CM px moved",
        "label px changed", "near ties", "label digest", "verdict"], tablefmt=tablefmt,
        disable_numparse=True))
    lines += ["", f"{heading}Backend parity (same inputs and weights, this run)", ""]
    lines.append(tabulate(parity, headers=["variant", "width", "backends", "labels differing",
                                           "max rel. score diff", "verdict"],
                          tablefmt=tablefmt, disable_numparse=True)
                 if parity else "(fewer than two backends ran: no parity to report)")
    problems = [f for f in comparison.findings if f.fails or f.verdict == INCONCLUSIVE]
    if problems:
        lines += ["", f"{heading}Failing checks", ""]
        lines.append(render(Comparison(problems, comparison.baseline, comparison.current), fmt,
                            summary=False).rstrip("\n"))
    lines.append("")
    lines += [f"note: {note}" for note in comparison.notes]
    timing = f" in {elapsed_s:.1f} s" if elapsed_s is not None else ""
    lines.append(f"golden{timing}: {comparison.summary()}")
    return "\n".join(lines) + "\n"


def _sci(value: Any) -> str:
    return "" if value is None else f"{float(value):.1e}"


# ----------------------------------------------------------------------------------------------
# Proving the gate bites


@dataclass(frozen=True)
class FaultResult:
    variant: str
    fault: str
    label_px_changed: int | None  # None when the faulty network failed to run at all
    caught: bool
    detail: str


def fault_sweep(backend_factory: BackendFactory, backend: str, tolerances: Tolerances, *,
                variants: Sequence[str] = VARIANTS, models: Sequence[str] | None = None,
                config: GoldenConfig | None = None,
                progress: Callable[[str], None] | None = None) -> list[FaultResult]:
    """Inject every `geometry_faults` slip (one at a time, narrow nets, one backend) into each
    VOC variant and each zoo family (`models`, default the config's; each on its own generated
    data) and report whether the golden comparison against the correct network fails, and how
    many label pixels moved (every head of a multi-head net)."""
    config = config or GoldenConfig()
    models = [resolve_model(m).key for m in (config.zoo_models if models is None else models)]
    with tempfile.TemporaryDirectory(prefix="fcn-golden-") as workdir:
        images = make_golden_images(workdir, config)

    def run(name: str, spec_factory: SpecFactory) -> dict[str, Any]:
        voc = name in VARIANTS
        return run_golden(spec_factory, backend_factory, [backend],
                          variants=[name] if voc else [], models=[] if voc else [name],
                          config=config, full_width=False, images=images)

    results = []
    for name in [*variants, *models]:
        reference = run(name, default_spec_factory)
        spec = default_spec_factory(name, config.width_divisor)
        for fault_name, fault in geometry_faults(spec):
            if progress:
                progress(f"{name}: {fault_name}")
            faulty = run(name, faulty_factory(name, fault))
            comparison = check_golden(faulty, reference, tolerances,
                                      baseline_name="correct network")
            moved = [f.delta for f in comparison.findings if f.metric == "label_maps"]
            failed_run = [f.note for f in comparison.findings if f.metric == "status"]
            results.append(FaultResult(name, fault_name, moved[0] if moved else None,
                                       comparison.failed,
                                       failed_run[0] if failed_run else ""))
    return results


def render_faults(results: Sequence[FaultResult], fmt: str = "plain") -> str:
    rows = [[r.variant, r.fault, "" if r.label_px_changed is None else r.label_px_changed,
             "caught" if r.caught else "MISSED", r.detail] for r in results]
    table = tabulate(rows, headers=["variant", "injected fault", "label px changed", "gate",
                                    "note"], tablefmt="github" if fmt == "github" else "simple",
                     disable_numparse=True)
    missed = sum(1 for r in results if not r.caught)
    return f"{table}\n\n{len(results) - missed} of {len(results)} injected faults caught\n"


# ----------------------------------------------------------------------------------------------
# The half-precision gate (docs/latency.md): labels agree with fp32's on the golden set


HalfFactory = Callable[[str, FcnSpec, str], Any]  # (backend name, spec, precision) -> backend


_NO_KERNEL = "No OpKernel was registered"  # TensorFlow's message for a missing dtype kernel


def _half_row(identity: dict[str, Any], spec: FcnSpec, params: dict[str, np.ndarray],
              backend_factory: HalfFactory, precision: str,
              samples: Sequence[ZooSample]) -> dict[str, Any]:
    """One network's gate row: fp32 scores and half-precision labels of every head."""
    from bench.evaluation.parity import half_precision_gate

    backend = identity["backend"]
    try:
        reference = backend_factory(backend, spec, "fp32")
        reference.load_params(params)
        scores = [head for sample in samples for head in zoo_scores(reference, sample)]
        half = backend_factory(backend, spec, precision)
        half.load_params(params)
        labels = [head.argmax(axis=0) for sample in samples
                  for head in zoo_scores(half, sample)]
    except Exception as error:  # a crash is this row's verdict; the other rows still run
        if isinstance(error, NotImplementedError) or _NO_KERNEL in str(error):
            # The framework has no kernel for a layer in this type on this device (torch's
            # CPU LRN, TF's LRN in bf16): shown and noted, not a numerical verdict.
            return {**identity, "status": "unsupported", "error": describe_error(error),
                    "passed": None}
        return {**identity, "status": "failed", "error": describe_error(error), "passed": False}
    return {**identity, "status": "ok", "error": None,
            **half_precision_gate(scores, labels, precision)}


def half_precision_rows(backend_factory: HalfFactory, backend: str, precision: str,
                        images: Sequence[GoldenImage], *, variants: Sequence[str] = VARIANTS,
                        models: Sequence[str] = (), config: GoldenConfig | None = None,
                        progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per VOC variant (on `images`) and per zoo model (on its own generated data, every
    head): labels in `precision` against fp32 (same backend, same golden weights) on the decided
    pixels, gated by bench.evaluation.parity.half_precision_gate (docs/latency.md). The fp32 gates
    of the
    suite are unchanged; this is an extra check for half-precision runs."""
    config = config or GoldenConfig()
    voc = [ZooSample(item.id, {"data": item.image}, {}) for item in images]
    rows = []
    for name in [*variants, *models]:
        if progress:
            progress(f"{name} {backend} {precision} against fp32")
        spec = default_spec_factory(name, config.width_divisor)
        params = golden_params(spec, config.weights_seed)
        identity = {"variant": name, "backend": backend, "precision": precision,
                    "width_divisor": config.width_divisor, "split": GOLDEN_SPLIT}
        if name in VARIANTS:
            rows.append(_half_row(identity, spec, params, backend_factory, precision, voc))
            continue
        with tempfile.TemporaryDirectory(prefix="fcn-golden-zoo-") as workdir:
            split, samples, _ = make_zoo_samples(
                name, workdir, seed=config.data_seed, num_images=config.zoo_images,
                voc_samples=images, voc_split=GOLDEN_SPLIT)
        rows.append(_half_row({**identity, "split": split}, spec, params, backend_factory,
                              precision, samples))
    return rows


def render_half_precision(rows: Sequence[dict[str, Any]], fmt: str = "plain") -> str:
    """The half-precision gate's table: agreement with fp32 on the decided pixels per network."""
    table, notes = [], []
    for row in rows:
        head = [row["variant"], row["backend"], row["precision"]]
        if row["status"] != "ok":
            verdict = "unsupported" if row["status"] == "unsupported" else "FAIL"
            table.append([*head, "", "", "", "", f"**{verdict}**" if fmt == "github" else verdict])
            notes.append(f"note: {' '.join(head)} {row['status']}: {row.get('error') or '?'}")
            continue
        verdict = "ok" if row["passed"] else "FAIL"
        table.append([*head, f"{100 * row['label_agreement_with_fp32']:.3f}",
                      f"{row['decided_pixels']} / {row['label_pixels']}",
                      f"{100 * row['label_agreement_all_pixels']:.3f}",
                      f">= {100 * row['gate']:.1f}",
                      f"**{verdict}**" if fmt == "github" and verdict == "FAIL" else verdict])
    heading = "### " if fmt == "github" else ""
    failed = sum(1 for row in rows if row.get("passed") is False)
    unsupported = sum(1 for row in rows if row["status"] == "unsupported")
    skipped = (f" ({unsupported} unsupported by the backend in this precision: not gated)"
               if unsupported else "")
    text = tabulate(table, headers=["variant", "backend", "precision", "agree decided %",
                                    "decided px", "agree all %", "gate %", "verdict"],
                    tablefmt="github" if fmt == "github" else "simple", disable_numparse=True)
    return (f"{heading}Half precision: labels against fp32 on the decided pixels "
            f"(docs/latency.md)\n\n{text}\n\n{len(rows) - failed - unsupported} of "
            f"{len(rows) - unsupported} half-precision rows pass{skipped}\n"
            + "".join(f"{note}\n" for note in notes))
