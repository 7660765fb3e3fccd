"""What a conversion may allocate: the class-count cap and the memory estimate, checked before any
array is built (docs/security.md)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.core.errors import UsageError
from bench.model.spec import FcnSpec

# Classes an archive may have: semantic segmentation sets have 19-200 (VOC 21, Context 60,
# ADE20K 150, COCO-Stuff 182). The upsampling kernels grow with the square of it: 1000 classes
# already make a 256 MB fcn32s `upscore` (docs/security.md).
MAX_NUM_CLASSES = 1000

# Copies of the parameters alive at the peak of a conversion: the generated arrays, their
# float32 copies in save_archive, and safetensors' serialised buffer.
_PEAK_COPIES = 3


def check_num_classes(num_classes: int | None) -> int | None:
    """Refuse a class count outside 1..MAX_NUM_CLASSES (one line naming the option)."""
    if num_classes is not None and not 1 <= num_classes <= MAX_NUM_CLASSES:
        raise UsageError(f"--num-classes {num_classes} is outside 1..{MAX_NUM_CLASSES}")
    return num_classes


def conversion_bytes(spec: FcnSpec) -> int:
    """Estimated peak memory of writing an archive for `spec`, from its parameter shapes."""
    return _PEAK_COPIES * 4 * spec.num_parameters()


def available_memory() -> int | None:
    """Bytes this process can still get: the host's MemAvailable (else its physical memory),
    capped by an address-space limit (ulimit -v) if one is set; None if unknown."""
    free = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            free = None
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            free = soft if free is None else min(free, soft)
    except (ImportError, OSError, ValueError):
        pass
    return free


def check_memory(spec: FcnSpec, what: str | Path, available: int | None = None) -> None:
    """Refuse, before allocating, a conversion whose estimated peak exceeds the free memory."""
    need = conversion_bytes(spec)
    free = available if available is not None else available_memory()
    if free is not None and need > free:
        raise UsageError(f"{what}: a {spec.variant} archive with {spec.num_classes} classes "
                         f"needs about {need / 2**30:.1f} GiB of memory to build, but only "
                         f"{free / 2**30:.1f} GiB is available")
