"""How a run stops early: a diverged loss or weights, and SIGINT/SIGTERM turned into a flag the
loop reads between updates (then it snapshots and exits 130).
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from bench.core.errors import FcnBenchError


class TrainingDiverged(FcnBenchError):
    """The loss or the weights became NaN/inf."""


class TrainingInterrupted(FcnBenchError):
    exit_code = 130


class StopRequest:
    """SIGINT/SIGTERM set a flag that the loop reads between updates (never mid-update).

    A second signal more than a second later aborts at once (KeyboardInterrupt; the last snapshot
    is then the resume point). Repeats within that second are ignored: a Ctrl-C under torchrun
    reaches each worker twice, once from the terminal and once forwarded by torchrun. Signal
    handlers can only be installed from the main thread; elsewhere this is a no-op.
    """

    REPEAT_GRACE_S = 1.0

    def __init__(self) -> None:
        self.requested = False
        self._first_signal = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread
            self._previous.clear()
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.requested:
            if now - self._first_signal > self.REPEAT_GRACE_S:
                raise KeyboardInterrupt
            return
        self.requested, self._first_signal = True, now
        print(f"\n{signal.Signals(signum).name}: stopping after this update and writing a "
              "snapshot (press Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
