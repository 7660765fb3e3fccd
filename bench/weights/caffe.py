"""Reading .caffemodel files: the protobuf wire format by hand.

No Caffe, no compiled caffe.proto, no `protobuf` package: varints, length-delimited fields and
fixed32/64 are decoded by bench/weights/protobuf_wire.py, with the field numbers of BVLC/caffe
src/caffe/proto/caffe.proto.
The writer of test fixtures is tests/weights/caffe_writer.py.
Stdlib + numpy only.

Why by hand: the files are > 500 MB (protobuf warns about "dangerously large" messages and some
builds refuse them) and we only need names and blobs. The file is memory-mapped and walked with
offsets; each float array is decoded as an `np.frombuffer` view of the mapping and copied once
into its output array, so a 550 MB file costs its blobs once in memory, not twice.

Messages and fields used (everything else, of every wire type, is skipped):
  NetParameter      layer 100 (LayerParameter), layers 2 (legacy V1LayerParameter)
  LayerParameter    name 1, type 2 (string), blobs 7
  V1LayerParameter  name 4, type 5 (LayerType enum), blobs 6, layer 1 (V0LayerParameter:
                    name 1, type 2 string, blobs 50)
  BlobProto         shape 7 (BlobShape: dim 1, int64, packed or not), legacy num 1, channels 2,
                    height 3, width 4; data 5 (float, packed or one fixed32 per element),
                    double_data 8 (double, packed or not; converted to float32)
(docs/fidelity.md "The caffemodel format").
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.core.errors import WeightsError
from bench.weights.header import reading_weights_file
from bench.weights.protobuf_wire import (
    FIXED32,
    FIXED64,
    LENGTH,
    VARINT,
    Corrupt,
    OutOfBounds,
    read_field,
    read_string,
    read_varint,
    scalar_run,
)
from bench.weights.sniff import HEAD_BYTES, sniff_bytes

# NetParameter / LayerParameter / V1LayerParameter / V0LayerParameter / BlobProto field numbers.
NET_LAYER, NET_LAYERS_V1 = 100, 2
LAYER_NAME, LAYER_TYPE, LAYER_BLOBS = 1, 2, 7
V1_NAME, V1_TYPE, V1_BLOBS, V1_V0_LAYER = 4, 5, 6, 1
V0_NAME, V0_TYPE, V0_BLOBS = 1, 2, 50
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH = 1, 2, 3, 4
BLOB_DATA, BLOB_SHAPE, BLOB_DOUBLE_DATA = 5, 7, 8
SHAPE_DIM = 1

# V1LayerParameter.LayerType -> the new-style type string (caffe.proto, upgrade_proto.cpp).
V1_LAYER_TYPES = {
    0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data",
    6: "Dropout", 7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output",
    11: "Im2col", 12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN",
    16: "MultinomialLogisticLoss", 17: "Pooling", 18: "ReLU", 19: "Sigmoid", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 23: "TanH", 24: "WindowData", 25: "Eltwise",
    26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss", 29: "MemoryData",
    30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN", 35: "AbsVal",
    36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}
# V0 (pre-2014) type strings that matter for weights -> new-style names.
_V0_TYPES = {"conv": "Convolution", "innerproduct": "InnerProduct", "pool": "Pooling",
             "relu": "ReLU", "dropout": "Dropout", "softmax": "Softmax"}


class CaffeLayer(NamedTuple):
    """One layer of a caffemodel: its name, type string and parameter blobs (float32 arrays,
    shaped as stored: `shape.dim`, or legacy [num, channels, height, width])."""

    name: str
    type: str
    blobs: list[np.ndarray]
    offset: int = 0  # byte offset of the layer message in the file (for error messages)


# BlobShape dims: at most kMaxBlobAxes = 32 (Caffe include/caffe/blob.hpp; the FCN blobs have 4
# at most); docs/fidelity.md "The caffemodel format".
MAX_BLOB_AXES = 32


# ----------------------------------------------------------------------------------------------
# Messages


def _parse_shape(buf: memoryview, start: int, stop: int) -> list[int]:
    dims: list[int] = []
    pos = start
    while pos < stop:
        number, wire, value, begin, pos = read_field(buf, pos, stop)
        if number != SHAPE_DIM:
            continue
        if wire == VARINT:
            dims.append(value)
        elif wire == LENGTH:  # packed
            inner = begin
            while inner < value:
                dim, inner = read_varint(buf, inner, value)
                dims.append(dim)
        if len(dims) > MAX_BLOB_AXES:
            raise Corrupt(begin, f"blob shape has more than {MAX_BLOB_AXES} axes")
    return dims


def _parse_blob(buf: memoryview, start: int, stop: int,
                release: Callable[[int], Any] | None = None) -> np.ndarray:
    """BlobProto -> float32 array shaped as stored (one copy out of the mapping).

    `release(pos)` is told after each slice of the copy that the bytes before `pos` are no
    longer needed, so the mapped pages of a 400 MB blob do not stay resident beside its copy.
    """
    dims: list[int] | None = None
    legacy: dict[int, int] = {}
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    pos = start
    while pos < stop:
        tag = buf[pos]
        # Unpacked repeated data: decode the whole run of single-byte-tagged elements at once.
        # (An empty run means a cut-off element: left to read_field below, which reports it.)
        if tag == (BLOB_DATA << 3) | FIXED32 and stop - pos >= 5:
            run, pos = scalar_run(buf, pos, stop, tag, 4, "<f4")
            floats.append(run)
            continue
        if tag == (BLOB_DOUBLE_DATA << 3) | FIXED64 and stop - pos >= 9:
            run, pos = scalar_run(buf, pos, stop, tag, 8, "<f8")
            doubles.append(run)
            continue
        field_pos = pos
        number, wire, value, begin, pos = read_field(buf, pos, stop)
        if number == BLOB_SHAPE and wire == LENGTH:
            dims = _parse_shape(buf, begin, value)
        elif number in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH) and wire == VARINT:
            legacy[number] = value
        elif number in (BLOB_DATA, BLOB_DOUBLE_DATA) and wire == LENGTH:  # packed
            width = 4 if number == BLOB_DATA else 8
            if (value - begin) % width:
                raise Corrupt(field_pos, f"packed {'float' if width == 4 else 'double'} data "
                               f"of {value - begin} bytes is not a multiple of {width}")
            view = np.frombuffer(buf, "<f4" if width == 4 else "<f8", (value - begin) // width,
                                 begin)
            (floats if width == 4 else doubles).append(view)
    # Caffe's Blob::FromProto: the legacy num/channels/height/width win whenever any of them is
    # present (absent ones count 0), else shape.dim; and double_data is read when it holds
    # values, else data (docs/fidelity.md "The caffemodel format").
    if legacy:
        dims = [legacy.get(n, 0) for n in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH)]
    chunks = doubles if any(len(chunk) for chunk in doubles) else floats
    count = sum(len(chunk) for chunk in chunks)
    if dims is None:
        dims = [count]
    if math.prod(dims) != count:
        raise Corrupt(start, f"blob has {count} values but its shape {dims} needs "
                       f"{math.prod(dims)}")
    out = np.empty(count, np.float32)  # the one copy out of the mapping
    offset = 0
    for chunk in chunks:
        for first in range(0, len(chunk), _COPY_SLICE):
            piece = chunk[first:first + _COPY_SLICE]
            out[offset:offset + len(piece)] = piece
            offset += len(piece)
            if release is not None and piece.base is not None:
                release(_view_end(buf, piece))
    return out.reshape(dims)


def _view_end(buf: memoryview, view: np.ndarray) -> int:
    """Absolute file offset just after a numpy view of the mapping."""
    return view.__array_interface__["data"][0] + view.nbytes - _address(buf)


def _address(buf: memoryview) -> int:
    return np.frombuffer(buf, np.uint8, 0).__array_interface__["data"][0]


# Elements copied between two page releases (64 MiB of float32).
_COPY_SLICE = 16 * 2**20


class _LayerFields(NamedTuple):
    name: str | None
    type: str
    blob_ranges: list[tuple[int, int]]


# Field numbers of the three layer messages: (name, type, blobs, type wire type).
_LAYER_FIELDS = {
    "layer": (LAYER_NAME, LAYER_TYPE, LAYER_BLOBS, LENGTH),  # LayerParameter: type a string
    "v1": (V1_NAME, V1_TYPE, V1_BLOBS, VARINT),  # V1LayerParameter: type an enum
    "v0": (V0_NAME, V0_TYPE, V0_BLOBS, LENGTH),  # V0LayerParameter (inside a V1 layer)
}


def _scan_layer(buf: memoryview, start: int, stop: int, message: str) -> _LayerFields:
    """Name, type and blob byte ranges of a layer message ("layer", "v1" or "v0", see
    _LAYER_FIELDS), without decoding blobs."""
    name_field, type_field, blobs_field, type_wire = _LAYER_FIELDS[message]
    name: str | None = None
    type_name = ""
    blobs: list[tuple[int, int]] = []
    v0: _LayerFields | None = None
    pos = start
    while pos < stop:
        number, wire, value, begin, pos = read_field(buf, pos, stop)
        if number == name_field and wire == LENGTH:
            name = read_string(buf, begin, value)
        elif number == type_field and wire == type_wire == VARINT:
            type_name = V1_LAYER_TYPES.get(value, f"V1LayerType{value}")
        elif number == type_field and wire == type_wire == LENGTH:
            raw = read_string(buf, begin, value)
            type_name = _V0_TYPES.get(raw, raw) if message == "v0" else raw
        elif number == blobs_field and wire == LENGTH:
            blobs.append((begin, value))
        elif message == "v1" and number == V1_V0_LAYER and wire == LENGTH:
            v0 = _scan_layer(buf, begin, value, "v0")
    if v0 is not None:  # a V1 layer wrapping an older V0 layer: fill what V1 left empty
        name = name or v0.name
        type_name = type_name or v0.type
        blobs = blobs or v0.blob_ranges
    return _LayerFields(name, type_name, blobs)


def _partial_name(buf: memoryview, start: int, end: int, legacy: bool) -> str | None:
    """Best-effort name of a layer whose message is cut off by the end of the file."""
    name_field = V1_NAME if legacy else LAYER_NAME
    pos = start
    try:
        while pos < end:
            number, wire, value, begin, pos = read_field(buf, pos, end)
            if number == name_field and wire == LENGTH:
                return read_string(buf, begin, value)
            if legacy and number == V1_V0_LAYER and wire == LENGTH:
                return _scan_layer(buf, begin, value, "v0").name
    except (OutOfBounds, Corrupt):
        return None
    return None


# ----------------------------------------------------------------------------------------------
# Public reader


def read_caffemodel(path: str | Path,
                    progress: Callable[[int], Any] | None = None) -> Iterator[CaffeLayer]:
    """Yield every layer of a .caffemodel (new `layer` and legacy V1 `layers`) in file order.

    Streaming: the file is memory-mapped, each layer's blobs are decoded when it is reached, and
    pages already consumed are released, so resident memory stays near the size of the arrays
    the caller keeps. `progress(bytes_done)` is called after each layer with the absolute offset.
    A truncated or corrupt file raises WeightsError naming the file, the byte and the layer.
    """
    path = Path(path)
    with reading_weights_file(path, "a .caffemodel file"):
        handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below (generator)
    mapping: mmap.mmap | None = None
    buf: memoryview | None = None
    try:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise WeightsError(path, "empty file, not a Caffe model")
        kind = sniff_bytes(handle.read(HEAD_BYTES), size, path)
        if kind.kind != "caffemodel":
            # Protobuf has no magic: without this, a JPEG reads as "invalid wire type 7 for
            # field 25427343" and random bytes as "truncated at byte ...".
            what = ("does not look like" if kind.kind == "unknown"
                    else f"is {kind.description}, not")
            raise WeightsError(path, f"{what} a Caffe model (protobuf NetParameter), judging "
                                     "by its first bytes")
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        buf = memoryview(mapping)
        yield from _walk_net(path, buf, size, mapping, progress)
    finally:
        if buf is not None:
            buf.release()
        if mapping is not None:
            # A view may still be referenced by a traceback; then the GC closes the mapping.
            with contextlib.suppress(BufferError):
                mapping.close()
        handle.close()


def _walk_net(path: Path, buf: memoryview, size: int, mapping: mmap.mmap,
              progress: Callable[[int], Any] | None) -> Iterator[CaffeLayer]:
    pos = 0
    index = 0
    release = _PageReleaser(mapping)
    while pos < size:
        field_pos = pos
        try:
            number, wire, value, begin, pos = read_field(buf, pos, size)
        except OutOfBounds as error:
            legacy = _peek_number(buf, field_pos, size) == NET_LAYERS_V1
            where = ""
            if error.payload_start is not None and _peek_number(buf, field_pos, size) in (
                    NET_LAYER, NET_LAYERS_V1):
                name = _partial_name(buf, error.payload_start, size, legacy)
                where = f" inside layer {name!r}" if name else f" inside layer #{index + 1}"
            raise WeightsError(path, f"truncated at byte {size}{where} (the field starting at "
                               f"byte {field_pos} runs to byte {error.needed}); download it "
                               "again") from None
        except Corrupt as error:
            raise WeightsError(path, f"corrupt at byte {error.pos} ({error.problem}); not a "
                               "Caffe model or a damaged one") from None
        if wire != LENGTH or number not in (NET_LAYER, NET_LAYERS_V1):
            continue  # name, input, input_dim, state... and unknown fields
        index += 1
        legacy = number == NET_LAYERS_V1
        layer = _decode_layer(path, buf, begin, value, legacy, index, field_pos, release)
        release(pos)
        yield layer
        if progress is not None:
            progress(pos)


class _PageReleaser:
    """Drops mapped pages already copied out (madvise DONTNEED on a read-only file mapping just
    forgets them; they would be re-read from the file if touched again). Without it a 550 MB
    file would stay resident next to the arrays decoded from it."""

    def __init__(self, mapping: mmap.mmap):
        self.mapping = mapping
        self.released = 0
        self.enabled = hasattr(mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED")

    def __call__(self, pos: int) -> None:
        page_end = (pos // mmap.PAGESIZE) * mmap.PAGESIZE
        if self.enabled and page_end > self.released:
            self.mapping.madvise(mmap.MADV_DONTNEED, self.released, page_end - self.released)
            self.released = page_end


def _peek_number(buf: memoryview, pos: int, end: int) -> int | None:
    try:
        return read_varint(buf, pos, end)[0] >> 3
    except (OutOfBounds, Corrupt):
        return None


def _decode_layer(path: Path, buf: memoryview, start: int, stop: int, legacy: bool, index: int,
                  offset: int, release: Callable[[int], Any] | None = None) -> CaffeLayer:
    label = f"layer #{index}"
    try:
        fields = _scan_layer(buf, start, stop, "v1" if legacy else "layer")
        label = f"layer {fields.name!r}" if fields.name else label
        blobs = []
        for blob_start, blob_stop in fields.blob_ranges:
            blobs.append(_parse_blob(buf, blob_start, blob_stop, release))
    except OutOfBounds as error:
        raise WeightsError(path, f"corrupt inside {label} (starting at byte {offset}): a field "
                           f"runs to byte {error.needed}, past the end of its message at byte "
                           f"{stop}") from None
    except Corrupt as error:
        raise WeightsError(path, f"corrupt at byte {error.pos} inside {label}: "
                           f"{error.problem}") from None
    return CaffeLayer(fields.name or f"#{index}", fields.type, blobs, offset)
