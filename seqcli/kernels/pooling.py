"""Pooling kernels: windowed max/average (padding ignored) and global max/average.

`max_pool2d_forward(..., argmax=True)` returns (y, argmax) for training: argmax[n,oh,ow,c] is
ih*W + iw (int32) of the window's first maximal cell in row-major order, the cell that
`grad_pooling.max_pool2d_backward` sends the window's gradient to.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.geometry import _int_pair, _out_size, _padding
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _max_pool2d(counter, x, out, ph, pw, sh, sw, pt, pl):
    # (N, H, W, C) -> (N, OH, OW, C), max over the real cells of each window; unsigned flat
    # offsets and a select, so that the loop over channels vectorises
    nb, h, w, c_n = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    flat_x = x.reshape(x.size)
    flat_out = out.reshape(out.size)
    channels = np.uintp(c_n)
    best = np.empty(c_n, dtype=np.float32)
    r = _next_item(counter)  # taken in turn by the threads
    while r < nb * out_h:
        n = r // out_h
        oh = r % out_h
        h0 = max(oh * sh - pt, 0)
        h1 = min(oh * sh - pt + ph, h)
        for ow in range(out_w):
            w0 = max(ow * sw - pl, 0)
            w1 = min(ow * sw - pl + pw, w)
            for c in range(channels):
                best[c] = -np.inf
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    src = np.uintp(((n * h + ih) * w + iw) * c_n)
                    for c in range(channels):
                        v = flat_x[src + c]
                        best[c] = v if v > best[c] else best[c]
            dst = np.uintp((r * out_w + ow) * c_n)
            for c in range(channels):
                flat_out[dst + c] = best[c]
        r = _next_item(counter)


@njit(cache=True, nogil=True)
def _max_pool2d_argmax(counter, x, out, arg, ph, pw, sh, sw, pt, pl):
    # (N, H, W, C) -> (N, OH, OW, C): the max as _max_pool2d, and in `arg` ih*W + iw of the
    # first maximal real cell in row-major window order (strictly greater replaces)
    nb, h, w, c_n = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    best = np.empty(c_n, dtype=np.float32)
    first = np.empty(c_n, dtype=np.float32)
    where = np.empty(c_n, dtype=np.int32)
    r = _next_item(counter)  # taken in turn by the threads
    while r < nb * out_h:
        n = r // out_h
        oh = r % out_h
        h0 = max(oh * sh - pt, 0)
        h1 = min(oh * sh - pt + ph, h)
        for ow in range(out_w):
            w0 = max(ow * sw - pl, 0)
            w1 = min(ow * sw - pl + pw, w)
            for c in range(c_n):
                best[c] = -np.inf
                first[c] = x[n, h0, w0, c]
                where[c] = h0 * w + w0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    cell = np.int32(ih * w + iw)
                    for c in range(c_n):
                        v = x[n, ih, iw, c]
                        best[c] = v if v > best[c] else best[c]
                        above = v > first[c]
                        first[c] = v if above else first[c]
                        where[c] = cell if above else where[c]
            for c in range(c_n):
                out[n, oh, ow, c] = best[c]
                arg[n, oh, ow, c] = where[c]
        r = _next_item(counter)


@njit(cache=True, nogil=True)
def _avg_pool2d(counter, x, out, ph, pw, sh, sw, pt, pl):
    # (N, H, W, C) -> (N, OH, OW, C), sum over the real cells / their count
    nb, h, w, c_n = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    flat_x = x.reshape(x.size)
    flat_out = out.reshape(out.size)
    channels = np.uintp(c_n)
    acc = np.empty(c_n, dtype=np.float64)
    r = _next_item(counter)  # taken in turn by the threads
    while r < nb * out_h:
        n = r // out_h
        oh = r % out_h
        h0 = max(oh * sh - pt, 0)
        h1 = min(oh * sh - pt + ph, h)
        for ow in range(out_w):
            w0 = max(ow * sw - pl, 0)
            w1 = min(ow * sw - pl + pw, w)
            for c in range(channels):
                acc[c] = 0.0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    src = np.uintp(((n * h + ih) * w + iw) * c_n)
                    for c in range(channels):
                        acc[c] += flat_x[src + c]
            count = (h1 - h0) * (w1 - w0)
            dst = np.uintp((r * out_w + ow) * c_n)
            for c in range(channels):
                flat_out[dst + c] = acc[c] / count
        r = _next_item(counter)


@njit(cache=True, nogil=True)
def _global_max_pool(counter, x, out):
    # (N, S, C) -> (N, C)
    nb, s_n, c_n = x.shape
    n = _next_item(counter)  # taken in turn by the threads
    while n < nb:
        for c in range(c_n):
            out[n, c] = x[n, 0, c]
        for s in range(1, s_n):
            for c in range(c_n):
                v = x[n, s, c]
                if v > out[n, c]:
                    out[n, c] = v
        n = _next_item(counter)


@njit(cache=True, nogil=True)
def _global_avg_pool(counter, x, out):
    # (N, S, C) -> (N, C)
    nb, s_n, c_n = x.shape
    acc = np.empty(c_n, dtype=np.float64)
    n = _next_item(counter)  # taken in turn by the threads
    while n < nb:
        acc[:] = 0.0
        for s in range(s_n):
            for c in range(c_n):
                acc[c] += x[n, s, c]
        for c in range(c_n):
            out[n, c] = acc[c] / s_n
        n = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _pool_setup(x, pool, strides, padding):
    """Validated (x, ph, pw, sh, sw, pt, pl, out) for a 2D pooling; every window hits real cells."""
    x = _as_f32(x, "x", 4)
    nb, h, w, c_n = x.shape
    ph, pw = _int_pair(pool, "pool size", 1)
    sh, sw = _int_pair(strides, "strides", 1)
    pt, pb, pl, pr = _padding(padding)
    if max(pt, pb) >= ph or max(pl, pr) >= pw:
        raise ValueError(f"pooling padding {padding} must be smaller than the pool {(ph, pw)}")
    out_h = _out_size(h, pt + pb, ph, sh, "pooling height")
    out_w = _out_size(w, pl + pr, pw, sw, "pooling width")
    out = np.empty((nb, out_h, out_w, c_n), dtype=np.float32)
    return x, ph, pw, sh, sw, pt, pl, out


def max_pool2d_forward(x, pool, strides, padding, argmax: bool = False):
    """y[n,oh,ow,c] = max over real cells x[n, oh*sh-pt+i, ow*sw-pl+j, c], 0<=i<ph, 0<=j<pw."""
    x, ph, pw, sh, sw, pt, pl, out = _pool_setup(x, pool, strides, padding)
    if argmax:
        arg = np.empty(out.shape, dtype=np.int32)
        _parallel(_max_pool2d_argmax, out.shape[0] * out.shape[1], 24.0 * out.size * ph * pw, x,
                  out, arg, ph, pw, sh, sw, pt, pl)
        return out, arg
    # (N, H, W, C) -> (N, OH, OW, C), one output row (n, oh) at a time
    _parallel(_max_pool2d, out.shape[0] * out.shape[1], 16.0 * out.size * ph * pw, x, out, ph,
              pw, sh, sw, pt, pl)
    return out


def avg_pool2d_forward(x, pool, strides, padding) -> np.ndarray:
    """y[n,oh,ow,c] = mean over the real (non-padded) cells of the window, as TF 'same'."""
    x, ph, pw, sh, sw, pt, pl, out = _pool_setup(x, pool, strides, padding)
    # (N, H, W, C) -> (N, OH, OW, C), one output row (n, oh) at a time
    _parallel(_avg_pool2d, out.shape[0] * out.shape[1], 16.0 * out.size * ph * pw, x, out, ph,
              pw, sh, sw, pt, pl)
    return out


def _global_setup(x):
    """Validated (x, out) for a global pooling over axis 1 of (N, S, C), S >= 1."""
    x = _as_f32(x, "x", 3)
    if x.shape[1] < 1:
        raise ValueError(f"global pooling needs at least one spatial cell, got shape {x.shape}")
    return x, np.empty((x.shape[0], x.shape[2]), dtype=np.float32)


def global_max_pool_forward(x) -> np.ndarray:
    """y[n, c] = max_s x[n, s, c]; (N, S, C) -> (N, C)."""
    x, out = _global_setup(x)
    _parallel(_global_max_pool, x.shape[0], 16.0 * x.size, x, out)
    return out


def global_avg_pool_forward(x) -> np.ndarray:
    """y[n, c] = mean_s x[n, s, c]; (N, S, C) -> (N, C)."""
    x, out = _global_setup(x)
    _parallel(_global_avg_pool, x.shape[0], 16.0 * x.size, x, out)
    return out
