"""bench.weights.sniff: each kind a user may hand to `convert` or `--weights`, told by content."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from bench.weights.sniff import sniff, sniff_bytes
from tests.weights.caffe_writer import write_caffemodel


def _image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format=fmt)
    return buffer.getvalue()


def _tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("a.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


@pytest.mark.parametrize(("content", "kind"), [
    (b"", "empty"),
    (b"\x89HDF\r\n\x1a\n" + bytes(100), "hdf5"),
    (b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19" + bytes(10), "torch"),
    (b"\x80\x04\x95\x10" + bytes(20), "pickle"),
    (b"\x93NUMPY\x01\x00" + bytes(100), "npy"),
    ((2).to_bytes(8, "little") + b"{}", "safetensors"),
    (_image("JPEG"), "jpeg"),
    (_image("PNG"), "png"),
    (_image("GIF"), "gif"),
    (_image("TIFF"), "tiff"),
    (b"\x1f\x8b\x08\x00" + bytes(20), "gzip"),
    (_tar(), "tar"),
    (b"  <!DOCTYPE html><html>Not found</html>", "html"),
    (b'{"schema_version": 1}', "json"),
    (b"2007_000033\n2007_000042\n", "text"),
    (bytes([0xB7, 0x3F, 0xC1, 0x9E]) * 100, "unknown"),
])
def test_kinds_from_content(content, kind):
    assert sniff_bytes(content, len(content)).kind == kind


def test_zips_are_told_apart_by_member_names(tmp_path):
    npz = tmp_path / "w.npz"
    np.savez(npz, a=np.zeros(2))
    torch_like = tmp_path / "w.pth"
    with zipfile.ZipFile(torch_like, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    other = tmp_path / "w.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", b"hi")
    assert [sniff(p).kind for p in (npz, torch_like, other)] == ["npz", "torch", "zip"]


@pytest.mark.parametrize("legacy_v1", [False, True])
def test_caffemodels_are_recognised_even_when_cut_short(tmp_path, legacy_v1):
    path = write_caffemodel(tmp_path / "n.caffemodel",
                            [("conv1_1", "Convolution", [np.ones((2, 3, 3, 3), np.float32)])],
                            legacy_v1=legacy_v1, unknown_fields=True)
    data = path.read_bytes()
    for cut in (len(data), len(data) // 2, 12):
        assert sniff_bytes(data[:cut], cut).kind == "caffemodel", cut
