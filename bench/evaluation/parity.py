"""Layer-by-layer agreement of two implementations of one FCN (backends or the numpy reference).

It compares dicts of named NCHW numpy blobs, whatever produced them. Tolerances are data
(`TOLERANCES`), every layer is checked, all failures are gathered into one report, and the
verdict is given once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from tabulate import tabulate

from bench.model.spec import Conv, FcnSpec, MaxPool, Sum, Upsample


@dataclass(frozen=True)
class Tolerance:
    """How far two implementations may drift and still count as the same network."""

    max_rel: float  # max |a - b| / max |a| per blob (relative to the blob's own scale)
    min_label_agreement: float  # fraction of pixels whose argmax class is identical


# Why these numbers. Both sides accumulate in float32 (eps 6e-8 relative). The largest dot product
# is fc6: 512 x 7 x 7 = 25,088 products per output, and an error picked up early is carried
# through 16+ layers; different but correct summation orders (oneDNN, cuDNN, Eigen, im2col) give
# a random-walk error of about sqrt(25088) * 6e-8 ~ 1e-5 of the blob's scale per deep layer
# (measured on CPU: <= 4e-6). 1e-4 leaves 10x headroom yet still catches any real semantic
# slip (a shifted crop, floor pooling, SAME fc6, wrong kernel layout), which changes blobs by
# O(1) of their scale. Labels: the argmax only flips where the two best classes are closer than
# the score error, so a few near-tie pixels may differ; 99.9 % must agree.
# Reduced precisions round every product: TF32 keeps a 10-bit mantissa (eps 1e-3), fp16 10
# bits with a narrow range, bf16 only 7 bits (eps 8e-3); both sides round differently, so the
# budget is the per-layer rounding error carried through the net, and labels near ties flip more.
# Half precisions (bf16/fp16 cast once, or amp-* autocast) also have a gate against fp32 itself:
# the labels of a half-precision run must agree with the fp32 labels of the same backend on at
# least HALF_PRECISION_LABEL_AGREEMENT of the *decided* pixels: those whose fp32 top-two margin is
# at least the half type's machine epsilon (bf16 2^-7, fp16 2^-10) of the image's max |score|.
# Below that margin the half type cannot tell the two classes apart, so a flip there is rounding,
# not a fault; such near ties are counted and reported. Measured on the golden set (random
# weights, 24-48 px images, narrow nets): bf16 agrees on 100 % of the decided pixels (~90 % of
# all; 98.1-99.1 % of all pixels), fp16 on 99.7-99.9 % of all pixels (docs/latency.md).
HALF_PRECISION_LABEL_AGREEMENT = 0.995
HALF_EPSILON = {"bf16": 2.0**-7, "amp-bf16": 2.0**-7, "fp16": 2.0**-10, "amp-fp16": 2.0**-10}
HALF_PRECISIONS = ("bf16", "fp16", "amp-bf16", "amp-fp16")
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_rel=1e-4, min_label_agreement=0.999),
    "tf32": Tolerance(max_rel=2e-2, min_label_agreement=0.99),
    "fp16": Tolerance(max_rel=2e-2, min_label_agreement=0.99),
    "bf16": Tolerance(max_rel=1e-1, min_label_agreement=0.95),
    "amp-fp16": Tolerance(max_rel=2e-2, min_label_agreement=0.99),
    "amp-bf16": Tolerance(max_rel=1e-1, min_label_agreement=0.95),
}


def half_precision_gate(scores_fp32: Sequence[np.ndarray], labels_half: Sequence[np.ndarray],
                        precision: str) -> dict[str, Any]:
    """Label agreement of a half-precision run with fp32 (same backend, same inputs) on the
    decided pixels, and its verdict against HALF_PRECISION_LABEL_AGREEMENT.

    scores_fp32: per image (C, H, W) fp32 scores; labels_half: per image (H, W) labels.
    """
    epsilon = HALF_EPSILON[precision]
    agree = decided = agree_all = pixels = 0
    for scores, labels in zip(scores_fp32, labels_half, strict=True):
        scores = np.asarray(scores, np.float64)
        top2 = np.sort(scores, axis=0)[-2:]
        scale = np.abs(scores).max() or 1.0
        is_decided = (top2[1] - top2[0]) >= epsilon * scale
        same = scores.argmax(axis=0) == np.asarray(labels)
        agree += int(np.count_nonzero(same & is_decided))
        decided += int(np.count_nonzero(is_decided))
        agree_all += int(np.count_nonzero(same))
        pixels += same.size
    agreement = agree / decided if decided else 1.0
    return {"label_agreement_with_fp32": agreement, "decided_pixels": decided,
            "near_tie_pixels": pixels - decided, "label_pixels": pixels,
            "label_agreement_all_pixels": agree_all / pixels if pixels else 1.0,
            "near_tie_margin": epsilon, "gate": HALF_PRECISION_LABEL_AGREEMENT,
            "passed": agreement >= HALF_PRECISION_LABEL_AGREEMENT}


def parity_layers(spec: FcnSpec) -> list[str]:
    """The blobs worth comparing: every pool, fc7, score_fr, each upsampling, each score-layer
    and fusion, and every output score (in network order)."""
    names = []
    for layer in spec.layers:
        if (isinstance(layer, MaxPool | Upsample | Sum)
                or layer.name in ("fc7", "score_fr")
                or (isinstance(layer, Conv) and layer.name.startswith("score_"))
                or layer.name in spec.outputs):
            names.append(layer.name)
    return names


@dataclass(frozen=True)
class LayerDiff:
    """One blob compared: shapes must match; max abs / rel differences against a tolerance."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    max_rel_diff: float  # max |a - b| / max |a|
    scale: float  # max |a|: the magnitude the relative difference is taken against
    passed: bool
    problem: str | None = None  # a shape mismatch or non-finite values


