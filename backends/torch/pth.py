"""Reading PyTorch .pth state dicts into numpy for `bench.weights.convert`, safely. Imports torch.

Only `torch.load(..., weights_only=True)` is used: a file that needs arbitrary unpickling (a
custom class, a whole pickled nn.Module) is refused with a WeightsError, never executed. Before
torch sees a zip-format file its central directory is checked (`check_pth_zip`): member count,
declared sizes (zip bombs) and odd members are bounded, so a crafted file costs little.
Limits: docs/security.md, "Checkpoints, caches and .pth files".
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.errors import WeightsError
from bench.weights.sniff import ZIP_SIGNATURE

# Checkpoint containers whose tensors live one level down (WK-PT trainer, Lightning, common
# training scripts); a plain state dict is used as it is.
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model")

# torch.save writes one member per tensor storage plus ~7 small ones (data.pkl, version, ...):
# VGG16 has 32. The central directory of 10,000 members is under 1 MiB.
MAX_PTH_MEMBERS = 10_000
MAX_PTH_DIRECTORY_BYTES = 4 * 2**20
# The largest .pth fcn-bench converts is VGG16 or an FCN in float32 (~550 MB; float64 ~1.1 GB).
MAX_PTH_UNCOMPRESSED = 2 * 2**30
# torch.save stores members uncompressed; a deflated file may expand this much (zip bombs).
MAX_PTH_EXPANSION = 16
MAX_PTH_PICKLE_BYTES = 64 * 2**20  # data.pkl of a state dict: a few KB per hundred tensors
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (APPNOTE.TXT 4.3.16)
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 4.3.15
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 4.3.14


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a .pth file as numpy arrays (floating tensors as float32), by key.

    Accepts a plain state dict (torchvision model zoo, `torch.save(model.state_dict())`, old
    non-zip files included) or a checkpoint dict holding one under `state_dict` /
    `model_state_dict` / `model`. A `module.` prefix (DataParallel) is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "no such file" if not path.exists() else "not a regular file")
    try:
        with open(path, "rb") as handle:
            is_zip = handle.read(len(ZIP_SIGNATURE)) == ZIP_SIGNATURE
        if is_zip:
            check_pth_zip(path)
        else:
            check_legacy_storages(path)
    except OSError as error:
        raise WeightsError(path, f"unreadable: {error.strerror or error}") from None
    try:
        with warnings.catch_warnings():
            # torch warns about odd files (an unusual pickle protocol...) in several lines; the
            # user gets one line from fcn-bench instead.
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _refused(path, str(error)) from None
    except MemoryError:
        raise WeightsError(path, "too large to load into memory (it declares more tensor data "
                                 "than this machine can hold)") from None
    except Exception as error:  # torch reading untrusted bytes: any failure is the file
        raise _unreadable(path, error) from None
    state = _find_state_dict(path, loaded)
    arrays: dict[str, np.ndarray] = {}
    for key, tensor in state.items():
        name = key.removeprefix("module.")
        try:
            if tensor.is_floating_point():
                # bf16/fp16/fp64 have no lossless float32-free numpy path; the archive is float32.
                arrays[name] = tensor.detach().to(torch.float32).contiguous().numpy()
            else:
                arrays[name] = tensor.detach().contiguous().numpy()
        except (RuntimeError, TypeError, ValueError) as error:  # sparse, quantized, meta...
            raise WeightsError(path, f"tensor {key!s:.80} ({tensor.dtype}, {tensor.layout}) has "
                               f"no numpy form: {_first_line(error)}") from None
    return arrays


def _refused(path: Path, message: str) -> WeightsError:
    """torch's weights_only loader refused the pickle: name what it refused, in one line."""
    culprit = re.search(r"GLOBAL (\S+)", message)
    if culprit:
        return WeightsError(path, "refused: the file needs arbitrary unpickling (it pickles "
                            f"objects other than tensors, e.g. {culprit.group(1)[:80]}, which "
                            "could run code); save a plain state dict with "
                            "torch.save(model.state_dict(), path)")
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", message)
    what = detail.group(1) if detail else _first_line(pickle.UnpicklingError(message))
    return WeightsError(path, f"refused by torch's safe loader (weights_only): {what[:120]}; "
                        "the pickle is damaged or holds more than tensors (fcn-bench never "
                        "unpickles it otherwise); save a plain state dict with "
                        "torch.save(model.state_dict(), path)")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.split(". ")[0].splitlines()[0][:200] if text else ""


def _unreadable(path: Path, error: BaseException) -> WeightsError:
    return WeightsError(path, "not a readable PyTorch file (truncated or corrupt?): "
                        f"{type(error).__name__}: {_first_line(error)}")


