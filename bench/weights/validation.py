"""What a set of weights must be, checked in one error: the metadata every archive carries and
the tensors a spec expects (names, shapes, float32, finite). Every problem is listed in ONE
WeightsError naming the file, so a user fixes them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from bench.core.errors import WeightsError
from bench.model.spec import FcnSpec

KINDS = ("trained", "init", "random")

# Metadata every fcn-bench archive carries; `convert` refuses an archive lacking one before
# writing anything (an archive written without them would break every later reader).
REQUIRED_METADATA = ("variant", "kind", "origin", "source_sha256")


def check_metadata(metadata: Mapping[str, str], path: str | Path,
                   required: Iterable[str] = REQUIRED_METADATA) -> None:
    """WeightsError naming every missing required key and an unknown `kind`."""
    problems = [f"no {key!r}" for key in required if key not in metadata]
    if "kind" in metadata and metadata["kind"] not in KINDS:
        problems.append(f"kind {str(metadata['kind'])[:40]!r} is not one of {', '.join(KINDS)}")
    if problems:
        raise WeightsError(path, f"archive metadata is incomplete or wrong: {'; '.join(problems)}"
                                 "; re-convert it from its source")


def check_params(params: Mapping[str, np.ndarray], spec: FcnSpec,
                 path: str | Path = "<params>") -> None:
    """Raise one WeightsError listing every way `params` differs from the spec (names, shapes,
    dtype float32, finiteness). Converters call it before writing anything."""
    problems = shape_problems(spec, {k: tuple(np.shape(v)) for k, v in params.items()})
    for name, value in params.items():
        value = np.asarray(value)
        if value.dtype != np.float32:
            problems.append(f"{name} is {value.dtype}, expected float32")
        elif bad := count_nonfinite(value):
            problems.append(f"{name} has {bad} non-finite values (NaN/inf)")
    if problems:
        raise problems_error(path, problems)


def count_nonfinite(value: np.ndarray, slice_size: int = 1 << 22) -> int:
    """NaN/inf count, in slices: fc6's mask would otherwise be a 100 MB temporary."""
    flat = np.asarray(value).reshape(-1)
    return sum(int(np.count_nonzero(~np.isfinite(flat[i:i + slice_size])))
               for i in range(0, flat.size, slice_size))


def shape_problems(spec: FcnSpec, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    expected = spec.param_shapes()
    problems = [f"missing {name} {list(shape)}" for name, shape in expected.items()
                if name not in shapes]
    problems += [f"unexpected {name} {list(shape)}" for name, shape in shapes.items()
                 if name not in expected]
    problems += [f"{name} has shape {list(shapes[name])}, {spec.variant} expects {list(shape)}"
                 for name, shape in expected.items()
                 if name in shapes and tuple(shapes[name]) != tuple(shape)]
    return problems


def problems_error(path: str | Path, problems: list[str]) -> WeightsError:
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return WeightsError(path, f"{count}: " + "; ".join(problems))
