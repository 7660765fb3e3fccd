"""Writing .caffemodel fixtures for the tests: the protobuf encoder matching bench/weights/caffe.py.

Test tooling only (moved out of the package): varints, length-delimited fields, legacy V1 layers,
legacy 4-D dims, double data and unknown fields of every wire type, so the reader can be checked
against every encoding Caffe files use. Big arrays are streamed to the file, never joined.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench.core.atomic import atomic_path
from bench.weights.caffe import (
    BLOB_CHANNELS,
    BLOB_DATA,
    BLOB_DOUBLE_DATA,
    BLOB_HEIGHT,
    BLOB_NUM,
    BLOB_SHAPE,
    BLOB_WIDTH,
    LAYER_BLOBS,
    LAYER_NAME,
    LAYER_TYPE,
    NET_LAYER,
    NET_LAYERS_V1,
    SHAPE_DIM,
    V1_BLOBS,
    V1_LAYER_TYPES,
    V1_NAME,
    V1_TYPE,
)
from bench.weights.protobuf_wire import END_GROUP, FIXED32, FIXED64, LENGTH, START_GROUP, VARINT

_V1_TYPE_NUMBERS = {name: number for number, name in V1_LAYER_TYPES.items()}


# A message is a list of byte chunks (bytes, or byte views of numpy arrays: never joined).
_Chunks = list


def encode_varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return encode_varint((number << 3) | wire)


def _nbytes(chunks: _Chunks) -> int:
    return sum(chunk.nbytes if isinstance(chunk, memoryview) else len(chunk) for chunk in chunks)


def _length_field(number: int, chunks: _Chunks) -> _Chunks:
    return [_key(number, LENGTH) + encode_varint(_nbytes(chunks)), *chunks]


def _unknown_fields() -> bytes:
    """One field of every wire type under numbers no Caffe message uses (readers must skip)."""
    group = _key(995, START_GROUP) + _key(1, VARINT) + encode_varint(7) + _key(995, END_GROUP)
    return (_key(999, VARINT) + encode_varint(300) + _key(998, FIXED64) + bytes(8)
            + _key(997, LENGTH) + encode_varint(7) + b"skip me" + _key(996, FIXED32)
            + bytes(4) + group)


def _array_bytes(values: np.ndarray, dtype: str) -> memoryview:
    return memoryview(np.ascontiguousarray(values, dtype=dtype).reshape(-1)).cast("B")


def _encode_repeated(number: int, values: np.ndarray, dtype: str, packed: bool) -> _Chunks:
    if packed:
        return _length_field(number, [_array_bytes(values, dtype)])
    width = np.dtype(dtype).itemsize
    key = _key(number, FIXED32 if width == 4 else FIXED64)
    rows = np.empty((values.size, len(key) + width), np.uint8)
    rows[:, :len(key)] = np.frombuffer(key, np.uint8)
    rows[:, len(key):] = np.ascontiguousarray(values, dtype=dtype).reshape(-1, 1).view(np.uint8)
    return [memoryview(rows.reshape(-1))]


def encode_blob(array: np.ndarray, *, packed: bool = True, legacy_dims: bool = False,
                double: bool = False, unknown_fields: bool = False) -> _Chunks:
    """BlobProto chunks: shape (BlobShape, or legacy num/channels/height/width) and data."""
    array = np.asarray(array)
    chunks: _Chunks = []
    if unknown_fields:
        chunks.append(_unknown_fields())
    if legacy_dims:
        if array.ndim > 4:
            raise ValueError(f"legacy 4-D dims cannot hold a {array.ndim}-D blob")
        dims = (1,) * (4 - array.ndim) + array.shape  # [64] -> 1x1x1x64, [O, I] -> 1x1xOxI
        for number, dim in zip((BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH), dims,
                               strict=True):
            chunks.append(_key(number, VARINT) + encode_varint(dim))
    else:
        if packed:
            shape = _key(SHAPE_DIM, LENGTH) + encode_varint(
                len(b"".join(encode_varint(d) for d in array.shape))) + b"".join(
                encode_varint(d) for d in array.shape)
        else:
            shape = b"".join(_key(SHAPE_DIM, VARINT) + encode_varint(d) for d in array.shape)
        if unknown_fields:
            shape += _unknown_fields()
        chunks += _length_field(BLOB_SHAPE, [shape])
    if double:
        chunks += _encode_repeated(BLOB_DOUBLE_DATA, array, "<f8", packed)
    else:
        chunks += _encode_repeated(BLOB_DATA, array, "<f4", packed)
    return chunks


def encode_layer(name: str, type_name: str, blobs: Iterable[np.ndarray], *,
                 legacy_v1: bool = False, unknown_fields: bool = False,
                 **blob_options: bool) -> _Chunks:
    """LayerParameter (or V1LayerParameter with `legacy_v1`) chunks, blobs included."""
    chunks: _Chunks = [_unknown_fields()] if unknown_fields else []
    if legacy_v1:
        if type_name not in _V1_TYPE_NUMBERS:
            raise ValueError(f"no V1 layer type for {type_name!r}")
        chunks += _length_field(V1_NAME, [name.encode()])
        chunks.append(_key(V1_TYPE, VARINT) + encode_varint(_V1_TYPE_NUMBERS[type_name]))
    else:
        chunks += _length_field(LAYER_NAME, [name.encode()])
        chunks += _length_field(LAYER_TYPE, [type_name.encode()])
    blobs_field = V1_BLOBS if legacy_v1 else LAYER_BLOBS
    for blob in blobs:
        chunks += _length_field(blobs_field, encode_blob(blob, unknown_fields=unknown_fields,
                                                         **blob_options))
    return chunks


def write_caffemodel(path: str | Path, layers: Iterable[tuple[str, str, Iterable[np.ndarray]]],
                     *, legacy_v1: bool = False, packed: bool = True, legacy_dims: bool = False,
                     double: bool = False, unknown_fields: bool = False,
                     net_name: str = "net") -> Path:
    """Write a NetParameter .caffemodel from (name, type, blobs) triples, atomically.

    legacy_v1     write V1 `layers` (field 2, enum types: "Convolution", "InnerProduct"...)
                  instead of new-style `layer` (field 100, string types)
    packed        packed repeated floats/dims (what Caffe writes) or one field per element
    legacy_dims   legacy num/channels/height/width instead of `shape` (blobs padded to 4-D
                  with leading 1s, like the 2014 VGG16 file: fc weights as 1x1x4096x25088)
    double        store values in double_data instead of data
    unknown_fields  add a field of every wire type to each message (readers must skip them)
    Big arrays are streamed from numpy to the file, never joined into one bytes object.
    """
    options = {"packed": packed, "legacy_dims": legacy_dims, "double": double}
    net_field = NET_LAYERS_V1 if legacy_v1 else NET_LAYER
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(b"".join(_length_field(1, [net_name.encode()])))  # NetParameter.name
        if unknown_fields:
            out.write(_unknown_fields())
        for name, type_name, blobs in layers:
            layer = encode_layer(name, type_name, blobs, legacy_v1=legacy_v1,
                                 unknown_fields=unknown_fields, **options)
            for chunk in _length_field(net_field, layer):
                out.write(chunk)
    return Path(path)
