"""Hostile checkpoints, cache files and .pth zips (docs/security.md, "Checkpoints, caches and .pth
files"): each is one DataError/WeightsError naming the file and how to recover, never a
traceback, never a silently different result, and bounded in memory.

Every input is generated here; nothing large is committed.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import bench.downloads.cache
import bench.evaluation.checkpoint
from bench.core.errors import DataError, FcnBenchError
from bench.downloads.cache import forget_sha256, recorded_hashes, recorded_sha256
from bench.evaluation.checkpoint import Checkpoint, CheckpointMismatch
from tests.limits import bounded_allocations, run_limited

REPO = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=80, deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
IDS = [f"2008_{i:06d}" for i in range(6)]
FINGERPRINT = {"variant": "fcn8s", "backend": "torch", "weights_sha256": "ab" * 32}






# ----------------------------------------------------------------------------------------------
# Evaluation checkpoints (bench/evaluation/checkpoint.py)


def saved_checkpoint(tmp_path: Path, classes: int = 3) -> Checkpoint:
    checkpoint = Checkpoint(tmp_path / "reproduce-fcn8s-torch-val.json", FINGERPRINT)
    matrix = np.arange(classes * classes, dtype=np.int64).reshape(classes, classes)
    checkpoint.save(IDS[:2], matrix, {"image_sha256": ["cd" * 32, "ef" * 32]})
    return checkpoint


def edited(checkpoint: Checkpoint, **changes) -> Checkpoint:
    data = json.loads(checkpoint.path.read_text())
    data.update(changes)
    checkpoint.path.write_text(json.dumps(data))
    return checkpoint


def refused(checkpoint: Checkpoint, match: str) -> str:
    with pytest.raises(DataError, match=match) as info:
        checkpoint.load(IDS)
    message = str(info.value)
    assert str(checkpoint.path) in message and "delete it" in message, message
    assert "\n" not in message
    return message


def test_a_valid_checkpoint_still_loads_exactly(tmp_path):
    state = saved_checkpoint(tmp_path).load(IDS)
    assert state.ids_done == IDS[:2] and state.matrix.dtype == np.int64
    assert state.matrix.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert state.extra["image_sha256"] == ["cd" * 32, "ef" * 32]


@pytest.mark.parametrize(("matrix", "match"), [
    ([[0, 1.5, 2], [3, 4, 5], [6, 7, 8]], "holds 1.5, not a count"),  # was cast to 1
    ([[0, 1.0, 2], [3, 4, 5], [6, 7, 8]], "holds 1.0"),  # a float, even a whole one
    ([[0, True, 2], [3, 4, 5], [6, 7, 8]], "holds true"),  # bool is an int subclass
    ([[0, "7", 2], [3, 4, 5], [6, 7, 8]], "holds 7"),  # numpy would parse the string
    ([[0, 2**63, 2], [3, 4, 5], [6, 7, 8]], "not a count"),  # was an OverflowError traceback
    ([[0, -1, 2], [3, 4, 5], [6, 7, 8]], "not a count"),
    ([[0, None, 2], [3, 4, 5], [6, 7, 8]], "holds null"),
    ([[0, 1], [3, 4, 5], [6, 7, 8]], "not square"),  # ragged
    ([[0, 1, 2], [3, 4, 5]], "not square"),
    ([[[0]]], "not a count"),
    ([], "non-empty list of rows"),
    ({"0": [1]}, "non-empty list of rows"),
])
def test_a_wrong_matrix_is_refused_never_cast(tmp_path, matrix, match):
    refused(edited(saved_checkpoint(tmp_path), confusion_matrix=matrix), match)


@pytest.mark.parametrize(("changes", "match"), [
    ({"ids_done": "2008_000000"}, "ids_done is not a list of strings"),  # was iterated by char
    ({"ids_done": [1, 2]}, "ids_done is not a list of strings"),
    ({"fingerprint": ["variant"]}, "no fingerprint object"),
    ({"fingerprint": 7}, "no fingerprint object"),  # was a TypeError traceback
    ({"image_sha256": ["cd" * 32]}, "image_sha256 is not a list of 2 strings"),
    ({"image_sha256": 5}, "image_sha256 is not a list of 2 strings"),  # runner's len() failed
    ({"format_version": 2}, "not a fcn-bench-checkpoint v1 file"),
])
def test_wrong_fields_are_refused(tmp_path, changes, match):
    refused(edited(saved_checkpoint(tmp_path), **changes), match)


@pytest.mark.parametrize(("content", "match"), [
    (b"[1, 2]", "a JSON list, not an object"),  # was AttributeError: 'list' has no 'get'
    (b"[" * 100_000 + b"]" * 100_000, "nested more than"),  # was a RecursionError
    (b'{"format": 1' + b"0" * 5000 + b"}", "unreadable checkpoint"),  # over the digit limit
    (b'{"confusion_matrix": [[NaN]]}', "not a fcn-bench-checkpoint"),
    (b"", "unreadable checkpoint"),
    (b"\x00\xff" * 10, "not an fcn-bench checkpoint"),
])
def test_damaged_files_are_one_line(tmp_path, content, match):
    checkpoint = saved_checkpoint(tmp_path)
    checkpoint.path.write_bytes(content)
    refused(checkpoint, match)


def test_an_npz_at_the_checkpoint_path_is_named(tmp_path):
    checkpoint = saved_checkpoint(tmp_path)
    buffer = io.BytesIO()
    np.savez(buffer, confusion_matrix=np.zeros((3, 3)))
    checkpoint.path.write_bytes(buffer.getvalue())
    refused(checkpoint, "is a zip archive, not an fcn-bench checkpoint")


def test_a_truncated_checkpoint_is_refused(tmp_path):
    checkpoint = saved_checkpoint(tmp_path)
    text = checkpoint.path.read_bytes()
    for cut in (1, len(text) // 3, len(text) // 2, len(text) - 3):
        checkpoint.path.write_bytes(text[:cut])
        refused(checkpoint, "unreadable checkpoint")


def test_a_folder_or_an_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    checkpoint = saved_checkpoint(tmp_path)
    size = checkpoint.path.stat().st_size
    monkeypatch.setattr(bench.evaluation.checkpoint, "MAX_CHECKPOINT_BYTES", size - 1)
    refused(checkpoint, "larger than")
    checkpoint.path.unlink()
    checkpoint.path.mkdir()
    refused(checkpoint, "not a regular file")


def test_a_hostile_checkpoint_at_the_size_limit_stays_under_one_gib(tmp_path):
    """32 MiB of two-character ids: the worst case for objects per byte that the bound allows.
    Parsed (it is under the limit) and refused by the fingerprint, all under a 1 GiB cap."""
    path = tmp_path / "big.json"
    count = (bench.evaluation.checkpoint.MAX_CHECKPOINT_BYTES - 200) // 5
    path.write_bytes(b'{"format": "fcn-bench-checkpoint", "format_version": 1, "fingerprint": '
                     b'{}, "confusion_matrix": [[0]], "ids_done": [' + b'"ab",' * (count - 1)
                     + b'"ab"]}')
    assert path.stat().st_size <= bench.evaluation.checkpoint.MAX_CHECKPOINT_BYTES
    result = run_limited(
        "import sys\nfrom bench.evaluation.checkpoint import Checkpoint, CheckpointMismatch\n"
        f"try:\n    Checkpoint({str(path)!r}, {{'variant': 'fcn8s'}}).load(['x'])\n"
        "except CheckpointMismatch as e:\n    print('refused:', e); sys.exit(3)\n")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "is from another run" in result.stdout


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
@example(edits=[], cut=None)
def test_fuzz_mutated_checkpoints(tmp_path, edits, cut):
    """Mutated checkpoints: refused with the project's errors, or loaded as a valid state (a
    byte flip in a count is a different valid count: only a hash could catch that)."""
    checkpoint = saved_checkpoint(tmp_path)
    data = bytearray(checkpoint.path.read_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    checkpoint.path.write_bytes(bytes(data[:cut % (len(data) + 1)] if cut is not None
                                      else data))
    try:
        with bounded_allocations():
            state = checkpoint.load(IDS)
    except FcnBenchError:
        return
    assert state is not None and state.matrix.dtype == np.int64
    assert state.matrix.ndim == 2 and state.matrix.shape[0] == state.matrix.shape[1]
    assert (state.matrix >= 0).all()
    assert state.ids_done == IDS[:len(state.ids_done)]


def test_a_mismatch_still_names_the_difference(tmp_path):
    saved_checkpoint(tmp_path)
    other = Checkpoint(tmp_path / "reproduce-fcn8s-torch-val.json",
                       {**FINGERPRINT, "backend": "tensorflow"})
    with pytest.raises(CheckpointMismatch, match="backend was torch, now tensorflow"):
        other.load(IDS)


# ----------------------------------------------------------------------------------------------
# Recorded checksums (bench/downloads/cache.py)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(bench.downloads.cache.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache" / bench.downloads.cache.RECORDED_HASHES


@pytest.mark.parametrize(("content", "match"), [
    (b"[" * 100_000, "nested more than"),  # was a RecursionError
    (b"[1]", "not a JSON object"),
    (b"{", "unreadable recorded-checksum file"),
    (b"\xff\xfe{}", "unreadable recorded-checksum file"),
])
def test_damaged_recorded_checksums_are_one_line(cache, content, match):
    cache.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        recorded_hashes()
    assert str(cache) in str(info.value) and "delete it" in str(info.value)


def test_oversized_recorded_checksums_are_refused_before_parsing(cache, monkeypatch):
    cache.write_text("{}" + " " * 100)
    monkeypatch.setattr(bench.downloads.cache, "MAX_RECORDED_BYTES", 50)
    with pytest.raises(DataError, match="larger than"):
        recorded_hashes()


@pytest.mark.parametrize("entry", [
    {"sha256": 12345}, {"sha256": ["ab"]}, {"sha256": "AB" * 32}, {"sha256": "ab"},
    "deadbeef", 7,
])
def test_a_damaged_entry_is_refused_and_can_be_forgotten(cache, entry):
    good = {"sha256": "ab" * 32, "size": 1, "url": "https://x", "recorded_utc": "t"}
    cache.write_text(json.dumps({"a.caffemodel": entry, "b.tar": good}))
    with pytest.raises(DataError, match=r"the entry for a\.caffemodel has no valid sha256") as info:
        recorded_sha256("a.caffemodel")  # an int sha was a TypeError traceback in download
    assert "download forget" in str(info.value)
    assert recorded_sha256("b.tar") == "ab" * 32  # other entries still work
    forget_sha256("a.caffemodel")
    assert recorded_sha256("a.caffemodel") is None and list(recorded_hashes()) == ["b.tar"]


# ----------------------------------------------------------------------------------------------
# PyTorch .pth files (backends/torch/pth.py)

torch = pytest.importorskip("torch")
pth = pytest.importorskip("backends.torch.pth")
SMALL_STATE = {"conv1_1.weight": torch.arange(24.0).reshape(2, 3, 2, 2),
               "conv1_1.bias": torch.tensor([0.5, -1.0])}


def saved_pth(path: Path) -> Path:
    torch.save(SMALL_STATE, path)
    return path


def rezipped(source: Path, target: Path, edit) -> Path:
    """A copy of a torch.save zip with its members passed through `edit(name, data)`, which
    returns a list of (ZipInfo or name, data, compression) to write instead."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            for name, data, method in edit(info.filename, old.read(info)):
                new.writestr(name, data, compress_type=method)
    return target


