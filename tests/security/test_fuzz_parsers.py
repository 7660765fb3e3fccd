"""Fuzzing every parser of untrusted bytes (docs/security.md): whatever the input, it returns or
raises the project's own error type, quickly and with bounded allocations (tracemalloc peak).

Inputs are random bytes, mutations of valid files, and structured-but-hostile documents.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.ci.history import load_history
from bench.ci.record_rows import load_side
from bench.core.errors import FcnBenchError, WeightsError
from bench.data.labels import read_label_png
from bench.data.voc import read_sbd_mat
from bench.weights.archive import load_archive, read_header
from bench.weights.caffe import read_caffemodel
from bench.weights.sniff import sniff_bytes
from tests.limits import bounded_allocations
from tests.weights.caffe_writer import encode_varint, write_caffemodel

FUZZ = settings(max_examples=120, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
PEAK_LIMIT = 256 * 2**20  # far above any of these tiny inputs' honest needs




def only_own_errors(function, *args):
    """Run `function`; the project's errors are fine, anything else fails the test."""
    with bounded_allocations():
        try:
            return function(*args)
        except FcnBenchError:
            return None


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """Overwrite bytes at (position mod len, value) and optionally cut the end off."""
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer[:cut] if cut is not None else buffer)


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8)
CUTS = st.none() | st.integers(1, 4000)


# ----------------------------------------------------------------------------------------------
# .caffemodel (protobuf wire format)


def _valid_caffemodel(tmp: Path) -> bytes:
    rng = np.random.default_rng(0)
    path = write_caffemodel(tmp / "seed.caffemodel", [
        ("conv1_1", "Convolution", [rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                    np.zeros(4, np.float32)]),
        ("fc7", "InnerProduct", [np.ones((2, 3), np.float32)])], unknown_fields=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def caffemodel_seed(tmp_path_factory) -> bytes:
    return _valid_caffemodel(tmp_path_factory.mktemp("caffe"))


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_fuzz_caffemodel_mutations(tmp_path, caffemodel_seed, edits, cut):
    path = tmp_path / "m.caffemodel"
    path.write_bytes(mutate(caffemodel_seed, edits, cut))
    only_own_errors(lambda: list(read_caffemodel(path)))


@FUZZ
@given(data=st.binary(min_size=1, max_size=2000))
def test_fuzz_caffemodel_random_bytes(tmp_path, data):
    path = tmp_path / "r.caffemodel"
    path.write_bytes(data)
    only_own_errors(lambda: list(read_caffemodel(path)))


@FUZZ
@given(depth=st.integers(1, 5000), number=st.integers(1, 2**20))
def test_fuzz_caffemodel_nested_groups(tmp_path, depth, number):
    start, end = encode_varint((number << 3) | 3), encode_varint((number << 3) | 4)
    path = tmp_path / "g.caffemodel"
    path.write_bytes(b"\x0a\x01n" + start * depth + end * depth)
    only_own_errors(lambda: list(read_caffemodel(path)))


# ----------------------------------------------------------------------------------------------
# safetensors header

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30)
TENSOR_ENTRY = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "I64", "U8", "BOOL", "X"]) | JSON_SCALARS,
    "shape": st.lists(st.integers(-2, 2**40), max_size=4) | JSON_VALUES,
    "data_offsets": st.lists(st.integers(-2, 2**40), max_size=3) | JSON_VALUES,
})
HEADERS = st.dictionaries(
    st.sampled_from(["__metadata__", "conv1_1.weight", "fc7.bias", "upscore.weight", "x"]),
    TENSOR_ENTRY | JSON_VALUES, max_size=5)


@FUZZ
@given(header=HEADERS, data=st.binary(max_size=64), declared=st.none() | st.integers(0, 2**64 - 1))
def test_fuzz_safetensors_headers(tmp_path, header, data, declared):
    raw = json.dumps(header).encode()
    length = len(raw) if declared is None else declared
    path = tmp_path / "h.safetensors"
    path.write_bytes(length.to_bytes(8, "little") + raw + data)
    only_own_errors(read_header, path)
    only_own_errors(load_archive, path)