def compare_blob(name: str, a: np.ndarray, b: np.ndarray, max_rel: float) -> LayerDiff:
    """Compare blob `b` with blob `a` (whose max |value| sets the scale)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    nan = float("nan")
    if a.shape != b.shape:
        return LayerDiff(name, tuple(a.shape), nan, nan, nan, False,
                         f"shape {a.shape} vs {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return LayerDiff(name, tuple(a.shape), nan, nan, nan, False, "non-finite values")
    scale = float(np.abs(a).max()) if a.size else 0.0
    max_abs = float(np.abs(a - b).max()) if a.size else 0.0
    # An all-zero blob (e.g. zero-initialised scores) must then match exactly.
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return LayerDiff(name, tuple(a.shape), max_abs, rel, scale, rel <= max_rel)


def label_agreement(scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, int]:
    """(fraction of pixels with the same argmax class, number that differ); NCHW scores."""
    labels_a = np.asarray(scores_a).argmax(axis=1)
    labels_b = np.asarray(scores_b).argmax(axis=1)
    differing = int(np.count_nonzero(labels_a != labels_b))
    return 1.0 - differing / labels_a.size, differing


@dataclass(frozen=True)
class ParityReport:
    """Every compared layer and the label agreement of two implementations, with one verdict."""

    left: str
    right: str
    precision: str
    tolerance: Tolerance
    layers: tuple[LayerDiff, ...]
    label_agreement: float
    labels_differing: int
    label_pixels: int

    @property
    def passed(self) -> bool:
        return (all(layer.passed for layer in self.layers)
                and self.label_agreement >= self.tolerance.min_label_agreement)

    def failures(self) -> list[str]:
        """One phrase per violated tolerance (empty when the report passed)."""
        problems = [f"{layer.name}: {layer.problem}" if layer.problem else
                    f"{layer.name}: rel {layer.max_rel_diff:.2e} > {self.tolerance.max_rel:.0e}"
                    for layer in self.layers if not layer.passed]
        if self.label_agreement < self.tolerance.min_label_agreement:
            problems.append(f"labels agree on {self.label_agreement:.4%} < "
                            f"{self.tolerance.min_label_agreement:.2%}")
        return problems

    def table(self) -> str:
        """The per-layer table a human reads (tabulate, plain text)."""
        rows = [(layer.name, "x".join(map(str, layer.shape)), f"{layer.scale:.4g}",
                 f"{layer.max_abs_diff:.3e}", f"{layer.max_rel_diff:.3e}", _verdict(layer))
                for layer in self.layers]
        headers = ("blob", "shape", f"max|{self.left}|", "max abs diff", "max rel diff",
                   f"<= {self.tolerance.max_rel:.0e}")
        labels = (f"labels: {self.label_agreement:.4%} of {self.label_pixels} pixels agree "
                  f"({self.labels_differing} differ; need >= "
                  f"{self.tolerance.min_label_agreement:.2%})")
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{self.left} vs {self.right} ({self.precision})\n"
                f"{tabulate(rows, headers=headers, disable_numparse=True)}\n{labels}\n{verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "left": self.left,
            "right": self.right,
            "precision": self.precision,
            "tolerance": asdict(self.tolerance),
            "layers": [asdict(layer) for layer in self.layers],
            "label_agreement": self.label_agreement,
            "labels_differing": self.labels_differing,
            "label_pixels": self.label_pixels,
            "passed": self.passed,
            "failures": self.failures(),
        }


def _verdict(layer: LayerDiff) -> str:
    if layer.passed:
        return "ok"
    return f"FAIL ({layer.problem})" if layer.problem else "FAIL"


def compare(blobs_left: Mapping[str, np.ndarray], blobs_right: Mapping[str, np.ndarray],
            names: Sequence[str], *, output: str, tolerance: Tolerance, left: str = "left",
            right: str = "right", precision: str = "fp32") -> ParityReport:
    """Compare the named blobs of two implementations; labels from the `output` scores."""
    layers = tuple(compare_blob(name, blobs_left[name], blobs_right[name], tolerance.max_rel)
                   for name in names)
    agreement, differing = label_agreement(blobs_left[output], blobs_right[output])
    pixels = int(np.asarray(blobs_left[output]).argmax(axis=1).size)
    return ParityReport(left, right, precision, tolerance, layers, agreement, differing, pixels)


def tolerance_for(precision: str, max_rel: float | None = None,
                  min_label_agreement: float | None = None) -> Tolerance:
    """The tolerance of a precision, optionally overridden (e.g. a stricter CI gate)."""
    tolerance = TOLERANCES[precision]
    if max_rel is not None:
        tolerance = replace(tolerance, max_rel=max_rel)
    if min_label_agreement is not None:
        tolerance = replace(tolerance, min_label_agreement=min_label_agreement)
    return tolerance