def check_pth_zip(path: Path) -> None:
    """Refuse a zip-format .pth whose central directory promises more than a state dict needs:
    too many members or directory bytes (checked from the end record before it is parsed), more
    uncompressed bytes than MAX_PTH_UNCOMPRESSED or MAX_PTH_EXPANSION times the file (zip
    bombs), encrypted or unusually compressed members, names that are absolute, contain `..`,
    repeat (readers disagree on which copy counts) or leave the one top folder torch.save
    writes, members that run past the file, and a missing or oversized data.pkl."""
    size = path.stat().st_size
    members, directory_bytes = _central_directory_size(path, size)
    if members > MAX_PTH_MEMBERS or directory_bytes > MAX_PTH_DIRECTORY_BYTES:
        raise WeightsError(path, f"its zip directory lists {members:,} members in "
                           f"{directory_bytes:,} bytes; a state dict needs far fewer (at most "
                           f"{MAX_PTH_MEMBERS:,} members are read)")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as error:
        raise _unreadable(path, error) from None
    _check_members(path, infos, size)


def _central_directory_size(path: Path, size: int) -> tuple[int, int]:
    """(members, directory bytes) from the end-of-central-directory record (zip64 too)."""
    tail_size = min(size, _EOCD.size + 0xFFFF)  # the record ends with a comment of <= 64 KiB
    with open(path, "rb") as handle:
        handle.seek(size - tail_size)
        tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise WeightsError(path, "not a readable PyTorch file (truncated or corrupt?): the zip's "
                                 "end record is missing")
    _, _, _, _, members, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        offset = _ZIP64_LOCATOR.unpack_from(tail, locator)[2]
        with open(path, "rb") as handle:
            handle.seek(min(offset, size))
            record = handle.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or not record.startswith(b"PK\x06\x06"):
            raise WeightsError(path, "not a readable PyTorch file (truncated or corrupt?): its "
                                     "zip64 end record is missing")
        fields = _ZIP64_EOCD.unpack(record)
        members, directory_bytes = max(members, fields[7]), max(directory_bytes, fields[8])
    return members, directory_bytes


def _check_members(path: Path, infos: list[zipfile.ZipInfo], size: int) -> None:
    names = [info.filename for info in infos]
    if not infos:
        raise WeightsError(path, "is an empty zip archive, not a PyTorch file")
    top = names[0].split("/", 1)[0]
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        odd = _odd_name(name, top)
        if odd is None and name in seen:
            odd = "appears twice (zip readers disagree on which copy counts)"
        if odd is None and info.flag_bits & 0x1:
            odd = "is encrypted"
        if odd is None and info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            odd = f"uses compression method {info.compress_type} (torch.save stores members)"
        if odd is None and info.header_offset + info.compress_size > size:
            odd = "runs past the end of the file (truncated?)"
        if odd is not None:
            raise WeightsError(path, f"zip member {name[:80]!r} {odd}; not a file torch.save "
                                     "wrote")
        seen.add(name)
        total += info.file_size
    limit = min(MAX_PTH_UNCOMPRESSED, MAX_PTH_EXPANSION * size)
    if total > limit:
        raise WeightsError(path, f"its members unpack to {total:,} bytes, more than "
                           f"{limit:,} (the smaller of {MAX_PTH_UNCOMPRESSED // 2**30} GiB and "
                           f"{MAX_PTH_EXPANSION}x the file's size); refusing a possible zip bomb")
    pickles = [info for info in infos if info.filename == f"{top}/data.pkl"]
    if not pickles:
        raise WeightsError(path, f"a zip archive without {top}/data.pkl: not a torch.save file")
    if pickles[0].file_size > MAX_PTH_PICKLE_BYTES:
        raise WeightsError(path, f"its data.pkl is {pickles[0].file_size:,} bytes; a state "
                                 f"dict's is far smaller (at most {MAX_PTH_PICKLE_BYTES:,})")


# Bytes per element of the storage classes torch.save names in its persistent ids; an unknown
# one is counted at the largest size (complex128).
_ELEMENT_BYTES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
                  "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
                  "ByteStorage": 1, "BoolStorage": 1, "ComplexFloatStorage": 8,
                  "ComplexDoubleStorage": 16, "UntypedStorage": 1}
_MARK = object()
_MEMO_OPS = ("BINPUT", "LONG_BINPUT", "MEMOIZE")
_LEGACY_PICKLES = 4  # magic number, protocol version, system info, then the state
# A state dict pickles ~30 opcodes per tensor; the bound keeps the memo and stack small.
MAX_PICKLE_OPCODES = 1_000_000