@FUZZ
@given(data=st.binary(max_size=600), depth=st.integers(0, 3000))
def test_fuzz_safetensors_raw_header_bytes(tmp_path, data, depth):
    raw = b"[" * depth + data + b"]" * depth
    path = tmp_path / "r.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)
    only_own_errors(load_archive, path)


# ----------------------------------------------------------------------------------------------
# Records given to `compare` and `history`

RECORD_VALUES = st.recursive(
    JSON_SCALARS | st.integers(-10**400, 10**400),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["kind", "rows", "metrics", "confusion_matrix",
                                       "label_maps", "samples_ms", "provenance", "git",
                                       "benchmarks", "stats", "extra_info", "name", "error",
                                       "mean_iou", "variant", "backend", "size"])
                      | st.text(max_size=8), children, max_size=5),
    max_leaves=40)
RECORDS = st.fixed_dictionaries(
    {"schema_version": st.sampled_from([1, 1, 1, 1, 0, 2, "1", None, 1.0]),
     "kind": JSON_SCALARS | st.sampled_from(["evaluate", "latency", "golden"])},
    optional={"rows": RECORD_VALUES, "provenance": RECORD_VALUES, "metrics": RECORD_VALUES,
              "label_maps": st.text(max_size=40).map(lambda t: "zlib+base64:" + t),
              "confusion_matrix": RECORD_VALUES, "samples_ms": RECORD_VALUES})
PYTEST_BENCHMARK = st.fixed_dictionaries(
    {"benchmarks": st.lists(RECORD_VALUES, max_size=3), "machine_info": RECORD_VALUES},
    optional={"commit_info": RECORD_VALUES, "datetime": JSON_SCALARS})


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@FUZZ
@given(doc=RECORDS | PYTEST_BENCHMARK | RECORD_VALUES)
def test_fuzz_records(tmp_path, doc):
    try:
        text = json.dumps(doc)
    except ValueError:
        return  # an integer beyond json's digit limit: covered by the raw-text test
    path = _write_text(tmp_path / "r.json", text)
    only_own_errors(load_side, path)
    only_own_errors(load_history, path)


@FUZZ
@given(text=st.text(max_size=300), depth=st.integers(0, 5000))
def test_fuzz_record_raw_text(tmp_path, text, depth):
    path = _write_text(tmp_path / "t.json", "[" * depth + text + "]" * depth)
    only_own_errors(load_side, path)
    only_own_errors(load_history, path)


# ----------------------------------------------------------------------------------------------
# Label decoding: PNG / TIFF (Pillow), SBD .mat (scipy)

MODES = {"P": np.uint8, "L": np.uint8, "I;16": np.uint16, "I": np.int32, "F": np.float32,
         "RGB": np.uint8, "1": bool}


def _image_bytes(mode: str, values: np.ndarray, fmt: str) -> bytes:
    if mode == "RGB":
        image = Image.fromarray(np.stack([values.astype(np.uint8)] * 3, axis=-1), "RGB")
    elif mode == "1":
        image = Image.fromarray(values.astype(bool))
    else:
        image = Image.fromarray(values.astype(MODES[mode]), mode if mode != "I;16" else None)
    if fmt == "PNG" and mode in ("F",):
        fmt = "TIFF"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


LABEL_VALUES = st.sampled_from([0, 20, 255, 2**31 - 1, 65535, 21, -1])


@FUZZ
@given(mode=st.sampled_from(sorted(MODES)), fmt=st.sampled_from(["PNG", "TIFF"]),
       values=st.lists(LABEL_VALUES, min_size=6, max_size=6), edits=EDITS, cut=CUTS,
       mutated=st.booleans())