def keep(name, data):
    return [(name, data, zipfile.ZIP_STORED)]


def pth_refused(path: Path, match: str) -> str:
    with pytest.raises(FcnBenchError, match=match) as info:
        pth.read_state_dict(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    return message


def test_a_plain_and_a_rezipped_pth_still_load(tmp_path):
    source = saved_pth(tmp_path / "small.pth")
    for path in (source, rezipped(source, tmp_path / "copy.pth", keep)):
        arrays = pth.read_state_dict(path)
        assert arrays["conv1_1.weight"].dtype == np.float32
        np.testing.assert_array_equal(arrays["conv1_1.bias"], [0.5, -1.0])


def test_a_zip_bomb_is_refused_before_torch_reads_it(tmp_path):
    """20 MB of zeros deflate to ~20 KB: 16x the file is far less than what it unpacks to."""
    def bomb(name, data):
        if name.endswith("data/0"):
            return [(name, data + bytes(20 * 2**20), zipfile.ZIP_DEFLATED)]
        return keep(name, data)

    path = rezipped(saved_pth(tmp_path / "s.pth"), tmp_path / "bomb.pth", bomb)
    assert path.stat().st_size < 2**20
    pth_refused(path, "possible zip bomb")


def test_convert_of_a_zip_bomb_is_one_line(tmp_path):
    from click.testing import CliRunner

    from bench.cli.app import cli

    def bomb(name, data):
        return [(name, data + bytes(2**20) if name.endswith("data/0") else data,
                 zipfile.ZIP_DEFLATED)]

    path = rezipped(saved_pth(tmp_path / "s.pth"), tmp_path / "bomb.pth", bomb)
    result = CliRunner().invoke(cli, ["convert", str(path), str(tmp_path / "out.safetensors")])
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and str(path) in lines[0] and "zip bomb" in lines[0]
    assert not (tmp_path / "out.safetensors").exists()


def test_an_oversized_pth_is_refused(tmp_path, monkeypatch):
    path = saved_pth(tmp_path / "s.pth")
    monkeypatch.setattr(pth, "MAX_PTH_UNCOMPRESSED", 100)
    pth_refused(path, "more than 100")


@pytest.mark.parametrize(("field", "value", "match"), [
    (10, 60_000, "lists 60,000 members"),  # total entries (uint16 at +10)
    (12, 2**31, "members in 2,147,483,648 bytes"),  # central directory size (uint32 at +12)
])
def test_a_huge_central_directory_is_refused_before_parsing(tmp_path, field, value, match):
    path = saved_pth(tmp_path / "s.pth")
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    size = 2 if field == 10 else 4
    data[end + field:end + field + size] = value.to_bytes(size, "little")
    path.write_bytes(bytes(data))
    pth_refused(path, match)


def test_many_small_members_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pth, "MAX_PTH_MEMBERS", 50)
    path = rezipped(saved_pth(tmp_path / "s.pth"), tmp_path / "many.pth",
                    lambda name, data: keep(name, data) + [
                        (f"{name}.{i}", b"", zipfile.ZIP_STORED) for i in range(8)])
    pth_refused(path, "lists 72 members")


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile warns when writing the twin
@pytest.mark.parametrize(("extra", "match"), [
    ("s/../../etc/passwd", "'..' path"),
    ("/s/data.pkl", "absolute"),
    ("other/data.pkl", "outside the archive's one top folder"),  # a second, nested checkpoint
    ("s/data.pkl", "appears twice"),
    ("s\\data.pkl", "backslash"),
    ("s/data//0", "empty"),
    ("s/\x1b[2Jx", "control character"),
])
def test_odd_members_are_refused(tmp_path, extra, match):
    path = rezipped(saved_pth(tmp_path / "s.pth"), tmp_path / "odd.pth",
                    lambda name, data: keep(name, data) + (
                        [(extra, b"x", zipfile.ZIP_STORED)] if name.endswith("version") and
                        "." not in name.rsplit("/", 1)[-1] else []))
    pth_refused(path, match)