def check_legacy_storages(path: Path) -> None:
    """A pre-1.6 (non-zip) .pth declares each storage's element count in its pickle, and torch
    allocates that much before reading the data: refuse a file whose storages declare more bytes
    than the file holds (a few bytes could otherwise reserve terabytes). Only opcodes are
    decoded (pickletools), nothing is unpickled; the pickles read are bounded."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = io.BytesIO(handle.read(MAX_PTH_PICKLE_BYTES))
    declared: dict[Any, int] = {}
    try:
        for _ in range(_LEGACY_PICKLES):
            for persistent_id in _persistent_ids(head):
                _count_storage(path, persistent_id, declared)
    except (ValueError, EOFError, IndexError, KeyError, TypeError, AttributeError,
            struct.error) as error:
        raise WeightsError(path, "not a readable PyTorch file (truncated or corrupt?): its "
                           f"pickle does not decode: {_first_line(error)}") from None
    total = sum(declared.values())
    if total > size:
        raise WeightsError(path, f"its tensors declare {total:,} bytes of data but the file has "
                                 f"{size:,}; truncated or crafted, refusing to allocate it")


def _count_storage(path: Path, persistent_id: Any, declared: dict[Any, int]) -> None:
    if not (isinstance(persistent_id, tuple) and len(persistent_id) >= 5
            and persistent_id[0] == "storage"):
        return  # torch itself refuses other persistent ids
    _, storage_type, key, _, numel = persistent_id[:5]
    if not isinstance(numel, int) or not 0 <= numel < 2**62:
        raise WeightsError(path, f"storage {str(key)[:40]!r} declares {str(numel)[:40]} elements")
    is_global = (isinstance(storage_type, tuple) and len(storage_type) == 2
                 and storage_type[0] == "global" and isinstance(storage_type[1], str))
    name = storage_type[1].rsplit(" ", 1)[-1].rsplit(".", 1)[-1] if is_global else ""
    declared[key if isinstance(key, (str, int)) else id(persistent_id)] = \
        numel * _ELEMENT_BYTES.get(name, 16)
    if len(declared) > MAX_PTH_MEMBERS:
        raise WeightsError(path, f"more than {MAX_PTH_MEMBERS:,} tensor storages; a state dict "
                                 "needs far fewer")


def _persistent_ids(stream: io.BytesIO) -> list[Any]:
    """The persistent ids of the next pickle in `stream`, by a stack simulation over its opcodes
    that tracks only strings, ints, None, globals and tuples (everything else is opaque)."""
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    found = []
    for count, (op, arg, _) in enumerate(pickletools.genops(stream)):
        if count > MAX_PICKLE_OPCODES:
            raise ValueError(f"more than {MAX_PICKLE_OPCODES:,} pickle opcodes")
        name = op.name
        if name in _MEMO_OPS:
            memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1] if stack else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo.get(arg))
        elif name in ("GLOBAL", "INST"):
            stack.append(("global", str(arg)))
        elif name == "STACK_GLOBAL":
            module_name = stack[-2:] if len(stack) >= 2 else ["?", "?"]
            del stack[-2:]
            stack.append(("global", f"{module_name[0]} {module_name[1]}"))
        elif name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE"):
            stack.append(_pop_tuple(stack, name))
        elif name in ("BINPERSID", "PERSID"):
            found.append(stack.pop() if name == "BINPERSID" else arg)
            stack.append(None)
        elif op.arg is not None and not op.stack_before and len(op.stack_after) == 1 \
                and name not in ("MARK",):
            stack.append(arg)  # a literal: string, bytes, int, float
        else:
            _generic(stack, op)
        if name == "STOP":
            break
    return found


def _pop_tuple(stack: list[Any], name: str) -> tuple[Any, ...]:
    if name == "TUPLE":
        at = _mark_index(stack)
        items = tuple(stack[at + 1:])
        del stack[at:]
        return items
    count = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}[name]
    items = tuple(stack[len(stack) - count:]) if count else ()
    del stack[len(stack) - count:]
    return items


def _mark_index(stack: list[Any]) -> int:
    for at in range(len(stack) - 1, -1, -1):
        if stack[at] is _MARK:
            return at
    raise ValueError("MARK missing")


def _generic(stack: list[Any], op: Any) -> None:
    """Apply an opcode's documented stack effect with opaque values."""
    before = [item.name for item in op.stack_before]
    if "mark" in before:
        del stack[_mark_index(stack):]
        below = before.index("mark")
    else:
        below = len(before)
    if below:
        if below > len(stack):
            raise ValueError(f"{op.name} on a short stack")
        del stack[len(stack) - below:]
    stack.extend(_MARK if item.name == "mark" else None for item in op.stack_after)


def _odd_name(name: str, top: str) -> str | None:
    """Why a member name is not one torch.save writes (`<top>/data.pkl`, `<top>/data/0`...)."""
    if any(ord(char) < 32 or char == "\\" for char in name):
        return "has a control character or backslash in its name"
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "" in parts[1:]:
        return "has an absolute, empty or '..' path"
    if parts[0] != top or len(parts) < 2:
        return f"is outside the archive's one top folder {top[:40]!r}"
    return None


def _find_state_dict(path: Path, loaded: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in _CONTAINER_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping) and _all_tensors(inner):
                return inner
        tensors = {k: v for k, v in loaded.items()
                   if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise WeightsError(path, f"holds a {type(loaded).__name__}, not a state dict of tensors; "
                       "save one with torch.save(model.state_dict(), path)")


def _all_tensors(mapping: Mapping[Any, Any]) -> bool:
    return bool(mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                 for k, v in mapping.items())
