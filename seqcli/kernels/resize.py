"""Separable image resizing: the (out, in) weight matrices of jax.image.resize (which Keras 3's
`ops.image.resize` calls on JAX) and the kernel that applies one along the height and one along
the width, out = A · x · Bᵀ per channel.

Every method is separable: an output pixel's row (and column) is a weighted sum of input rows
(columns) whose weights depend only on the two sizes, the method and `antialias`. The weights
are jax's `compute_weight_mat` (half-pixel centres, sample position (i + 0.5)/scale - 0.5,
normalised to sum to 1, the kernel widened by 1/scale when antialiasing a downscale), with its
float32 sample positions; `nearest` is jax's floor((i + 0.5) · in / out) in float32, with the
division as XLA folds it (a product by in · (1 / out))."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

RESIZE_METHODS = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5")
"""The interpolations of Keras 3's `ops.image.resize` on JAX."""

_RADIUS = {"bilinear": 1, "bicubic": 2, "lanczos3": 3, "lanczos5": 5}
_F32_EPS = float(np.finfo(np.float32).eps)


def _kernel_values(method: str, x: np.ndarray) -> np.ndarray:
    """The method's filter at distances `x` >= 0 (float64), as jax's `_fill_*_kernel`."""
    if method == "bilinear":  # triangle
        return np.maximum(0.0, 1.0 - np.abs(x))
    if method == "bicubic":  # Keys, a = -0.5
        near = ((1.5 * x - 2.5) * x) * x + 1.0
        far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
        return np.where(x >= 2.0, 0.0, np.where(x >= 1.0, far, near))
    radius = float(_RADIUS[method])  # lanczos3, lanczos5
    y = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius)
    out = np.where(x > 1e-3, y / np.where(x != 0, np.pi**2 * x**2, 1.0), 1.0)
    return np.where(x > radius, 0.0, out)


def resize_weights(in_size: int, out_size: int, method: str, antialias: bool) -> np.ndarray:
    """A (out, in) float32 with out[i] = Σ_p A[i, p] in[p]: jax.image.resize along one axis."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r} (expected one of {RESIZE_METHODS})")
    m, n = int(in_size), int(out_size)
    if m <= 0 or n <= 0:
        raise ValueError(f"sizes must be positive, got in_size={m}, out_size={n}")
    if m == n:  # jax leaves an axis of unchanged size as it is
        return np.eye(n, dtype=np.float32)
    if method == "nearest":
        # jax's (i + 0.5) * in / out in float32, as XLA compiles it: times in * (1 / out)
        step = np.float32(m) * (np.float32(1.0) / np.float32(n))
        index = np.floor((np.arange(n, dtype=np.float32) + np.float32(0.5)) * step)
        index = np.minimum(index.astype(np.int64), m - 1)
        weights = np.zeros((n, m), dtype=np.float32)
        weights[np.arange(n), index] = 1.0
        return weights
    inv_scale = np.float32(1.0 / (n / m))
    kernel_scale = np.float32(max(1.0 / (n / m), 1.0) if antialias else 1.0)
    sample = (np.arange(n, dtype=np.float32) + np.float32(0.5)) * inv_scale - np.float32(0.5)
    distance = np.abs(sample[:, None] - np.arange(m, dtype=np.float32)[None, :]) / kernel_scale
    weights = _kernel_values(method, distance.astype(np.float64))
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(np.abs(total) > 1000.0 * _F32_EPS,
                       weights / np.where(total != 0, total, 1.0), 0.0)
    inside = (sample >= -0.5) & (sample <= m - 0.5)
    weights[~inside] = 0.0
    return weights.astype(np.float32)


def _band(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first and one past the last column holding a non-zero weight."""
    nonzero = matrix != 0
    any_nonzero = nonzero.any(axis=1)
    low = np.where(any_nonzero, nonzero.argmax(axis=1), 0)
    high = np.where(any_nonzero, matrix.shape[1] - nonzero[:, ::-1].argmax(axis=1), 0)
    return low.astype(np.int64), high.astype(np.int64)


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _separable_resize(counter, x, rows, row_low, row_high, cols, col_low, col_high, out):
    # (N, H, W, C) -> (N, OH, OW, C): out[n, i, j] = sum_p rows[i, p] sum_q cols[j, q] x[n, p, q]
    nb, _, w, c_n = x.shape
    out_h, out_w = rows.shape[0], cols.shape[0]
    line = np.empty((w, c_n), dtype=np.float64)  # the output row i before the width pass
    acc = np.empty(c_n, dtype=np.float64)
    r = _next_item(counter)  # taken in turn by the threads
    while r < nb * out_h:
        n = r // out_h
        i = r % out_h
        line[:, :] = 0.0
        for p in range(row_low[i], row_high[i]):
            weight = rows[i, p]
            for q in range(w):
                for c in range(c_n):
                    line[q, c] += weight * x[n, p, q, c]
        for j in range(out_w):
            acc[:] = 0.0
            for q in range(col_low[j], col_high[j]):
                weight = cols[j, q]
                for c in range(c_n):
                    acc[c] += weight * line[q, c]
            for c in range(c_n):
                out[n, i, j, c] = acc[c]
        r = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def separable_resize(x, rows, cols) -> np.ndarray:
    """y[n, i, j, c] = Σ_p Σ_q rows[i, p] cols[j, q] x[n, p, q, c]: (N, H, W, C) -> (N, OH, OW, C)."""
    x = _as_f32(x, "x", 4)
    rows = _as_f32(rows, "rows", 2)
    cols = _as_f32(cols, "cols", 2)
    nb, h, w, c_n = x.shape
    if rows.shape[1] != h or cols.shape[1] != w:
        raise ValueError(f"weights {rows.shape} and {cols.shape} do not fit x {x.shape}")
    row_low, row_high = _band(rows)
    col_low, col_high = _band(cols)
    out = np.empty((nb, rows.shape[0], cols.shape[0], c_n), dtype=np.float32)
    band = float(np.sum(row_high - row_low)) / max(rows.shape[0], 1)
    work = 2.0 * out.size * (band * w / max(cols.shape[0], 1) + math.ceil(
        float(np.sum(col_high - col_low)) / max(cols.shape[0], 1)))
    _parallel(_separable_resize, nb * rows.shape[0], work, x, rows, row_low, row_high,
              cols, col_low, col_high, out)
    return out
