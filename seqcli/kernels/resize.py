"""Separable image resizing: out = A · x · Bᵀ per image and channel, with a constant (out, in)
weight matrix along the height (A) and one along the width (B), each row a band of non-zero
weights (the matrices of jax.image.resize are in `layers/shaping.py`)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

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
    """y[n, i, j] = Σ_p Σ_q rows[i, p] cols[j, q] x[n, p, q]: (N, H, W, C) -> (N, OH, OW, C)."""
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