def test_encrypted_or_odd_compression_members_are_refused(tmp_path):
    path = saved_pth(tmp_path / "s.pth")
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x1  # general purpose flag bit 0: encrypted
    path.write_bytes(bytes(data))
    pth_refused(path, "is encrypted")
    data[central + 8] &= 0xFE
    data[central + 10:central + 12] = (12).to_bytes(2, "little")  # bzip2
    path.write_bytes(bytes(data))
    pth_refused(path, "compression method 12")


def test_a_zip_without_data_pkl_is_not_a_torch_file(tmp_path):
    path = rezipped(saved_pth(tmp_path / "s.pth"), tmp_path / "nopkl.pth",
                    lambda name, data: [] if name.endswith("data.pkl") else keep(name, data))
    pth_refused(path, "without s/data.pkl")


@pytest.mark.parametrize(("pickle_bytes", "match"), [
    (b"\x80\x02cos\nsystem\n.", r"arbitrary unpickling .*e\.g\. os\.system"),
    (b"\x80\x02\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.", "refused by torch's safe loader"),
    (b"\x80\x02\xff", "refused by torch's safe loader"),
    (b"\x80\x02X\x01\x00\x00\x00aq\x00(", "not a readable PyTorch file"),
    (b"\x80\x02K\x05.", "holds a int, not a state dict"),
])
def test_refused_or_damaged_pickles_are_one_line(tmp_path, pickle_bytes, match):
    path = rezipped(saved_pth(tmp_path / "s.pth"), tmp_path / "p.pth",
                    lambda name, data: keep(name, pickle_bytes if name.endswith("data.pkl")
                                            else data))
    pth_refused(path, match)


