"""Prediction pictures for people: the photo blended with class colours, and a legend under it.

Numpy and Pillow. The legend lists the classes present in the prediction, each
with its VOC palette colour and its share of the pixels, largest first.
"""

from __future__ import annotations

import io

import numpy as np

from bench.data.labels import VOC_CLASSES, VOC_PALETTE

OVERLAY_ALPHA = 0.5  # weight of the class colour in the overlay (background pixels untouched)
_SWATCH, _PAD, _ROW = 12, 4, 16  # legend geometry in pixels


def class_name(index: int) -> str:
    return VOC_CLASSES[index] if index < len(VOC_CLASSES) else str(index)


def format_share(count: int, total: int) -> str:
    """'43.2%', or '<0.1%' for a class present in a few pixels (never a misleading '0.0%')."""
    share = count / total
    return "<0.1%" if 0 < share < 0.0005 else f"{share:.1%}"


def class_shares(labels: np.ndarray, num_classes: int = len(VOC_CLASSES)
                 ) -> list[tuple[int, str]]:
    """(class, share text) for every class present, largest first."""
    counts = np.bincount(labels.ravel(), minlength=num_classes)
    return [(int(c), format_share(int(counts[c]), labels.size))
            for c in np.argsort(-counts, kind="stable") if counts[c]]


def blend(rgb: np.ndarray, labels: np.ndarray, alpha: float = OVERLAY_ALPHA,
          background: int | None = 0) -> np.ndarray:
    """uint8 (H, W, 3): every pixel blended with its class colour (VOC palette), except those of
    the `background` class (None: every pixel is a class, e.g. NYUD's wall)."""
    colours = VOC_PALETTE[labels.astype(np.int64) % len(VOC_PALETTE)].astype(np.float32)
    blended = rgb.astype(np.float32)
    foreground = labels != background if background is not None else np.ones_like(labels, bool)
    blended[foreground] = (1 - alpha) * blended[foreground] + alpha * colours[foreground]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def with_legend(picture: np.ndarray, labels: np.ndarray, names: list[str] | None = None):
    """A PIL image: `picture` at the top left, a white legend panel below it (one row per class
    present: colour swatch, name, share). The photo's pixels are untouched."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    num_classes = len(names) if names else len(VOC_CLASSES)
    entries = [(VOC_PALETTE[c % len(VOC_PALETTE)],
                f"{names[c] if names and c < len(names) else class_name(c)} {share}")
               for c, share in class_shares(labels, num_classes)]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max(int(probe.textlength(text, font=font)) for _, text in entries)
    entry_width = _PAD + _SWATCH + _PAD + text_width + 2 * _PAD
    height, width = picture.shape[:2]
    columns = max(1, width // entry_width)
    rows = -(-len(entries) // columns)
    canvas = Image.new("RGB", (max(width, entry_width), height + rows * _ROW + 2 * _PAD), "white")
    canvas.paste(Image.fromarray(picture, "RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, (colour, text) in enumerate(entries):
        left = (index % columns) * entry_width + _PAD
        top = height + _PAD + (index // columns) * _ROW
        draw.rectangle([left, top + 2, left + _SWATCH - 1, top + 2 + _SWATCH - 1],
                       fill=tuple(int(v) for v in colour), outline=(0, 0, 0))
        draw.text((left + _SWATCH + _PAD, top + 2), text, fill=(0, 0, 0), font=font)
    return canvas


def overlay_png(rgb: np.ndarray, labels: np.ndarray, alpha: float = OVERLAY_ALPHA,
                background: int | None = 0, names: list[str] | None = None) -> bytes:
    """PNG bytes: the blended photo with the class legend under it."""
    buffer = io.BytesIO()
    with_legend(blend(rgb, labels, alpha, background), labels, names).save(buffer, "PNG")
    return buffer.getvalue()
