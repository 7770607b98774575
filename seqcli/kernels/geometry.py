"""Checks of the window settings that convolutions, pooling and padding take: strides,
dilations and paddings as Python ints, the output size they give, and the part of a
convolution's window that reads input (`UsefulWindow`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


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


class AxisTaps(NamedTuple):
    """One axis of a trimmed convolution (`UsefulWindow`)."""

    first_tap: int
    taps: int
    start: int
    """First input cell read."""
    end: int
    """One past the last input cell read."""
    pad_before: int
    pad_after: int
    zeroed: bool
    """No tap reads input: one tap kept, its weights zero."""


class UsefulWindow:
    """The taps of a convolution's kernel that read input rather than only padding, and the
    input and padding they read. Tap i of an axis reads cells o·s - p + i·d (o < out); taps that
    only ever read padding add nothing, so the convolution with them dropped (taps t0..t1 of
    each axis, a contiguous range) and its padding cut to what the others read gives the same
    output at the cost of what the receptive field needs: 'same' padding with a huge dilation
    would otherwise pad by (k-1)·d cells. Where no tap of an axis reads input, one zeroed tap
    stays (the output is then the bias alone)."""

    def __init__(self, spatial, kernel_spatial, strides, dilation, padding):
        self.axes = [_useful_taps(*map(int, values)) for values in zip(
            spatial, kernel_spatial, strides, dilation, *zip(*padding))]
        """Per spatial axis, its `AxisTaps`, or None where nothing is dropped."""
        self.trimmed = any(axis is not None for axis in self.axes)
        """True when some tap or padding is dropped."""
        self.padding = tuple(tuple(side) if axis is None else (axis.pad_before, axis.pad_after)
                             for side, axis in zip(padding, self.axes))
        """((before, after), ...) per spatial axis, of the trimmed convolution."""
        self._zeroed = any(axis is not None and axis.zeroed for axis in self.axes)
        self._cells = (slice(None), *(slice(None) if axis is None else
                                      slice(axis.start, axis.end) for axis in self.axes))
        self._taps = tuple(slice(None) if axis is None else
                           slice(axis.first_tap, axis.first_tap + axis.taps)
                           for axis in self.axes)

    def input(self, x: np.ndarray) -> np.ndarray:
        """`x` (N, *spatial, C) cut to the cells the kept taps read."""
        return np.ascontiguousarray(x[self._cells]) if self.trimmed else x

    def kernel(self, kernel: np.ndarray) -> np.ndarray:
        """`kernel` (*spatial, ...) cut to the kept taps (zeros where an axis keeps none)."""
        if not self.trimmed:
            return kernel
        kept = kernel[self._taps]
        return np.zeros_like(kept) if self._zeroed else np.ascontiguousarray(kept)

    def input_grad(self, dx: np.ndarray | None, shape: tuple) -> np.ndarray | None:
        """The gradient for the whole input (`shape`) from the trimmed input's `dx`: zero on
        the cells no kept tap reads."""
        if dx is None or not self.trimmed:
            return dx
        full = np.zeros(shape, dtype=dx.dtype)
        full[self._cells] = dx
        return full

    def kernel_grad(self, dkernel: np.ndarray, shape: tuple) -> np.ndarray:
        """The gradient for the whole kernel (`shape`) from the kept taps' `dkernel`: zero on
        the taps that read only padding."""
        if not self.trimmed:
            return dkernel
        full = np.zeros(shape, dtype=dkernel.dtype)
        if not self._zeroed:
            full[self._taps] = dkernel
        return full


def _useful_taps(n: int, k: int, s: int, d: int, before: int, after: int) -> AxisTaps | None:
    """One axis of `UsefulWindow`: tap i reads cells o·s - before + i·d for o < out, so taps
    ceil((before - (out-1)·s) / d) .. floor((n-1 + before) / d) read input. None where all
    do, or where the kernel's own checks refuse the geometry."""
    out = (n + before + after - (k - 1) * d - 1) // s + 1
    if out < 1 or k < 1 or d < 1 or s < 1:
        return None
    first_tap = -(-max(0, before - (out - 1) * s) // d)
    last_tap = min(k - 1, (n - 1 + before) // d)
    if first_tap == 0 and last_tap == k - 1:
        return None
    zeroed = first_tap > last_tap
    taps = 1 if zeroed else last_tap - first_tap + 1
    shift = 0 if zeroed else before - first_tap * d  # the first kept tap's padding before
    start, pad_before = max(0, -shift), max(0, shift)
    extent = (out - 1) * s + (taps - 1) * d + 1  # the padded cells the kept taps span
    end = min(n, start + extent - pad_before)
    return AxisTaps(0 if zeroed else first_tap, taps, start, end, pad_before,
                    extent - pad_before - (end - start), zeroed)
