"""Checks of the window settings that convolutions, pooling and padding take: strides,
dilations and paddings as Python ints, and the output size they give."""

from __future__ import annotations


def _int_pair(value, name: str, minimum: int) -> tuple[int, int]:
    """A pair of Python ints, each >= minimum; ValueError otherwise."""
    a, b = (int(v) for v in value)
    if a < minimum or b < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {tuple(value)}")
    return a, b


def _padding(padding) -> tuple[int, int, int, int]:
    """((pt, pb), (pl, pr)) as four non-negative Python ints (pt, pb, pl, pr)."""
    (pt, pb), (pl, pr) = padding
    pt, pb = _int_pair((pt, pb), "padding", 0)
    pl, pr = _int_pair((pl, pr), "padding", 0)
    return pt, pb, pl, pr


def _out_size(size: int, pad: int, window: int, stride: int, name: str) -> int:
    """(size + pad - window) // stride + 1, window already dilated; ValueError if < 1."""
    n = (size + pad - window) // stride + 1
    if size + pad < window or n < 1:
        raise ValueError(f"{name}: window {window} larger than padded input {size + pad}")
    return n
