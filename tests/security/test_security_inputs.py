"""Hostile inputs (docs/security.md): each gives one line naming the file, a non-zero exit, no
traceback, and (where memory was proportional to a value in the file) stays under 1 GiB.

Every input is generated here; nothing large is committed.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.cli.app import cli
from bench.core.atomic import atomic_write_bytes
from bench.core.errors import DataError, FcnBenchError, UsageError, WeightsError, printable
from bench.core.json_text import loads_bounded
from bench.data.id_lists import read_id_list
from bench.data.voc import read_sbd_mat
from bench.downloads.cached_weights import open_voc_weights
from bench.model.init import random_params
from bench.model.spec import build_spec
from bench.weights.archive import archive_metadata, read_header, save_archive
from bench.weights.caffe import read_caffemodel
from bench.weights.convert import check_memory, convert_random
from tests.limits import run_limited
from tests.weights.caffe_writer import encode_varint, write_caffemodel

REPO = Path(__file__).resolve().parents[2]
NARROW = 16


def run_cli(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def one_line(result, path: Path | str | None = None) -> str:
    """The single error line of a failed command (asserting the shape of the failure)."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    if path is not None:
        assert str(path) in lines[0], lines[0]
    return lines[0]




def narrow_archive(path: Path, **metadata: str) -> Path:
    spec = build_spec("fcn32s", width_divisor=NARROW)
    return save_archive(path, random_params(spec), {"origin": "test", **metadata})


def safetensors_bytes(header: bytes, data: bytes = b"") -> bytes:
    return len(header).to_bytes(8, "little") + header + data


# ----------------------------------------------------------------------------------------------
# Issue 10.3: memory proportional to a value, NaN, fractions


def test_int32_tiff_named_png_is_refused_under_one_gib(tmp_path):
    path = tmp_path / "2007_000033.png"
    Image.fromarray(np.array([[0, 2**31 - 1], [1, 255]], np.int32), mode="I").save(
        path, format="TIFF")
    result = run_limited(
        "import sys\nfrom bench.data.labels import read_label_png\n"
        "from bench.core.errors import DataError\n"
        f"try:\n    read_label_png({str(path)!r})\nexcept DataError as e:\n    print(e)\n"
        "    sys.exit(3)\n")
    assert result.returncode == 3, result.stderr[-2000:]
    assert str(path) in result.stdout and "2147483647" in result.stdout


@pytest.mark.parametrize(("values", "message"), [
    (np.full((2, 2), 1e12), "label values outside 0-20 and 255: 1000000000000"),
    (np.array([[np.nan, 1.0], [0.0, 0.0]]), "NaN or infinity"),
    (np.array([[1.5, 0.0], [0.0, 0.0]]), "not whole numbers (1.5)"),
    (np.array([[-3, 0], [0, 0]], np.int64), "outside 0-20 and 255: -3"),
])
def test_sbd_mat_values_are_validated(tmp_path, values, message):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "2008_000002.mat"
    scipy_io.savemat(path, {"GTcls": {"Segmentation": values}})
    with pytest.raises(DataError, match=re.escape(message)):
        read_sbd_mat(path)


@pytest.mark.parametrize("cut", [1, 60, 127, 130])
@pytest.mark.parametrize("reader", ["sbd", "datasets"])
def test_truncated_mat_files_are_one_error(tmp_path, cut, reader):
    """scipy's MatReadError (truncated header) is not a ValueError: both .mat readers map it."""
    import scipy.io

    from bench.data.base import read_mat_array

    whole = tmp_path / "whole.mat"
    scipy.io.savemat(whole, {"GTcls": {"Segmentation": np.zeros((4, 4), np.uint8)},
                             "S": np.zeros((4, 4), np.uint8)})
    path = tmp_path / "cut.mat"
    path.write_bytes(whole.read_bytes()[:cut])
    with pytest.raises(DataError, match=r"cut\.mat"):
        read_sbd_mat(path) if reader == "sbd" else read_mat_array(path, "S")


