"""The hand-written protobuf reader for .caffemodel files, against files written from the
caffe.proto field numbers (new `layer` and legacy V1 `layers`, packed and unpacked, doubles)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.core.errors import WeightsError
from bench.weights.caffe import CaffeLayer, read_caffemodel
from tests.weights.caffe_writer import encode_blob, encode_varint, write_caffemodel

RNG = np.random.default_rng(7)
LAYERS = [
    ("data", "Data", []),
    ("conv1_1", "Convolution", [RNG.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                RNG.standard_normal(4).astype(np.float32)]),
    ("relu1_1", "ReLU", []),
    ("fc6", "InnerProduct", [RNG.standard_normal((6, 20)).astype(np.float32),
                             RNG.standard_normal(6).astype(np.float32)]),
    ("upscore", "Deconvolution", [RNG.standard_normal((2, 2, 4, 4)).astype(np.float32)]),
]


def _as_stored(array: np.ndarray, legacy_dims: bool) -> tuple[int, ...]:
    """Legacy dims pad to 4-D with leading ones: [6, 20] -> [1, 1, 6, 20]."""
    return (1,) * (4 - array.ndim) + array.shape if legacy_dims else array.shape


@pytest.mark.parametrize(("legacy_v1", "packed", "legacy_dims", "double"),
                         list(itertools.product([False, True], repeat=4)))
def test_round_trip_every_encoding(tmp_path, legacy_v1, packed, legacy_dims, double):
    path = write_caffemodel(tmp_path / "net.caffemodel", LAYERS, legacy_v1=legacy_v1,
                            packed=packed, legacy_dims=legacy_dims, double=double)
    layers = list(read_caffemodel(path))
    assert [(layer.name, layer.type) for layer in layers] == [(n, t) for n, t, _ in LAYERS]
    for layer, (_, _, blobs) in zip(layers, LAYERS, strict=True):
        assert len(layer.blobs) == len(blobs)
        for got, want in zip(layer.blobs, blobs, strict=True):
            assert got.dtype == np.float32 and got.flags.c_contiguous
            assert got.shape == _as_stored(want, legacy_dims)
            np.testing.assert_array_equal(got.reshape(want.shape), want)


def test_unknown_fields_of_every_wire_type_are_skipped(tmp_path):
    for legacy_v1, packed in itertools.product([False, True], repeat=2):
        path = write_caffemodel(tmp_path / "net.caffemodel", LAYERS, legacy_v1=legacy_v1,
                                packed=packed, unknown_fields=True)
        assert b"skip me" in path.read_bytes()
        layers = list(read_caffemodel(path))
        assert [layer.name for layer in layers] == [name for name, _, _ in LAYERS]
        np.testing.assert_array_equal(layers[3].blobs[0], LAYERS[3][2][0])


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = encode_varint((number << 3) | wire)
    return key + (encode_varint(len(payload)) + payload if wire == 2 else payload)


def test_v0_layer_nested_in_a_v1_layer(tmp_path):
    """Pre-2014 files: V1LayerParameter.layer (field 1) holds name 1, type 2, blobs 50."""
    weight = RNG.standard_normal((3, 2)).astype(np.float32)
    blob = b"".join(bytes(chunk) for chunk in encode_blob(weight))
    v0 = _field(1, 2, b"ip") + _field(2, 2, b"innerproduct") + _field(50, 2, blob)
    path = tmp_path / "v0.caffemodel"
    path.write_bytes(_field(1, 2, b"old") + _field(2, 2, _field(1, 2, v0)))
    (layer,) = read_caffemodel(path)
    assert (layer.name, layer.type) == ("ip", "InnerProduct")
    np.testing.assert_array_equal(layer.blobs[0], weight)


def test_unpacked_dims_and_repeated_packed_chunks_concatenate(tmp_path):
    """proto2 allows a packed field to be split: the chunks concatenate in order."""
    values = np.arange(6, dtype=np.float32)
    shape = _field(1, 0, encode_varint(2)) + _field(1, 0, encode_varint(3))
    blob = (_field(7, 2, shape) + _field(5, 2, values[:4].tobytes())
            + _field(5, 2, values[4:].tobytes()))
    layer = _field(1, 2, b"c") + _field(2, 2, b"Convolution") + _field(7, 2, blob)
    path = tmp_path / "split.caffemodel"
    path.write_bytes(_field(100, 2, layer))
    (read,) = read_caffemodel(path)
    np.testing.assert_array_equal(read.blobs[0], values.reshape(2, 3))


def test_legacy_dims_win_over_shape_and_empty_double_data_is_ignored_as_in_caffe(tmp_path):
    """Blob::FromProto: any of num/channels/height/width present -> the 4-D legacy shape, even
    beside a `shape`; double_data only when it holds values. The reader had both backwards."""
    values = np.arange(6, dtype=np.float32)
    shape = _field(1, 2, encode_varint(2) + encode_varint(3))
    legacy = b"".join(_field(number, 0, encode_varint(dim))
                      for number, dim in ((1, 1), (2, 1), (3, 2), (4, 3)))
    empty_doubles = _field(8, 2, b"")
    blob = _field(7, 2, shape) + legacy + empty_doubles + _field(5, 2, values.tobytes())
    layer = _field(1, 2, b"c") + _field(2, 2, b"Convolution") + _field(7, 2, blob)
    path = tmp_path / "both.caffemodel"
    path.write_bytes(_field(100, 2, layer))
    (read,) = read_caffemodel(path)
    assert read.blobs[0].shape == (1, 1, 2, 3)
    np.testing.assert_array_equal(read.blobs[0].ravel(), values)


@pytest.mark.parametrize("legacy_v1", [False, True])
def test_truncated_file_names_the_byte_and_the_layer(tmp_path, legacy_v1):
    path = write_caffemodel(tmp_path / "net.caffemodel", LAYERS, legacy_v1=legacy_v1)
    data = path.read_bytes()
    fc6_start = data.index(b"fc6")
    cut = fc6_start + 200  # inside fc6's weight blob
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError, match=rf"truncated at byte {cut} inside layer 'fc6'"):
        list(read_caffemodel(path))
    # Cut inside the very first bytes of a layer: its name is not there yet.
    path.write_bytes(data[: data.index(b"conv1_1") - 1])
    with pytest.raises(WeightsError, match=r"truncated at byte \d+ inside layer #2"):
        list(read_caffemodel(path))


def test_layers_before_the_cut_are_yielded_first(tmp_path):
    path = write_caffemodel(tmp_path / "net.caffemodel", LAYERS)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"upscore") + 10])
    reader = read_caffemodel(path)
    assert [next(reader).name for _ in range(4)] == ["data", "conv1_1", "relu1_1", "fc6"]
    with pytest.raises(WeightsError, match="inside layer 'upscore'"):
        next(reader)


def test_corrupt_blobs_and_wire_types_are_errors(tmp_path):
    path = tmp_path / "bad.caffemodel"
    short = _field(7, 2, _field(1, 0, encode_varint(10))) + _field(5, 2, bytes(36))
    path.write_bytes(_field(100, 2, _field(1, 2, b"conv1_1") + _field(7, 2, short)))
    with pytest.raises(WeightsError, match=r"inside layer 'conv1_1': blob has 9 values but "
                                           r"its shape \[10\] needs 10"):
        list(read_caffemodel(path))
    path.write_bytes(_field(100, 2, _field(1, 2, b"x") + bytes([0x0F, 0x00])))  # wire type 7
    with pytest.raises(WeightsError, match=r"corrupt at byte .* invalid wire type 7"):
        list(read_caffemodel(path))
    # An unpacked float cut short inside a complete blob (tag 0x2D, then 2 of its 4 bytes).
    path.write_bytes(_field(100, 2, _field(1, 2, b"fc7") + _field(7, 2, bytes([0x2D, 0, 0]))))
    with pytest.raises(WeightsError, match=r"corrupt inside layer 'fc7'.*runs to byte"):
        list(read_caffemodel(path))
    path.write_bytes(_field(1, 2, b"net") + bytes([0xFF] * 12))
    with pytest.raises(WeightsError, match=r"corrupt at byte .*varint longer than 10 bytes"):
        list(read_caffemodel(path))
    path.write_bytes(bytes([0xFF] * 12))  # not even a first protobuf field
    with pytest.raises(WeightsError, match=r"does not look like a Caffe model"):
        list(read_caffemodel(path))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        list(read_caffemodel(tmp_path / "absent.caffemodel"))
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty file"):
        list(read_caffemodel(tmp_path / "empty.caffemodel"))


def test_progress_reports_offsets_up_to_the_file_size(tmp_path):
    path = write_caffemodel(tmp_path / "net.caffemodel", LAYERS)
    offsets: list[int] = []
    layers = list(read_caffemodel(path, offsets.append))
    assert len(offsets) == len(layers) and offsets == sorted(offsets)
    assert offsets[-1] == path.stat().st_size
    assert all(isinstance(layer, CaffeLayer) and layer.offset >= 0 for layer in layers)


def test_writer_is_atomic_and_rejects_unknown_v1_types(tmp_path):
    target = tmp_path / "net.caffemodel"
    with pytest.raises(ValueError, match="no V1 layer type for 'Crop'"):
        write_caffemodel(target, [("crop", "Crop", [])], legacy_v1=True)
    assert list(tmp_path.iterdir()) == []
