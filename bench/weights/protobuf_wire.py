"""The protobuf wire format, decoded by hand over a memory-mapped file: varints, fields of every
wire type, (deprecated) groups skipped iteratively, and runs of unpacked fixed-width scalars
decoded at once with numpy. Positions are absolute byte offsets into the mapping; a field that
runs past its enclosing message raises OutOfBounds, malformed bytes Corrupt (bench/weights/caffe.py
turns both into one WeightsError naming the file and the byte). The messages and fields read:
docs/fidelity.md "The caffemodel format".
"""

from __future__ import annotations

import numpy as np

# Wire types.
VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5


class OutOfBounds(Exception):
    """A field needs bytes up to `needed` but its enclosing message ends earlier."""

    def __init__(self, needed: int, payload_start: int | None = None):
        super().__init__(needed)
        self.needed = needed
        self.payload_start = payload_start


class Corrupt(Exception):
    def __init__(self, pos: int, problem: str):
        super().__init__(problem)
        self.pos = pos
        self.problem = problem


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`: (value, position after it)."""
    result = shift = 0
    while True:
        if pos >= end:
            raise OutOfBounds(pos + 1)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Corrupt(pos, "varint longer than 10 bytes")


def read_field(buf: memoryview, pos: int, end: int) -> tuple[int, int, int, int, int]:
    """Read the field at `pos`: (number, wire type, value, payload start, next position).

    For VARINT `value` is the integer; for FIXED32/FIXED64/LENGTH it is the payload end (the
    payload is buf[start:value]); START_GROUP fields are skipped whole and come back as
    (number, START_GROUP, 0, pos, next).
    """
    key, start = read_varint(buf, pos, end)
    number, wire = key >> 3, key & 7
    if number == 0:
        raise Corrupt(pos, "field number 0")
    if wire == VARINT:
        value, after = read_varint(buf, start, end)
        return number, wire, value, start, after
    if wire == FIXED64:
        stop = start + 8
    elif wire == FIXED32:
        stop = start + 4
    elif wire == LENGTH:
        length, start = read_varint(buf, start, end)
        stop = start + length
    elif wire == START_GROUP:
        return number, wire, 0, start, skip_group(buf, start, end, number)
    else:
        raise Corrupt(pos, f"invalid wire type {wire} for field {number}")
    if stop > end:
        raise OutOfBounds(stop, start)
    return number, wire, stop, start, stop


# Groups are a deprecated protobuf feature no Caffe message uses; a hostile file can still nest
# them. They are skipped iteratively (no recursion) and refused beyond this depth.
MAX_GROUP_DEPTH = 64


def skip_group(buf: memoryview, pos: int, end: int, number: int) -> int:
    """Skip a (deprecated) group up to and including its END_GROUP tag, nested groups too."""
    open_groups = [number]
    while open_groups:
        if pos >= end:
            raise OutOfBounds(pos + 1)
        key, after = read_varint(buf, pos, end)
        inner, wire = key >> 3, key & 7
        if wire == END_GROUP:
            if inner != open_groups[-1]:
                raise Corrupt(pos, f"group {open_groups[-1]} closed by end-group {inner}")
            open_groups.pop()
            pos = after
        elif wire == START_GROUP:
            if inner == 0:
                raise Corrupt(pos, "field number 0")
            if len(open_groups) >= MAX_GROUP_DEPTH:
                raise Corrupt(pos, f"groups nested more than {MAX_GROUP_DEPTH} deep")
            open_groups.append(inner)
            pos = after
        else:
            pos = read_field(buf, pos, end)[4]
    return pos


def read_string(buf: memoryview, start: int, stop: int) -> str:
    return bytes(buf[start:stop]).decode("utf-8", errors="replace")


def scalar_run(buf: memoryview, pos: int, end: int, tag: int, width: int,
                dtype: str) -> tuple[np.ndarray, int]:
    """Decode a run of unpacked repeated fixed-width scalars (`tag` byte + `width` bytes each).

    Unpacked floats repeat tag 0x2D before every element; decoding them one field at a time in
    Python would take minutes for a 100M-element blob, so the run is found and decoded at once
    with numpy: rows of (1 + width) bytes while the first byte of a row is still `tag`.
    """
    stride = 1 + width
    rows = (end - pos) // stride
    table = np.frombuffer(buf, np.uint8, rows * stride, pos).reshape(rows, stride)
    not_tag = table[:, 0] != tag
    count = int(np.argmax(not_tag)) if not_tag.any() else rows
    values = np.ascontiguousarray(table[:count, 1:]).view(dtype).reshape(count)
    return values, pos + count * stride
