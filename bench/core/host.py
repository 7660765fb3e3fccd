"""The machine a run happens on: CPU, usable cores, load, available memory, thread variables.

Latency records carry these facts, and the memory checks (bench/model/memory.py) compare an
estimate with what is available before allocating. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any


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
