"""Hostile checkpoints, cache files and .pth zips (docs/security.md, "Checkpoints, caches and .pth
files"): each is one DataError/WeightsError naming the file and how to recover, never a
traceback, never a silently different result, and bounded in memory.

Every input is generated here; nothing large is committed.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import bench.cache
import bench.checkpoint
from bench.cache import forget_sha256, recorded_hashes, recorded_sha256
from bench.checkpoint import Checkpoint, CheckpointMismatch
from bench.errors import DataError, FcnBenchError

REPO = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=80, deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
IDS = [f"2008_{i:06d}" for i in range(6)]
FINGERPRINT = {"variant": "fcn8s", "backend": "torch", "weights_sha256": "ab" * 32}


def run_limited(code: str, limit: int = 1 << 30) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter whose address space is capped at `limit` bytes."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], preexec_fn=cap, env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------------------------
# Evaluation checkpoints (bench/checkpoint.py)


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
    monkeypatch.setattr(bench.checkpoint, "MAX_CHECKPOINT_BYTES", size - 1)
    refused(checkpoint, "larger than")
    checkpoint.path.unlink()
    checkpoint.path.mkdir()
    refused(checkpoint, "not a regular file")


def test_a_hostile_checkpoint_at_the_size_limit_stays_under_one_gib(tmp_path):
    """32 MiB of two-character ids: the worst case for objects per byte that the bound allows.
    Parsed (it is under the limit) and refused by the fingerprint, all under a 1 GiB cap."""
    path = tmp_path / "big.json"
    count = (bench.checkpoint.MAX_CHECKPOINT_BYTES - 200) // 5
    path.write_bytes(b'{"format": "fcn-bench-checkpoint", "format_version": 1, "fingerprint": '
                     b'{}, "confusion_matrix": [[0]], "ids_done": [' + b'"ab",' * (count - 1)
                     + b'"ab"]}')
    assert path.stat().st_size <= bench.checkpoint.MAX_CHECKPOINT_BYTES
    result = run_limited(
        "import sys\nfrom bench.checkpoint import Checkpoint, CheckpointMismatch\n"
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
# Recorded checksums (bench/cache.py)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(bench.cache.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache" / bench.cache.RECORDED_HASHES


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
    monkeypatch.setattr(bench.cache, "MAX_RECORDED_BYTES", 50)
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


# Keep `zipfile` imported for the .pth section below.
_ = zipfile
