"""Run part of a latency matrix in its own process, so that a crash there is one FAILED row.

torch.compile in max-autotune mode crashed a model on an H100 with an illegal memory access,
which poisons the CUDA context for the rest of the process: every later cell would fail too.
A worker started with multiprocessing's *spawn* method (a fresh interpreter: no inherited CUDA
context, no forked framework threads) runs the job and sends its result back as plain picklable
data through a pipe; if it dies instead (a signal, os._exit, an abort in a driver), the parent
reads the exit status and reports it as the job's error.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from typing import Any

from bench.core.errors import describe_error


def _entry(target: Callable[[Any], Any], payload: Any, connection: Any) -> None:
    """In the worker: run the job and send ("ok", result) or ("error", one line) back."""
    try:
        message = ("ok", target(payload))
    except BaseException as error:
        message = ("error", describe_error(error))
    try:
        connection.send(message)
    finally:
        connection.close()


def exit_description(code: int | None) -> str:
    """A worker's exit status in words: 'killed by signal SIGSEGV' or 'exit code 3'."""
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_in_worker(target: Callable[[Any], Any], payload: Any,
                  what: str = "worker") -> tuple[Any, str | None]:
    """(result, None) when `target(payload)` returned in a spawned process, else (None, error).

    `target` must be importable by name (a module-level function) and `payload` picklable.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_entry, args=(target, payload, sender), daemon=True)
    process.start()
    sender.close()  # only the worker holds the sending end: its death closes the pipe
    message = None
    try:
        message = receiver.recv()
    except EOFError:
        pass
    finally:
        receiver.close()
        process.join()
    if message is None:
        return None, (f"{what} process died before reporting "
                      f"({exit_description(process.exitcode)}); the other cells still ran")
    status, value = message
    if status == "ok":
        return value, None
    return None, f"{what} process failed: {value}"