def test_a_missing_file_or_a_folder_is_one_line(tmp_path):
    pth_refused(tmp_path / "absent.pth", "no such file")
    (tmp_path / "folder.pth").mkdir()
    pth_refused(tmp_path / "folder.pth", "not a regular file")


def test_truncated_pth_files_are_one_line(tmp_path):
    data = saved_pth(tmp_path / "s.pth").read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 10):
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        pth_refused(tmp_path / "cut.pth", "truncated or corrupt|not a file torch.save wrote")


@pytest.mark.slow  # writes and deflates 1.2 GB (~10 s)
def test_a_zip_bomb_stays_under_one_gib(tmp_path):
    """A 1.2 GB member deflated to ~5 MB, read under a 1 GiB address-space cap: refused, never
    inflated (written in 1 MB pieces, so the test itself stays small)."""
    source = saved_pth(tmp_path / "s.pth")
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(bomb, "w", compresslevel=1) as new:
        for info in old.infolist():
            if not info.filename.endswith("data/0"):
                new.writestr(info, old.read(info))
                continue
            member = zipfile.ZipInfo(info.filename)
            member.compress_type = zipfile.ZIP_DEFLATED
            with new.open(member, "w", force_zip64=True) as out:
                zeros = bytes(10**6)
                for _ in range(1200):
                    out.write(zeros)
    assert bomb.stat().st_size < 16 * 2**20
    result = run_limited(
        "import sys\nfrom backends.torch.pth import read_state_dict\n"
        "from bench.core.errors import WeightsError\n"
        f"try:\n    read_state_dict({str(bomb)!r})\n"
        "except WeightsError as e:\n    print(e); sys.exit(3)\n")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "zip bomb" in result.stdout


