"""The affine resampling of RandomRotation, RandomZoom and RandomTranslation: Keras's
`ops.image.affine_transform` on the JAX backend (jax.scipy.ndimage.map_coordinates, order 0
or 1, with its fill modes), one 2x3 matrix per image."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

INTERPOLATIONS = {"nearest": 0, "bilinear": 1}
"""Keras's interpolation names → the kernels' codes (map_coordinates' order)."""
FILL_MODES = {"constant": 0, "nearest": 1, "wrap": 2, "reflect": 3}
"""Keras's fill modes → the kernels' codes."""

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True)
def _fix_index(index, size, fill_mode):
    # map_coordinates' index fixers; constant leaves the index (the caller checks it)
    if fill_mode == 1:  # nearest: (a a | a b c d | d d)
        return min(max(index, 0), size - 1)
    if fill_mode == 2:  # wrap: (a b c d | a b c d | a b c d)
        return index % size
    if fill_mode == 3:  # reflect: (d c b a | a b c d | d c b a), half-sample symmetric
        period = 2 * size
        folded = index % period
        return folded if folded < size else period - 1 - folded
    return index


@njit(cache=True)
def _round_half_away(value):
    # lax.round: halves away from zero, computed in float64 so that v + 0.5 is exact
    v = np.float64(value)
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


@njit(cache=True)
def _source(transforms, n, i, j):
    # the input coordinates (row, col) that output pixel (i, j) of image n samples, float32
    # as Keras: row = (i*b1 + j*b0) + b2, col = (i*a1 + j*a0) + a2
    fi, fj = np.float32(i), np.float32(j)
    row = (fi * transforms[n, 4] + fj * transforms[n, 3]) + transforms[n, 5]
    col = (fi * transforms[n, 1] + fj * transforms[n, 0]) + transforms[n, 2]
    return row, col


@njit(cache=True)
def _bilinear_corners(row, col):
    # the rows and columns of the 2x2 input pixels around (row, col), and their weights along
    # each axis, float32 as map_coordinates: shared by the resampling and its transpose
    one = np.float32(1.0)
    low_row, low_col = math.floor(row), math.floor(col)
    up_wr = np.float32(row - np.float32(low_row))
    up_wc = np.float32(col - np.float32(low_col))
    return ((int(low_row), int(low_row) + 1), (int(low_col), int(low_col) + 1),
            (one - up_wr, up_wr), (one - up_wc, up_wc))


@njit(cache=True, nogil=True)
def _affine_transform(counter, x, transforms, out, interpolation, fill_mode, fill_value):
    # (N, H, W, C) -> (N, H, W, C), one output row of one image per item
    nb, h, w, c_n = x.shape
    r = _next_item(counter)
    while r < nb * h:
        n = r // h
        i = r % h
        for j in range(w):
            row, col = _source(transforms, n, i, j)
            if interpolation == 0:
                si, sj = _round_half_away(row), _round_half_away(col)
                inside = 0 <= si < h and 0 <= sj < w
                if fill_mode == 0 and not inside:
                    for c in range(c_n):
                        out[n, i, j, c] = fill_value
                else:
                    si, sj = _fix_index(si, h, fill_mode), _fix_index(sj, w, fill_mode)
                    for c in range(c_n):
                        out[n, i, j, c] = x[n, si, sj, c]
                continue
            rows, cols, row_weights, col_weights = _bilinear_corners(row, col)
            for c in range(c_n):
                total = np.float32(0.0)
                for a in range(2):  # the corners in map_coordinates' order, summed in float32
                    for b in range(2):
                        weight = np.float32(row_weights[a] * col_weights[b])
                        si, sj = rows[a], cols[b]
                        if fill_mode == 0 and not (0 <= si < h and 0 <= sj < w):
                            value = fill_value
                        else:
                            value = x[n, _fix_index(si, h, fill_mode),
                                      _fix_index(sj, w, fill_mode), c]
                        term = np.float32(weight * value)
                        total = term if a == 0 and b == 0 else np.float32(total + term)
                out[n, i, j, c] = total
        r = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _check_transforms(transforms, batch: int) -> np.ndarray:
    """`transforms` as float32 (N, 6) rows (a0, a1, a2, b0, b1, b2); ValueError otherwise."""
    t = _as_f32(transforms, "transforms", 2)
    if t.shape != (batch, 6):
        raise ValueError(f"transforms must have shape ({batch}, 6), got {t.shape}")
    return t


def _check_codes(interpolation: int, fill_mode: int) -> tuple[int, int]:
    """The interpolation and fill-mode codes as ints; ValueError for an unknown one."""
    if interpolation not in INTERPOLATIONS.values() or fill_mode not in FILL_MODES.values():
        raise ValueError(f"unknown interpolation {interpolation!r} or fill mode {fill_mode!r}")
    return int(interpolation), int(fill_mode)


def affine_transform_forward(x, transforms, interpolation: int, fill_mode: int,
                             fill_value: float) -> np.ndarray:
    """y[n, i, j, c] = x[n] sampled at (b0·j + b1·i + b2, a0·j + a1·i + a2), channel c."""
    x = _as_f32(x, "x", 4)
    transforms = _check_transforms(transforms, x.shape[0])
    interpolation, fill_mode = _check_codes(interpolation, fill_mode)
    out = np.empty_like(x)
    if x.size:
        _parallel(_affine_transform, x.shape[0] * x.shape[1], 40.0 * x.size, x, transforms,
                  out, interpolation, fill_mode, np.float32(fill_value))
    return out
