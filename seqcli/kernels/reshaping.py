"""Reshaping kernels: 2D zero padding, nearest-neighbour upsampling, rescaling."""

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
def _zero_pad2d(counter, x, out, pt, pl):
    # (N, H, W, C) -> (N, H+pt+pb, W+pl+pr, C)
    nb, h, w, c_n = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    r = _next_item(counter)  # taken in turn by the threads
    while r < nb * out_h:
        n = r // out_h
        oh = r % out_h
        ih = oh - pt
        for ow in range(out_w):
            iw = ow - pl
            if 0 <= ih < h and 0 <= iw < w:
                for c in range(c_n):
                    out[n, oh, ow, c] = x[n, ih, iw, c]
            else:
                for c in range(c_n):
                    out[n, oh, ow, c] = 0.0
        r = _next_item(counter)


@njit(cache=True, nogil=True)
def _upsample_nearest(counter, x, out, sh, sw):
    # (N, H, W, C) -> (N, H*sh, W*sw, C), out[n, i, j] = x[n, i // sh, j // sw]
    nb, _, _, c_n = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    r = _next_item(counter)  # taken in turn by the threads
    while r < nb * out_h:
        n = r // out_h
        oh = r % out_h
        for ow in range(out_w):
            for c in range(c_n):
                out[n, oh, ow, c] = x[n, oh // sh, ow // sw, c]
        r = _next_item(counter)


@njit(cache=True)
def _rescale(x, scale, offset, out):
    # (S,) -> (S,), float32 arithmetic as Keras
    for i in range(x.shape[0]):
        out[i] = x[i] * scale + offset


# ----------------------------------------------------------------------------- public wrappers


def zero_pad2d_forward(x, padding) -> np.ndarray:
    """y = x surrounded by zeros: (N, H, W, C) -> (N, H+pt+pb, W+pl+pr, C)."""
    x = _as_f32(x, "x", 4)
    pt, pb, pl, pr = _padding(padding)
    nb, h, w, c_n = x.shape
    out = np.empty((nb, h + pt + pb, w + pl + pr, c_n), dtype=np.float32)
    _parallel(_zero_pad2d, nb * out.shape[1], 16.0 * out.size, x, out, pt, pl)
    return out


def upsample2d_nearest_forward(x, size) -> np.ndarray:
    """y[n, i, j, c] = x[n, i // sh, j // sw, c]: (N, H, W, C) -> (N, H*sh, W*sw, C)."""
    x = _as_f32(x, "x", 4)
    sh, sw = _int_pair(size, "upsampling size", 1)
    nb, h, w, c_n = x.shape
    out = np.empty((nb, h * sh, w * sw, c_n), dtype=np.float32)
    _parallel(_upsample_nearest, nb * out.shape[1], 16.0 * out.size, x, out, sh, sw)
    return out


def rescale_forward(x, scale: float, offset: float) -> np.ndarray:
    """y = x * scale + offset, any shape, in float32 (scale and offset cast as Keras does)."""
    x = _as_f32(x, "x")
    out = np.empty_like(x)
    _rescale(x.reshape(-1), np.float32(scale), np.float32(offset), out.reshape(-1))
    return out
