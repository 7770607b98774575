"""Small PNG images of arrays without Pillow: 8-bit grayscale or RGB, written with zlib."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_image(pixels: np.ndarray) -> bytes:
    """PNG bytes of `pixels`: uint8 (H, W) grayscale or (H, W, 3) RGB; every row unfiltered."""
    height, width = pixels.shape[:2]
    color_type = 0 if pixels.ndim == 2 else 2
    rows = np.zeros((height, 1 + pixels[0].size), np.uint8)  # a filter byte (0) before each row
    rows[:, 1:] = pixels.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def data_uri(png: bytes) -> str:
    """`png` as a `data:` URI, for an `<img src>` that fetches nothing."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def to_pixels(values: np.ndarray) -> np.ndarray:
    """`values` stretched to 0-255 (uint8) between their smallest and largest finite value; a
    constant array is mid-grey, NaN and infinities black."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low, high = values[finite].min(), values[finite].max()
    if high == low:
        return np.where(finite, 128, 0).astype(np.uint8)
    scaled = np.where(finite, (values - low) * (255.0 / (high - low)), 0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def shrunk(values: np.ndarray, max_side: int) -> np.ndarray:
    """`values` (H, W, ...) averaged over blocks of f x f pixels, the smallest whole f that
    brings both sides to at most `max_side` (cut to whole blocks); unchanged when they are."""
    factor = -(-max(values.shape[:2]) // max_side)
    if factor <= 1:
        return values
    height, width = values.shape[0] // factor, values.shape[1] // factor
    if height == 0 or width == 0:  # a thin strip: every factor-th value
        return values[::factor, ::factor]
    blocks = values[:height * factor, :width * factor].reshape(
        height, factor, width, factor, *values.shape[2:])
    with np.errstate(invalid="ignore"):
        return blocks.mean(axis=(1, 3))
