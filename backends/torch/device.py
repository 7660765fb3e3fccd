"""PyTorch device, precision and thread set-up, and the environment record (imports torch).

Mirrors backends/tensorflow/device.py: resolve "auto"/"cpu"/"cuda", refuse what the machine
cannot run with one clear line, switch TF32 exactly as the precision says, and describe the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from backends.base import nvidia_driver_version
from bench.core.contracts import DEVICES, PRECISIONS, RunOptions, compute_dtype, storage_dtype
from bench.core.errors import BackendUnavailable, UsageError

# amp-* run under autocast over float32 weights; scores are always returned as float32.
AUTOCAST_DTYPES = {"amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}


def model_dtype(precision: str) -> torch.dtype:
    """The dtype the model and its inputs are cast to once (bf16/fp16), else float32."""
    return getattr(torch, storage_dtype(precision))


def resolve_device(requested: str) -> torch.device:
    """"auto" -> cuda when torch sees a GPU, else cpu; an absent cuda is BackendUnavailable."""
    if requested not in DEVICES:
        raise UsageError(f"unknown device {requested!r}; choose from {', '.join(DEVICES)}")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise BackendUnavailable(f"device 'cuda' requested but torch {torch.__version__} "
                                 f"({build}) sees no CUDA GPU; use --device cpu or auto")
    if requested == "cuda" or (requested == "auto" and has_cuda):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse precisions this device cannot honour (TF32 is a tensor-core mode of CUDA GPUs)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "tf32" and device.type != "cuda":
        raise UsageError("precision 'tf32' needs a CUDA GPU (TF32 is a tensor-core mode); "
                         "use fp32 on the CPU")


@contextlib.contextmanager
def precision_scope(precision: str, device: torch.device) -> Iterator[None]:
    """Set TF32 flags (process-global, so re-asserted around every forward) and, for amp-*,
    autocast (bf16/fp16 need none: the model itself is in that dtype).

    fp32 means TF32 *off* for both matmul and cuDNN convolutions (torch enables cuDNN TF32 by
    default, which would silently change fp32 parity on Ampere and newer).
    """
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


def configure_threads(threads: int | None) -> None:
    """Intra-op CPU threads (None keeps torch's default of one per core)."""
    if threads is not None:
        if threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def environment(device: torch.device, options: RunOptions,
                compile_mode: str | None) -> dict[str, Any]:
    """What a result depends on: versions, device, precision flags, threads, compilation."""
    env: dict[str, Any] = {
        "framework": "torch",
        "framework_version": torch.__version__,
        "device": device.type,
        "device_name": "cpu",
        "precision": options.precision,
        # The flags precision_scope() asserts around every forward of this backend.
        "tf32": options.precision == "tf32",
        "weights_dtype": storage_dtype(options.precision),
        "compute_dtype": compute_dtype(options.precision),
        "autocast": options.precision in AUTOCAST_DTYPES,
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "compile": compile_mode,
        "channels_last": options.channels_last,
        "cuda_version": torch.version.cuda,
        "cudnn_version": None,
        "driver": None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cudnn_version"] = torch.backends.cudnn.version()
        env["driver"] = nvidia_driver_version()
        major, minor = torch.cuda.get_device_capability(device)
        env["compute_capability"] = f"{major}.{minor}"
    return env
