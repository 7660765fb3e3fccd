"""Data-parallel plumbing shared by the backends: who am I (rank, world size), which images are
mine, and a launcher that starts N TensorFlow workers on this machine.

How the processes talk is the backend's business (torch.distributed under torchrun, TensorFlow's
MultiWorkerMirroredStrategy under TF_CONFIG); this module only reads the environment those
launchers set and splits work deterministically. docs/distributed.md describes both paths.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.core.errors import UsageError

TF_CONFIG = "TF_CONFIG"
# The launcher tells each worker which local device is its own (TF_CONFIG has no such field).
LOCAL_RANK_ENV = "FCN_BENCH_LOCAL_RANK"


@dataclass(frozen=True)
class Shard:
    """This process's part of a data-parallel evaluation: images rank, rank + N, rank + 2N, ...

    Round-robin by index is deterministic, needs no communication, scores every image exactly
    once and balances image sizes better than contiguous blocks. `all_reduce_sum` sums a float64
    vector over all processes (exact for counts below 2**53).
    """

    rank: int
    world_size: int
    all_reduce_sum: Callable[[np.ndarray], np.ndarray]

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise UsageError(f"rank {self.rank} is outside a world of {self.world_size} processes")

    def select(self, ids: Sequence[str]) -> list[str]:
        return list(ids)[self.rank::self.world_size]


def torchrun_world() -> tuple[int, int]:
    """(rank, world_size) from the variables torchrun sets; (0, 1) outside torchrun."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise UsageError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} / RANK="
                         f"{os.environ.get('RANK')!r} are not integers (set by torchrun)") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise UsageError(f"RANK {rank} / WORLD_SIZE {world_size} from the environment are "
                         "inconsistent")
    return rank, world_size


def tf_config_world(text: str | None = None) -> tuple[int, int]:
    """(task index, number of workers) from TF_CONFIG; (0, 1) when it is unset.

    TF_CONFIG is user-given JSON: anything but {"cluster": {"worker": [host:port, ...]},
    "task": {"type": "worker", "index": i}} is one UsageError, not a TensorFlow traceback.
    """
    text = os.environ.get(TF_CONFIG) if text is None else text
    if not text:
        return 0, 1
    problem = "expected {\"cluster\": {\"worker\": [\"host:port\", ...]}, \"task\": " \
              "{\"type\": \"worker\", \"index\": i}}"
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = task["index"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{TF_CONFIG} is not valid: {problem}") from None
    if (not isinstance(workers, list) or not workers
            or not all(isinstance(w, str) and ":" in w for w in workers)):
        raise UsageError(f"{TF_CONFIG}: cluster.worker must be a non-empty list of host:port")
    if set(config["cluster"]) - {"worker"} or task.get("type") != "worker":
        raise UsageError(f"{TF_CONFIG}: only 'worker' tasks are supported (no chief, ps or "
                         "evaluator); " + problem)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise UsageError(f"{TF_CONFIG}: task.index {index!r} is not in 0..{len(workers) - 1}")
    return index, len(workers)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the OS reports free now (another program may take one before the
    workers bind it; the launcher then fails fast and can simply be rerun)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def worker_environments(workers: int, host: str = "127.0.0.1",
                        base: dict[str, str] | None = None) -> list[dict[str, str]]:
    """One environment per local worker: TF_CONFIG naming all of them, and its local rank."""
    addresses = [f"{host}:{port}" for port in free_ports(workers, host)]
    base = dict(os.environ if base is None else base)
    return [{**base, TF_CONFIG: json.dumps({"cluster": {"worker": addresses},
                                            "task": {"type": "worker", "index": index}}),
             LOCAL_RANK_ENV: str(index)} for index in range(workers)]


def launch_workers(command: Sequence[str], workers: int, *, timeout_s: float | None = None,
                   poll_s: float = 0.2, **popen: Any) -> int:
    """Run `command` as `workers` local TensorFlow workers; the first failure stops the rest.

    Returns 0 when all succeed, else the first non-zero exit status (124 on timeout). A worker
    that dies would leave the others waiting in a collective, so they are terminated (SIGTERM,
    then SIGKILL after 10 s): no orphan processes.
    """
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    processes = [subprocess.Popen(list(command), env=env, **popen)
                 for env in worker_environments(workers)]
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status = 0
    try:
        while [p.poll() for p in processes].count(None):  # poll every one (no short cut)
            failed = [p.returncode for p in processes if p.returncode not in (None, 0)]
            if failed:
                status = failed[0]
                break
            if deadline is not None and time.monotonic() > deadline:
                status = 124
                break
            time.sleep(poll_s)
        else:
            status = next((p.returncode for p in processes if p.returncode), 0)
    finally:
        _stop(processes)
    return status


def _stop(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.core.distributed --workers N cli.py train --backend tf ...`"""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: python -m bench.core.distributed --workers N cli.py train "
             "--backend tensorflow "
             "...  (starts N TensorFlow workers on 127.0.0.1 with TF_CONFIG)")
    if len(args) < 3 or args[0] != "--workers" or not args[1].isdigit():
        print(usage, file=sys.stderr)
        return 2
    workers, command = int(args[1]), args[2:]
    if command[0].endswith(".py"):
        command = [sys.executable, *command]
    try:
        return launch_workers(command, workers)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
