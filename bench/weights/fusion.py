"""Late fusion: two single-stream FCN archives -> the two streams of a late-fusion net.

REF nyud-fcn32s-color-hha/solve.py transplants a colour FCN-32s and an HHA FCN-32s into the
`*color` and `*hha` layers of the fused net (docs/fidelity.md "Late fusion"). numpy only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from bench.core.errors import UsageError
from bench.model.init import fixed_params
from bench.model.spec import Upsample, build_spec, resolve_model
from bench.model.zoo import MODEL_ENTRIES, InputInfo, ModelEntry
from bench.weights.archive import (
    archive_metadata,
    check_params,
    open_archive,
    save_archive,
)
from bench.weights.convert import Conversion, check_output, conversion_result, model_key
from bench.weights.limits import check_memory


def convert_fused(output: str | Path, sources: Mapping[str, str | Path], variant: str, *,
                  force: bool = False) -> Conversion:
    """The init of a late-fusion model (nyud-fcn32s-color-hha) from one single-stream archive
    per input: every tensor of the `color` archive goes to the `*color` layers, the `hha` one's
    to `*hha` (REF nyud-fcn32s-color-hha/solve.py transplants the two snapshots by name);
    the shared `upscore` is bilinear (surgery.interp). Each archive must be the single-stream
    model of its input (nyud-fcn32s-color, nyud-fcn32s-hha), with the same classes and width.
    """
    started = time.perf_counter()
    output = Path(output)
    key = model_key(variant, "--variant")
    entry = resolve_model(key or "")
    if entry.fusion != "late":
        late = [e.name for e in MODEL_ENTRIES if e.fusion == "late"]
        raise UsageError(f"--fuse builds a late-fusion model ({', '.join(late)}); "
                         f"{entry.name} is not one")
    names = [item.name for item in entry.inputs]
    if sorted(sources) != sorted(names):
        raise UsageError(f"{entry.name} needs --fuse " + " --fuse ".join(f"{n}=ARCHIVE"
                         for n in names) + f" (got {', '.join(sorted(sources)) or 'none'})")
    check_output(output, force)
    streams = {}
    for item in entry.inputs:
        path = Path(sources[item.name])
        single = _single_stream_model(entry, item)
        archive = open_archive(path, single)
        streams[item.name] = (path, archive.spec, archive.read_tensors(), archive.sha256)
    specs = [spec for _, spec, _, _ in streams.values()]
    if len({(s.num_classes, s.width_divisor) for s in specs}) > 1:
        raise UsageError("--fuse archives differ in classes or width: " + ", ".join(
            f"{n}: {s.num_classes} classes, width /{s.width_divisor}"
            for n, (_, s, _, _) in streams.items()))
    spec = build_spec(entry.key, specs[0].num_classes, specs[0].width_divisor)
    check_memory(spec, output)
    fused = fixed_params(spec)
    upsampled = {layer.name for layer in specs[0].layers if isinstance(layer, Upsample)}
    for name, (_, stream_spec, params, _) in streams.items():
        for param in stream_spec.parameters():
            if param.layer not in upsampled:
                fused[f"{param.layer}{name}.{param.name.rsplit('.', 1)[1]}"] = params[param.name]
    fused = {p.name: fused[p.name] for p in spec.parameters() if p.name in fused}
    check_params(fused, spec, output)
    metadata = archive_metadata(
        spec, kind="init",
        origin="fuse:" + ",".join(f"{n}={path.stem}" for n, (path, _, _, _) in streams.items()),
        source_sha256=",".join(f"{n}:{sha}" for n, (_, _, _, sha) in streams.items()),
        init_surgery="late-fusion transplant: each single-stream FCN's layers copied into the "
                     "layers suffixed with its input; upscore bilinear")
    save_archive(output, fused, metadata)
    return conversion_result(output, fused, metadata, "fuse", 0, started)


def _single_stream_model(entry: ModelEntry, item: InputInfo) -> str:
    """The released single-input model of the same data set and trunk whose input is `item`'s
    kind (nyud-fcn32s-color for the colour stream of nyud-fcn32s-color-hha)."""
    for other in MODEL_ENTRIES:
        if (other.dataset == entry.dataset and other.trunk == entry.trunk
                and other.stride == entry.stride and len(other.inputs) == 1
                and other.inputs[0].kind == item.kind and other.inputs[0].mean == item.mean):
            return other.key
    raise UsageError(f"no single-stream model for the {item.name} input of {entry.name}")
