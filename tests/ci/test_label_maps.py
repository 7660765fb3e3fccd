"""Predicted label maps inside golden records: encoding, bounded decoding, changed pixels
(bench/ci/label_maps.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.ci.label_maps import decode_label_maps, encode_label_maps
from bench.ci.record_files import RecordError


def test_label_maps_round_trip_and_count_changes():
    labels = [np.arange(12, dtype=np.uint8).reshape(3, 4), np.zeros((2, 5), np.uint8)]
    encoded = encode_label_maps(labels)
    decoded = decode_label_maps(encoded)
    assert decoded.pixels.size == 22
    changed = [labels[0], np.ones((2, 5), np.uint8)]
    assert decoded.changed_pixels(decode_label_maps(encode_label_maps(changed))) == 10
    with pytest.raises(RecordError, match="label_maps"):
        decode_label_maps("zlib+base64:!!!")
