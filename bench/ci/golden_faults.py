"""Faults for proving that the golden gates bite: geometry slips injected into a spec (a crop one
pixel off, a skip or a fused stream dropped, a first-conv pad changed), and the sweep that runs
each against the correct network (`cli.py golden --check-faults`; docs/ci.md)."""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from bench.ci.gates import Tolerances
from bench.ci.golden import (
    BackendFactory,
    GoldenConfig,
    SpecFactory,
    check_golden,
    default_spec_factory,
    make_golden_images,
    run_golden,
)
from bench.core.errors import UsageError
from bench.model.spec import VARIANTS, Conv, Crop, Dropout, FcnSpec, Layer, Sum, resolve_model

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
