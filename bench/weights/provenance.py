"""How an archive records where its numbers come from (metadata `origin`, `variant_source`), and
the one line for a source whose detected model differs from the requested --variant."""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import WeightsError


def origin_of(label: str, path: Path) -> str:
    return f"{label}:{path.stem}"


def variant_source(requested: str | None) -> str:
    """How an archive's `variant` was decided (metadata `variant_source`)."""
    return ("--variant, checked against the tensors" if requested is not None
            else "detected from the tensors")


def refuse_other_variant(path: Path, found: str, requested: str | None) -> str:
    if requested is not None and requested != found:
        raise WeightsError(path, f"holds {found} weights (detected from the file's layers, not "
                           f"guessed from its name) but --variant {requested} was given; drop "
                           f"--variant or convert the {requested} weights")
    return found