def test_sbd_mat_with_1e12_is_refused_under_one_gib(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "big.mat"
    scipy_io.savemat(path, {"GTcls": {"Segmentation": np.full((2, 2), 1e12)}})
    result = run_limited(
        "import sys\nfrom bench.data.voc import read_sbd_mat\n"
        "from bench.core.errors import DataError\n"
        f"try:\n    read_sbd_mat({str(path)!r})\nexcept DataError as e:\n    print(e)\n"
        "    sys.exit(3)\n")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "1000000000000" in result.stdout


def test_sbd_mat_zlib_bomb_is_refused_before_inflating(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "bomb.mat"
    scipy_io.savemat(path, {"GTcls": {"Segmentation": np.zeros((9000, 9000), np.uint8)}},
                     do_compression=True)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(DataError, match="inflate to more than 64 MiB"):
        read_sbd_mat(path)


def test_convert_random_huge_num_classes_is_one_line(tmp_path):
    out = tmp_path / "r.safetensors"
    line = one_line(run_cli("convert", "--random", "--variant", "fcn8s", "--num-classes",
                            "100000", out))
    assert "--num-classes 100000 is outside 1..1000" in line
    assert not out.exists()


def test_conversion_memory_is_estimated_before_allocating(tmp_path):
    spec = build_spec("fcn32s", 1000)
    with pytest.raises(UsageError, match=r"needs about 47\.\d GiB of memory to build, but only "
                                         r"2\.0 GiB is available"):
        check_memory(spec, tmp_path / "out.safetensors", available=2 * 2**30)
    check_memory(build_spec("fcn8s"), "x", available=2 * 2**30)  # 1.5 GiB fits


# ----------------------------------------------------------------------------------------------
# Issue 10.5: recursion, incomplete metadata, full disk, solver.json


def test_deeply_nested_safetensors_header_is_one_line(tmp_path):
    path = tmp_path / "deep.safetensors"
    path.write_bytes(safetensors_bytes(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    with pytest.raises(WeightsError, match="nested more than 8 levels deep"):
        read_header(path)
    out = tmp_path / "out.safetensors"
    assert "nested more than 8 levels deep" in one_line(run_cli("convert", path, out), path)
    assert not out.exists()


def test_deeply_nested_record_is_one_line_in_compare_and_history(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"schema_version": 1, "kind": "x", "rows": ' + "[" * 50_000
                    + "]" * 50_000 + "}")
    for command in (("compare", path, path), ("history", path)):
        line = one_line(run_cli(*command), path)
        assert "nested more than 64 levels deep" in line


def test_deeply_nested_caffemodel_groups_are_one_line(tmp_path):
    group_start = encode_varint((50 << 3) | 3)
    group_end = encode_varint((50 << 3) | 4)
    path = tmp_path / "nested.caffemodel"
    path.write_bytes(b"\x0a\x03net" + group_start * 20_000 + group_end * 20_000)
    with pytest.raises(WeightsError, match="groups nested more than 64 deep"):
        list(read_caffemodel(path))
    out = tmp_path / "out.safetensors"
    line = one_line(run_cli("convert", path, out), path)
    assert "nested more than 64 deep" in line and not out.exists()


@pytest.mark.parametrize(("drop", "extra", "message"), [
    ("origin", {}, "no 'origin'"),
    ("source_sha256", {}, "no 'source_sha256'"),
    (None, {"kind": "stolen"}, "kind 'stolen' is not one of trained, init, random"),
])
def test_archive_with_incomplete_metadata_is_refused_before_writing(tmp_path, drop, extra,
                                                                    message):
    from safetensors.numpy import save_file

    spec = build_spec("fcn32s", width_divisor=NARROW)
    metadata = {**archive_metadata(spec, kind="trained", origin="o"), **extra}
    metadata.pop(drop, None)
    source = tmp_path / "in.safetensors"
    save_file(random_params(spec), str(source), metadata=metadata)
    out = tmp_path / "out.safetensors"
    line = one_line(run_cli("convert", source, out), source)
    assert message in line
    assert not out.exists()


def test_full_disk_while_saving_an_archive_is_one_line(tmp_path, monkeypatch):
    import safetensors.numpy
    from safetensors import SafetensorError

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    out = tmp_path / "w.safetensors"
    with pytest.raises(DataError, match=r"cannot write the weights archive: .*No space left"):
        narrow_archive(out)
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_library_errors_reaching_the_cli_are_one_line(monkeypatch):
    from safetensors import SafetensorError

    import bench.weights.convert

    def explode(*args, **kwargs):
        raise SafetensorError("header too large")

    monkeypatch.setattr(bench.weights.convert, "convert_random", explode)
    line = one_line(run_cli("convert", "--random", "--variant", "fcn8s", "x.safetensors"))
    assert "SafetensorError: header too large" in line

    def recurse(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(bench.weights.convert, "convert_random", recurse)
    assert "nested too deeply" in one_line(
        run_cli("convert", "--random", "--variant", "fcn8s", "x.safetensors"))


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2, 3]", "a JSON array, expected an object"),
    ('{"config": [], "sampler": {}}', "config is not a JSON object"),
    ("[" * 10_000 + "]" * 10_000, "nested more than 64 levels deep"),
])
def test_solver_state_of_the_wrong_shape_is_one_line(tmp_path, content, message):
    from bench.train.resume import read_solver_state

    path = tmp_path / "fcn8s_iter_4.solver.json"
    path.write_text(content)
    with pytest.raises(FcnBenchError, match=message) as caught:
        read_solver_state(path)
    assert str(path) in str(caught.value)


# ----------------------------------------------------------------------------------------------
# Issue 10.6: HDF5 that reads other local files


def _keras_like(handle) -> object:
    return handle.create_group("block1_conv1")


def test_h5_external_storage_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(8, dtype=np.float32).tobytes())
    path = tmp_path / "vgg16.h5"
    with h5py.File(path, "w") as handle:
        _keras_like(handle).create_dataset("kernel:0", shape=(8,), dtype="f4",
                                           external=[(str(secret), 0, 32)])
    out = tmp_path / "out.safetensors"
    line = one_line(run_cli("convert", path, out), path)
    assert "keeps its data in another file" in line and not out.exists()


@pytest.mark.parametrize("link", ["soft", "external", "virtual"])
def test_h5_links_and_virtual_datasets_are_refused(tmp_path, link):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "vgg16.h5"
    with h5py.File(path, "w") as handle:
        group = _keras_like(handle)
        if link == "soft":
            group["kernel:0"] = h5py.SoftLink("/elsewhere")
        elif link == "external":
            group["kernel:0"] = h5py.ExternalLink("/etc/passwd", "/x")
        else:
            layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
            layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "x", shape=(4,))
            group.create_virtual_dataset("kernel:0", layout)
    expected = {"soft": "is a soft link", "external": "is an external link",
                "virtual": "is a virtual dataset"}[link]
    line = one_line(run_cli("convert", path, tmp_path / "out.safetensors"), path)
    assert expected in line


