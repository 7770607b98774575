"""Reshaping gradients: crop for zero padding, block sums for nearest upsampling, rescaling."""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.geometry import _int_pair, _padding
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _upsample_nearest_backward(counter, dy, dx, sh, sw):
    # (N, H*sh, W*sw, C) -> (N, H, W, C): dx[n, i, j] = sum of the sh x sw block at (i*sh, j*sw)
    nb, h, w, c_n = dx.shape
    r = _next_item(counter)
    while r < nb * h:
        n = r // h
        i = r % h
        acc = np.empty(c_n, dtype=np.float64)
        for j in range(w):
            for c in range(c_n):
                acc[c] = 0.0
            for a in range(i * sh, i * sh + sh):
                for b in range(j * sw, j * sw + sw):
                    for c in range(c_n):
                        acc[c] += dy[n, a, b, c]
            for c in range(c_n):
                dx[n, i, j, c] = acc[c]
        r = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def zero_pad2d_backward(padding, dy) -> np.ndarray:
    """dx = dy[:, pt:-pb, pl:-pr, :]: (N, H+pt+pb, W+pl+pr, C) -> (N, H, W, C)."""
    dy = _as_f32(dy, "dy", 4)
    pt, pb, pl, pr = _padding(padding)
    nb, out_h, out_w, _ = dy.shape
    if out_h < pt + pb or out_w < pl + pr:
        raise ValueError(f"dy {dy.shape} is smaller than the padding {padding}")
    return np.ascontiguousarray(dy[:, pt : out_h - pb, pl : out_w - pr, :])


def upsample2d_nearest_backward(size, dy) -> np.ndarray:
    """dx[n, i, j, c] = sum_{a<sh, b<sw} dy[n, i*sh + a, j*sw + b, c], the repeated block summed."""
    dy = _as_f32(dy, "dy", 4)
    sh, sw = _int_pair(size, "upsampling size", 1)
    nb, out_h, out_w, c_n = dy.shape
    if out_h % sh or out_w % sw:
        raise ValueError(f"dy {dy.shape} is not a multiple of the upsampling size {(sh, sw)}")
    dx = np.empty((nb, out_h // sh, out_w // sw, c_n), dtype=np.float32)
    _parallel(_upsample_nearest_backward, nb * dx.shape[1], 2.0 * dy.size, dy, dx, sh, sw)
    return dx


def rescale_backward(scale: float, dy) -> np.ndarray:
    """dx = dy * scale, any shape, in float32 (the offset has no gradient)."""
    dy = _as_f32(dy, "dy")
    dx = np.empty_like(dy)  # stays an array for 0-d dy
    np.multiply(dy, np.float32(scale), out=dx)
    return dx
