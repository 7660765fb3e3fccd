"""bench.data.labels: VOC classes, palette, and index-preserving label PNG I/O with clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.core.errors import DataError
from bench.data.labels import (
    NUM_CLASSES,
    VOC_CLASSES,
    VOC_PALETTE,
    encode_label_png,
    invalid_label_values,
    open_image,
    read_label_png,
    write_label_png,
)
from tests.conftest import truncate_file


def test_classes_background_first_21():
    assert len(VOC_CLASSES) == NUM_CLASSES == 21
    assert VOC_CLASSES[0] == "background"
    assert VOC_CLASSES[15] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor"
    assert len(set(VOC_CLASSES)) == 21


def test_palette_is_the_devkit_colormap():
    assert VOC_PALETTE.shape == (256, 3) and VOC_PALETTE.dtype == np.uint8
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                7: (128, 128, 128), 8: (64, 0, 0), 15: (192, 128, 128), 20: (0, 64, 128),
                255: (224, 224, 192)}
    for index, colour in expected.items():
        assert tuple(VOC_PALETTE[index]) == colour, index
    assert len({tuple(c) for c in VOC_PALETTE}) == 256  # a bijection: colours identify indices
    with pytest.raises(ValueError):
        VOC_PALETTE[0, 0] = 1  # shared constant is read-only


def test_roundtrip_keeps_indices_and_writes_a_voc_palette_png(tmp_path):
    labels = np.array([[0, 1, 2, 255], [20, 19, 255, 0], [5, 5, 5, 5]], dtype=np.uint8)
    path = tmp_path / "sub" / "x.png"
    write_label_png(path, labels)
    read_back = read_label_png(path)
    np.testing.assert_array_equal(read_back, labels)
    assert read_back.dtype == np.uint8 and read_back.flags.writeable
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]
        assert image.size == (4, 3)  # (W, H)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary left behind


def test_reads_greyscale_and_16_bit_index_pngs(tmp_path):
    labels = np.array([[0, 3], [255, 20]], dtype=np.uint8)
    Image.fromarray(labels).save(tmp_path / "grey.png")  # mode "L"
    np.testing.assert_array_equal(read_label_png(tmp_path / "grey.png"), labels)
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "16bit.png")
    result = read_label_png(tmp_path / "16bit.png")
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, labels)


def test_rgb_label_is_refused_not_colour_guessed(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(VOC_PALETTE[np.array([[0, 1], [2, 3]])]).save(path)
    with pytest.raises(DataError, match="mode 'RGB'") as info:
        read_label_png(path)
    assert info.value.path == path


def test_out_of_range_values_name_the_file_and_values(tmp_path):
    path = tmp_path / "bad.png"
    write_label_png(path, np.array([[0, 21], [37, 255]], dtype=np.uint8))
    with pytest.raises(DataError) as info:
        read_label_png(path)
    message = str(info.value)
    assert str(path) in message and "21, 37" in message and "outside 0-20 and 255" in message


def test_predictions_may_not_contain_void(tmp_path):
    path = tmp_path / "pred.png"
    write_label_png(path, np.array([[0, 255]], dtype=np.uint8))
    with pytest.raises(DataError, match=r"prediction values outside 0-20: 255"):
        read_label_png(path, what="prediction", allow_void=False)


def test_invalid_values_listing():
    labels = np.array([[0, 20, 255, 21, 254, 21]], dtype=np.uint8)
    assert invalid_label_values(labels).tolist() == [21, 254]
    assert invalid_label_values(labels, allow_void=False).tolist() == [21, 254, 255]
    assert invalid_label_values(np.array([[-1, 3]]), num_classes=4).tolist() == [-1]
    assert invalid_label_values(np.zeros((0, 0), dtype=np.uint8)).size == 0


@pytest.mark.parametrize("damage", ["missing", "text", "empty", "truncated", "directory"])
def test_decode_errors_are_data_errors_naming_the_file(tmp_path, damage):
    path = tmp_path / "label.png"
    rng = np.random.default_rng(0)
    write_label_png(path, rng.integers(0, 21, size=(64, 64), dtype=np.uint8))
    if damage == "missing":
        path.unlink()
    elif damage == "text":
        path.write_text("not a png")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        truncate_file(path, 0.6)
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises(DataError) as info:
        read_label_png(path)
    assert info.value.path == path
    assert str(info.value).startswith(str(path))


def test_truncated_png_passes_open_but_fails_decode(tmp_path):
    """Pillow opens a truncated PNG lazily; open_image must force the decode."""
    path = tmp_path / "t.png"
    write_label_png(path, np.random.default_rng(1).integers(0, 21, (80, 80), dtype=np.uint8))
    truncate_file(path, 0.5)
    Image.open(path).close()  # the header alone is fine
    with pytest.raises(DataError, match="cannot decode image"):
        open_image(path)


def test_encode_rejects_non_2d_or_out_of_byte_range():
    with pytest.raises(ValueError, match="2-D"):
        encode_label_png(np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        encode_label_png(np.array([[0, 300]]))


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.png"
    with pytest.raises(ValueError):
        write_label_png(path, np.zeros((2, 2, 2), dtype=np.uint8))
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_write_label_png_to_an_impossible_path_names_it(tmp_path):
    """QA: predictions saved under a path whose parent is a file raised a bare OSError."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(DataError, match=r"cannot write the label PNG: .*a-file is a file"):
        write_label_png(blocker / "x.png", np.zeros((2, 2), np.uint8))