# ----------------------------------------------------------------------------------------------
# Issue 10.8 parts: control bytes, duplicate ids, folders, foreign files, output modes


def test_control_bytes_are_escaped_in_every_cli_error(monkeypatch):
    import bench.weights.convert

    def hostile(*args, **kwargs):
        raise WeightsError("w\x1b[2J.safetensors", "tensor 'a\x07\x00b' is bad")

    monkeypatch.setattr(bench.weights.convert, "convert_random", hostile)
    line = one_line(run_cli("convert", "--random", "--variant", "fcn8s", "x.safetensors"))
    assert "\x1b" not in line and "\x07" not in line and "\x00" not in line
    assert "w\\x1b[2J.safetensors" in line and "a\\x07\\x00b" in line
    assert printable("a\nb\x9b") == "a\\x0ab\\x9b"


def test_split_ids_with_control_bytes_are_refused_escaped(tmp_path):
    path = tmp_path / "split.txt"
    path.write_bytes(b"2007_000033\n2007_\x1b[31m000042\x07\n")
    with pytest.raises(DataError, match="without control characters") as caught:
        read_id_list(path)
    assert "\x1b" not in str(caught.value) and "\\x1b" in str(caught.value)


def test_duplicate_split_ids_are_refused_by_name(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("2007_000033\n2007_000042\n2007_000033\n2007_000042\n2007_000061\n")
    with pytest.raises(DataError, match=r"more than once \(2007_000033, 2007_000042\)"):
        read_id_list(path)


def test_label_path_that_is_a_folder_says_so(tmp_path):
    from bench.data.voc import VOCDataset

    voc = tmp_path / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass" / "2007_000033.png").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(voc / "JPEGImages" / "2007_000033.jpg")
    with pytest.raises(DataError, match="is a folder, expected a file") as caught:
        VOCDataset(voc, ["2007_000033"], name="custom", source=tmp_path / "split.txt")
    assert "2007_000033.png" in str(caught.value)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("random.caffemodel", bytes([0xB7, 0x3F, 0xC1, 0x9E]) * 1000,
     "is not a weights file fcn-bench recognises"),
    ("model.pth", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.", "is a Python pickle"),
    ("some.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(500), "is a JPEG image"),
    ("page.caffemodel", b"<!DOCTYPE html><html><body>Sign in</body></html>", "an HTML page"),
    ("w.npz", None, "is a NumPy .npz archive"),
])
def test_convert_names_a_foreign_file_by_its_content(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        np.savez(path, a=np.zeros(3))
    else:
        path.write_bytes(content)
    out = tmp_path / "out.safetensors"
    line = one_line(run_cli("convert", path, out), path)
    assert message in line and "truncated" not in line and "wire type" not in line


@pytest.mark.parametrize(("make", "message"), [
    ("caffemodel", "is a Caffe model (protobuf NetParameter), not an fcn-bench weights archive"),
    ("h5", "is an HDF5 file (e.g. Keras weights), not an fcn-bench weights archive"),
    ("jpeg", "is a JPEG image, not an fcn-bench weights archive"),
])
def test_weights_of_the_wrong_kind_name_the_convert_command(tmp_path, make, message):
    path = tmp_path / f"fcn32s.{make}"
    if make == "caffemodel":
        write_caffemodel(path, [("conv1_1", "Convolution", [np.ones((2, 3, 3, 3), np.float32)])])
    elif make == "h5":
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "w") as handle:
            handle.create_dataset("x", data=np.zeros(2))
    else:
        Image.new("RGB", (8, 8)).save(path, format="JPEG")
    with pytest.raises(WeightsError, match=re.escape(message)) as caught:
        open_voc_weights("fcn32s", path)
    if make != "jpeg":
        assert f"python cli.py convert {path} fcn32s.safetensors" in str(caught.value)


def test_every_output_gets_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        archive = convert_random(tmp_path / "r.safetensors", "fcn32s", width_divisor=NARROW)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(mask)
    for path in (archive.output, tmp_path / "b.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_loads_bounded_accepts_ordinary_records():
    record = {"a": [{"b": [1, 2, {"c": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}]}
    assert loads_bounded(json.dumps(record)) == record


def test_record_with_a_5000_digit_number_is_one_line(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"schema_version": 1, "kind": "evaluate", "mean_iou": ' + "9" * 5000 + "}")
    line = one_line(run_cli("compare", path, path), path)
    assert "not a usable JSON file" in line


def test_huge_declared_image_is_refused_from_its_header(tmp_path, monkeypatch):
    import bench.data.labels

    monkeypatch.setattr(bench.data.labels, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "2007_000033.png"
    Image.new("P", (20, 10)).save(path)
    with pytest.raises(DataError, match=r"image of 20x10 pixels is larger than fcn-bench"):
        bench.data.labels.read_label_png(path)


def test_convert_random_that_cannot_fit_is_refused_with_its_estimate_under_one_gib(tmp_path):
    out = tmp_path / "r.safetensors"
    result = run_limited(f"import sys\nsys.argv = ['cli.py', 'convert', '--random', '--variant', "
                         f"'fcn8s', {str(out)!r}]\nimport bench.cli.app as cli\ncli.main()\n")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs about 1.5 GiB of memory to build, but only 1.0 GiB" \
        in lines[0], result.stderr[-2000:]
    assert not out.exists()


def test_convert_summary_escapes_metadata_from_the_file(tmp_path):
    source = narrow_archive(tmp_path / "in.safetensors", origin="evil\x1b]0;owned\x07")
    result = run_cli("convert", source, tmp_path / "out.safetensors")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "evil\\x1b]0;owned\\x07" in result.output
