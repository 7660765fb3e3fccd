"""TensorFlow device, precision and thread set-up, and the environment record (imports tensorflow).

Mirrors backends/torch/device.py: resolve "auto"/"cpu"/"cuda", refuse what the machine cannot
run with one clear line, switch TF32 exactly as the precision says, and describe the run.
TensorFlow fixes its thread pools and GPU memory policy when its runtime initialises, so those
are applied as early as possible and the *effective* values are reported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

from backends.base import nvidia_driver_version
from bench.core.contracts import DEVICES, PRECISIONS, RunOptions, compute_dtype, storage_dtype
from bench.core.errors import BackendUnavailable, UsageError


def variable_dtype(precision: str) -> tf.DType:
    """bf16/fp16 build the model in that dtype (variables stored so: cast once, at loading)."""
    return tf.as_dtype(storage_dtype(precision))


def math_dtype(precision: str) -> tf.DType:
    """The dtype every layer computes in: amp-* casts float32 variables per call, as a Keras
    mixed-precision policy ("mixed_bfloat16" / "mixed_float16") does."""
    return tf.as_dtype(compute_dtype(precision))


def _gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def resolve_device(requested: str) -> str:
    """"auto" -> "cuda" when TF sees a GPU, else "cpu"; an absent cuda is BackendUnavailable."""
    if requested not in DEVICES:
        raise UsageError(f"unknown device {requested!r}; choose from {', '.join(DEVICES)}")
    gpus = _gpus()
    if requested == "cuda" and not gpus:
        build = "a CUDA build" if tf.test.is_built_with_cuda() else "a CPU-only build"
        raise BackendUnavailable(f"device 'cuda' requested but tensorflow {tf.__version__} "
                                 f"({build}) sees no GPU; use --device cpu or auto")
    if requested == "cuda" or (requested == "auto" and gpus):
        _allow_memory_growth(gpus)
        return "cuda"
    return "cpu"


def tf_device_name(device: str) -> str:
    return "/GPU:0" if device == "cuda" else "/CPU:0"


def _allow_memory_growth(gpus: list) -> None:
    # Without growth TF reserves almost all GPU memory at start-up, starving torch when parity
    # runs both frameworks in one process. Only possible before the GPU is initialised.
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)


def check_precision(precision: str, device: str) -> None:
    """Refuse precisions this device cannot honour (TF32 is a tensor-core mode of CUDA GPUs)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "tf32" and device != "cuda":
        raise UsageError("precision 'tf32' needs a CUDA GPU (TF32 is a tensor-core mode); "
                         "use fp32 on the CPU")


@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[None]:
    """Set the process-global TF32 switch for this backend's forward passes.

    TensorFlow enables TF32 by default on Ampere and newer; fp32 must switch it *off*.
    Reduced precisions are handled by the model's compute dtype, not here.
    """
    tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")
    yield


def configure_threads(threads: int | None) -> str | None:
    """Request intra-op threads; returns a note when TF was already initialised and kept its own."""
    if threads is None:
        return None
    if threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        effective = tf.config.threading.get_intra_op_parallelism_threads()
        if effective == threads:
            return None
        return (f"requested {threads} intra-op threads but TensorFlow was already initialised "
                f"with {effective or 'its default'}; set threads before the first TF backend")
    return None


def environment(device: str, options: RunOptions, compile_mode: str | None,
                threads_note: str | None) -> dict[str, Any]:
    """What a result depends on: versions, device, precision flags, threads, compilation."""
    build = tf.sysconfig.get_build_info()
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    env: dict[str, Any] = {
        "framework": "tensorflow",
        "framework_version": tf.__version__,
        "device": device,
        "device_name": "cpu",
        "precision": options.precision,
        "weights_dtype": storage_dtype(options.precision),
        "compute_dtype": compute_dtype(options.precision),
        "autocast": options.precision.startswith("amp-"),
        # The switch precision_scope() sets around every forward of this backend.
        "tf32": options.precision == "tf32",
        # 0 = TensorFlow's default pool size (one thread per core).
        "intra_op_threads": intra or None,
        "inter_op_threads": inter or None,
        "compile": compile_mode,
        "channels_last": True,  # TF convolutions here are always NHWC
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "driver": None,
        # oneDNN kernels change CPU speed a lot (fc6's 7x7x512x4096 conv ran ~5x slower with
        # them on this project's CPU) and slightly change rounding; record the switch.
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    }
    if threads_note:
        env["threads_note"] = threads_note
    if device == "cuda":
        details = tf.config.experimental.get_device_details(_gpus()[0])
        env["device_name"] = details.get("device_name", "GPU")
        capability = details.get("compute_capability")
        if capability:
            env["compute_capability"] = ".".join(str(part) for part in capability)
        env["driver"] = nvidia_driver_version()
    return env
