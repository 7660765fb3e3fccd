"""A torch.distributed process group for sharded evaluation under torchrun (imports torch).

`torchrun --nproc_per_node N cli.py reproduce ...` starts N copies of the command; this joins
them so bench.evaluation.runner can split the images round-robin and sum the confusion matrices.
The sum travels over gloo as host float64 tensors whichever framework scores the images (a few
KB per run), so it also serves `--backend tensorflow`; training uses its own group (train.py).
"""

from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from bench.core.distributed import Shard, torchrun_world

# A rank that waits this long for its peers (one crashed, or is stuck on I/O) fails, not hangs.
TIMEOUT = timedelta(minutes=30)


class EvaluationGroup:
    """This process's rank, its shard of the images, and the sum over processes."""

    def __init__(self, device: str = "auto"):
        self.rank, self.world_size = torchrun_world()
        self._owned = False
        if self.world_size > 1:
            if device != "cpu" and torch.cuda.is_available():
                # One GPU per rank: the backend then resolves "cuda"/"auto" to this one.
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0"))
                                      % torch.cuda.device_count())
            if not dist.is_initialized():
                dist.init_process_group("gloo", timeout=TIMEOUT)
                self._owned = True
            self.rank = dist.get_rank()

    def shard(self) -> Shard | None:
        """None for one process (the loop then runs unsharded, as before)."""
        if self.world_size == 1:
            return None
        return Shard(self.rank, self.world_size, self.all_reduce_sum)

    def all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(values, np.float64).copy())
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.numpy()

    def close(self) -> None:
        if self._owned and dist.is_initialized():
            dist.destroy_process_group()
            self._owned = False
