"""Reading PyTorch .pth state dicts into numpy for `bench.convert`, safely. Imports torch.

Only `torch.load(..., weights_only=True)` is used: a file that needs arbitrary unpickling (a
custom class, a whole pickled nn.Module) is refused with a WeightsError, never executed.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import WeightsError

# Checkpoint containers whose tensors live one level down (WK-PT trainer, Lightning, common
# training scripts); a plain state dict is used as it is.
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a .pth file as numpy arrays (floating tensors as float32), by key.

    Accepts a plain state dict (torchvision model zoo, `torch.save(model.state_dict())`, old
    non-zip files included) or a checkpoint dict holding one under `state_dict` /
    `model_state_dict` / `model`. A `module.` prefix (DataParallel) is removed.
    """
    path = Path(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        detail = f", e.g. {culprit.group(1)}" if culprit else ""
        raise WeightsError(path, "refused: the file needs arbitrary unpickling (it pickles "
                           f"objects other than tensors{detail}, which could run code); save a "
                           "plain state dict with torch.save(model.state_dict(), path)") from None
    except FileNotFoundError:
        raise WeightsError(path, "no such file") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        message = str(error).strip().split(". ")[0].splitlines()[0][:200] if str(error).strip() \
            else ""
        raise WeightsError(path, f"not a readable PyTorch file (truncated or corrupt?): "
                           f"{type(error).__name__}: {message}") from None
    state = _find_state_dict(path, loaded)
    arrays: dict[str, np.ndarray] = {}
    for key, tensor in state.items():
        name = key.removeprefix("module.")
        if tensor.is_floating_point():
            # bf16/fp16/fp64 have no lossless float32-free numpy path; the archive is float32.
            arrays[name] = tensor.detach().to(torch.float32).contiguous().numpy()
        else:
            arrays[name] = tensor.detach().contiguous().numpy()
    return arrays


def _find_state_dict(path: Path, loaded: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in _CONTAINER_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping) and _all_tensors(inner):
                return inner
        tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if tensors and isinstance(next(iter(loaded)), str):
            return tensors
    raise WeightsError(path, f"holds a {type(loaded).__name__}, not a state dict of tensors; "
                       "save one with torch.save(model.state_dict(), path)")


def _all_tensors(mapping: Mapping[Any, Any]) -> bool:
    return bool(mapping) and all(isinstance(v, torch.Tensor) for v in mapping.values())