@example(mode="I", fmt="TIFF", values=[0, 2**31 - 1, 20, 0, 0, 0], edits=[], cut=None,
         mutated=False)  # a 32-bit TIFF named .png: once a 16 GiB histogram
def test_fuzz_label_images(tmp_path, mode, fmt, values, edits, cut, mutated):
    array = np.array(values, dtype=np.int64).reshape(2, 3)
    if mode in ("P", "L", "RGB"):
        array = np.clip(array, 0, 255)
    elif mode == "I;16":
        array = np.clip(array, 0, 65535)
    try:
        data = _image_bytes(mode, array, fmt)
    except (OSError, ValueError, TypeError, KeyError):
        return  # Pillow cannot write this combination: nothing to read
    if mutated:
        data = mutate(data, edits, cut)
    path = tmp_path / "2007_000033.png"
    path.write_bytes(data)
    labels = only_own_errors(read_label_png, path)
    if labels is not None:
        assert labels.dtype == np.uint8 and labels.ndim == 2
        assert set(np.unique(labels).tolist()) <= {*range(21), 255}


def _cast(values: np.ndarray, dtype) -> np.ndarray:
    """`values` as `dtype`, wrapping out-of-range and NaN as C would, without numpy's warning."""
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


MAT_ARRAYS = st.sampled_from([np.uint8, np.int32, np.int64, np.float64, np.float32,
                              np.complex64, bool]).flatmap(
    lambda dtype: st.lists(st.sampled_from([0.0, 1.0, 1.5, 20.0, 255.0, 1e12, -1.0, np.nan,
                                            np.inf]), min_size=4, max_size=4).map(
        lambda v: _cast(np.array(v).reshape(2, 2), dtype) if dtype is not bool
        else np.array(v).reshape(2, 2) > 0))


@FUZZ
@given(values=MAT_ARRAYS | st.text(max_size=5).map(np.array),
       compress=st.booleans(), edits=EDITS, cut=CUTS, mutated=st.booleans(),
       layout=st.sampled_from(["struct", "flat", "cell"]))
@example(values=np.full((2, 2), 1e12), compress=False, edits=[], cut=None, mutated=False,
         layout="struct")  # once a 7 TiB histogram
@example(values=np.full((2, 2), np.nan), compress=False, edits=[], cut=None, mutated=False,
         layout="struct")  # once a traceback
def test_fuzz_sbd_mat(tmp_path, values, compress, edits, cut, mutated, layout):
    scipy_io = pytest.importorskip("scipy.io")
    content = {"struct": {"GTcls": {"Segmentation": values}}, "flat": {"Segmentation": values},
               "cell": {"GTcls": {"Segmentation": np.array([values, "x"], dtype=object)}}}[layout]
    buffer = io.BytesIO()
    with np.errstate(invalid="ignore"):
        scipy_io.savemat(buffer, content, do_compression=compress)
    data = buffer.getvalue()
    if mutated:
        data = mutate(data, edits, cut)
    path = tmp_path / "2008_000002.mat"
    path.write_bytes(data)
    labels = only_own_errors(read_sbd_mat, path)
    if labels is not None:
        assert labels.dtype == np.uint8


# ----------------------------------------------------------------------------------------------
# Content sniffing (what every error message about a foreign file relies on)


@FUZZ
@given(head=st.binary(max_size=600), size=st.integers(0, 2**40))
def test_fuzz_sniff_never_fails(head, size):
    kind = sniff_bytes(head, max(size, len(head)))
    assert kind.description


def test_fuzz_helpers_fail_on_foreign_exceptions():
    """The harness itself must be able to fail (no test that cannot fail)."""
    with pytest.raises(ZeroDivisionError):
        only_own_errors(lambda: 1 / 0)
    with pytest.raises(AssertionError, match="peak allocation"):
        only_own_errors(lambda: np.ones(PEAK_LIMIT // 8 + 1024))
    assert only_own_errors(_raise_own) is None


def _raise_own() -> None:
    raise WeightsError("x", "the project's own error")
