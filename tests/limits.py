"""Resource bounds for the hostile-input tests: Python allocations and a capped subprocess."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEAK_LIMIT = 256 * 2**20  # far above any tiny hostile input's honest needs


@contextmanager
def bounded_allocations(limit: int = PEAK_LIMIT) -> Iterator[None]:
    """Fail if the Python allocations inside peak above `limit` (torch's C++ ones are not seen:
    the address-space cap of `run_limited` covers those)."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak allocation {peak / 2**20:.0f} MiB"


def run_limited(code: str, limit: int = 1 << 30) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter whose address space is capped at `limit` bytes."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], preexec_fn=cap, env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
