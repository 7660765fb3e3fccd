"""The host a latency run ran on (CPU, cores, load, memory) and the memory-aware grouping of
cells. Stdlib only. Split out of bench/perf/latency.py, which uses it.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.perf.cells import CellKey




def plan_groups(keys: Sequence[CellKey], instance_bytes: Mapping[str, int],
                budget_bytes: int | None) -> tuple[list[list[CellKey]], str]:
    """Interleave every cell at once if all their backend instances fit in `budget_bytes`; else
    one variant at a time (its backends still interleaved). Returns the groups and a label."""
    instances = {(k.variant, k.backend) for k in keys}
    needed = sum(instance_bytes[variant] for variant, _ in instances)
    if budget_bytes is None or needed <= budget_bytes or len({k.variant for k in keys}) == 1:
        return [list(keys)], "all cells"
    groups: dict[str, list[CellKey]] = {}
    for key in keys:
        groups.setdefault(key.variant, []).append(key)
    return list(groups.values()), (f"one variant at a time: the {len(instances)} models "
                                   f"(~{needed / 2**30:.1f} GiB) exceed half the available memory")


def _read_proc(path: str) -> str:
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as handle:
        return handle.read()
    return ""


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None (then no memory-based grouping)."""
    for line in _read_proc("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def host_info() -> dict[str, Any]:
    """The host as it was during the run: CPU model, usable cores, load, memory, thread env vars."""
    cpu_model = next((line.split(":", 1)[1].strip() for line in
                      _read_proc("/proc/cpuinfo").splitlines()
                      if line.startswith("model name")), platform.processor() or None)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    env_keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                "TF_NUM_INTEROP_THREADS", "CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH",
                "TF_XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS")
    return {
        "cpu_model": cpu_model, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
        "load_average_1_5_15": list(load) if load else None,
        "memory_available_bytes": available_memory_bytes(),
        "thread_env": {k: os.environ[k] for k in env_keys if k in os.environ},
    }
