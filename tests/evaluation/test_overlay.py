"""bench.evaluation.overlay: the predict overlay's legend and the class shares it prints."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bench.data.labels import VOC_CLASSES, VOC_PALETTE
from bench.evaluation.overlay import class_shares, format_share, overlay_png


def test_a_class_in_a_few_pixels_is_never_shown_as_0_0_percent():
    assert format_share(1, 250_000) == "<0.1%"
    assert format_share(125_000, 250_000) == "50.0%"
    labels = np.zeros((500, 500), dtype=np.uint8)
    labels[0, 0] = 8  # one "cat" pixel
    assert class_shares(labels) == [(0, "100.0%"), (8, "<0.1%")]


def test_overlay_has_a_legend_with_the_present_classes_colours():
    rgb = np.full((40, 60, 3), 200, dtype=np.uint8)
    labels = np.zeros((40, 60), dtype=np.uint8)
    labels[5:20, 5:30] = 15  # person
    labels[25:35, 40:55] = 7  # car
    picture = np.asarray(Image.open(io.BytesIO(overlay_png(rgb, labels))).convert("RGB"))
    assert picture.shape[0] > 40
    panel = picture[40:].reshape(-1, 3)
    colours = {tuple(c) for c in panel.tolist()}
    for present in (0, 7, 15):
        assert tuple(VOC_PALETTE[present].tolist()) in colours, VOC_CLASSES[present]
    for absent in (8, 12):
        assert tuple(VOC_PALETTE[absent].tolist()) not in colours, VOC_CLASSES[absent]
    np.testing.assert_array_equal(picture[:40, :60][labels == 0], rgb[labels == 0])
