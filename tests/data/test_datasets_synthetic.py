"""bench/data/synthetic_zoo.py: the generated trees are deterministic and in the real layouts."""

from __future__ import annotations

import hashlib

import pytest

from bench.data.synthetic_zoo import WRITERS


def _digest(folder):
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, name):
    first = WRITERS[name](tmp_path / "a", 3, 4)
    second = WRITERS[name](tmp_path / "b", 3, 4)
    third = WRITERS[name](tmp_path / "c", 4, 4)
    assert _digest(first) == _digest(second)
    assert _digest(first) != _digest(third)


def test_layouts_are_the_real_ones(tmp_path):
    for writer in WRITERS.values():
        writer(tmp_path, 0, 2)
    expected = [
        "nyud/data/images/img_5001.png", "nyud/data/hha/img_5001.png",
        "nyud/data/depth/img_5001.png", "nyud/segmentation/img_5001.mat", "nyud/test.txt",
        "SiftFlow/Images/spatial_envelope_256x256_static_8outdoorcategories/coast_syn1.jpg",
        "SiftFlow/GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/coast_syn1.mat",
        "VOCdevkit/VOC2010/ImageSets/Main/val.txt", "pascal-context/trainval/2010_000001.mat",
        "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png",
    ]
    for rel in expected:
        assert (tmp_path / rel).is_file(), rel