def saved_legacy_pth(path: Path) -> Path:
    """The pre-1.6 format (torchvision's 2017 model zoo): pickles, then raw storages."""
    torch.save(SMALL_STATE, path, _use_new_zipfile_serialization=False)
    return path


def test_a_legacy_pth_still_loads(tmp_path):
    arrays = pth.read_state_dict(saved_legacy_pth(tmp_path / "old.pth"))
    np.testing.assert_array_equal(arrays["conv1_1.weight"].ravel(), np.arange(24.0))


@pytest.mark.parametrize(("numel", "match"), [
    (b"J\xff\xff\xff\x7f", "declare 8,589,934,596 bytes of data but the file has"),
    (b"\x8a\x09" + b"\xff" * 8 + b"\x7f", "declares"),  # LONG1 beyond int64
])
def test_a_legacy_pth_declaring_more_data_than_it_holds_is_refused(tmp_path, numel, match):
    """Torch allocates what the pickle declares before reading: 8 GB from a 1 KB file."""
    path = saved_legacy_pth(tmp_path / "old.pth")
    data = path.read_bytes()
    # conv1_1.weight: ("storage", FloatStorage, key, "cpu", 24, None), memoised with BINPUT
    bias = re.compile(rb"(cpuq.)K\x18(Ntq)", re.DOTALL)
    assert len(bias.findall(data)) == 1, data[:600]
    path.write_bytes(bias.sub(lambda m: m.group(1) + numel + m.group(2), data))
    pth_refused(path, match)


@settings(max_examples=60, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
@example(edits=[], cut=None)
def test_fuzz_mutated_legacy_pth_files(tmp_path, edits, cut):
    """Mutated pre-1.6 files: loaded, or refused with the project's own error type."""
    source = tmp_path / "fuzz-legacy.pth"
    if not source.exists():
        saved_legacy_pth(source)
    data = bytearray(source.read_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    target = tmp_path / "fuzz.pth"
    target.write_bytes(bytes(data[:cut % (len(data) + 1)] if cut is not None else data))
    try:
        with bounded_allocations():
            arrays = pth.read_state_dict(target)
    except FcnBenchError:
        return
    assert all(isinstance(array, np.ndarray) for array in arrays.values())


@settings(max_examples=60, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
@example(edits=[], cut=None)
def test_fuzz_mutated_pth_files(tmp_path, edits, cut):
    """Mutated torch.save files: loaded, or refused with the project's own error type."""
    source = tmp_path / "fuzz-source.pth"
    if not source.exists():
        saved_pth(source)
    data = bytearray(source.read_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    target = tmp_path / "fuzz.pth"
    target.write_bytes(bytes(data[:cut % (len(data) + 1)] if cut is not None else data))
    try:
        with bounded_allocations():
            arrays = pth.read_state_dict(target)
    except FcnBenchError:
        return
    assert all(isinstance(array, np.ndarray) for array in arrays.values())
