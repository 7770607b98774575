"""Pooling gradients, routed as jax.grad of Keras 3's pooling layers does.

Windowed max pooling sends each window's gradient to its first maximal real cell in row-major
window order (XLA's select-and-scatter, as TensorFlow's MaxPoolGrad); padded cells never
receive any. Global max pooling is a reduce-max, whose gradient is split equally between tied
maxima. Average pooling divides by the number of real cells of each window.

`max_pool2d_backward` takes the windows' maximal cells as the training forward records them
(`max_pool2d_forward(..., argmax=True)`), or finds them again from x when given none.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.geometry import _int_pair, _out_size, _padding
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.pooling import max_pool2d_forward
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True)
def _window_range(i, pad, pool, stride, n_out):
    """The outputs o with o*stride - pad <= i < o*stride - pad + pool, as range bounds."""
    a = i + pad - pool + 1
    lo = 0 if a <= 0 else (a + stride - 1) // stride
    hi = min((i + pad) // stride + 1, n_out)
    return lo, hi


@njit(cache=True, nogil=True)
def _max_pool2d_backward(counter, dy, arg, dx, disjoint):
    # (N, OH, OW, C) -> (N, H, W, C): each window's dy added to its argmax cell in row-major
    # window order, in float64 (straight into dx when no two windows share a cell)
    nb, h, w, c_n = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    size = h * w * c_n
    acc = np.empty(0 if disjoint else size, dtype=np.float64)
    n = _next_item(counter)
    while n < nb:
        flat = dx[n].reshape(size)
        if disjoint:
            flat[:] = 0.0
            for oh in range(out_h):
                for ow in range(out_w):
                    for c in range(c_n):
                        flat[arg[n, oh, ow, c] * c_n + c] = np.float32(0.0) + dy[n, oh, ow, c]
        else:
            acc[:] = 0.0
            for oh in range(out_h):
                for ow in range(out_w):
                    for c in range(c_n):
                        acc[arg[n, oh, ow, c] * c_n + c] += dy[n, oh, ow, c]
            for i in range(size):
                flat[i] = acc[i]
        n = _next_item(counter)


@njit(cache=True, nogil=True)
def _avg_pool2d_backward(counter, dy, dx, ph, pw, sh, sw, pt, pl):
    # (N, OH, OW, C) -> (N, H, W, C): dx = sum over windows holding the cell of dy / real count
    nb, h, w, c_n = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    r = _next_item(counter)
    while r < nb * h:
        n = r // h
        ih = r % h
        oh0, oh1 = _window_range(ih, pt, ph, sh, out_h)
        acc = np.empty(c_n, dtype=np.float64)
        for iw in range(w):
            ow0, ow1 = _window_range(iw, pl, pw, sw, out_w)
            for c in range(c_n):
                acc[c] = 0.0
            for oh in range(oh0, oh1):
                rows = min(oh * sh - pt + ph, h) - max(oh * sh - pt, 0)
                for ow in range(ow0, ow1):
                    cols = min(ow * sw - pl + pw, w) - max(ow * sw - pl, 0)
                    inv = 1.0 / (rows * cols)
                    for c in range(c_n):
                        acc[c] += dy[n, oh, ow, c] * inv
            for c in range(c_n):
                dx[n, ih, iw, c] = acc[c]
        r = _next_item(counter)


@njit(cache=True, nogil=True)
def _global_max_pool_backward(counter, x, dy, dx):
    # (N, C) -> (N, S, C): dy[n, c] shared equally by the cells equal to max_s x[n, s, c]
    nb, s_n, c_n = x.shape
    n = _next_item(counter)
    while n < nb:
        best = np.empty(c_n, dtype=np.float32)
        count = np.zeros(c_n, dtype=np.int64)
        for c in range(c_n):
            best[c] = x[n, 0, c]
        for s in range(1, s_n):
            for c in range(c_n):
                if x[n, s, c] > best[c]:
                    best[c] = x[n, s, c]
        for s in range(s_n):
            for c in range(c_n):
                if x[n, s, c] == best[c]:
                    count[c] += 1
        for s in range(s_n):
            for c in range(c_n):
                dx[n, s, c] = dy[n, c] / count[c] if x[n, s, c] == best[c] else 0.0
        n = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _pool_geometry(shape, pool, strides, padding, dy):
    """Validated (dy, ph, pw, sh, sw, pt, pl) for the backward of a 2D pooling of `shape`."""
    if len(shape) != 4:
        raise ValueError(f"pooling input must have shape (N, H, W, C), got {tuple(shape)}")
    nb, h, w, c_n = (int(v) for v in shape)
    ph, pw = _int_pair(pool, "pool size", 1)
    sh, sw = _int_pair(strides, "strides", 1)
    pt, pb, pl, pr = _padding(padding)
    if max(pt, pb) >= ph or max(pl, pr) >= pw:
        raise ValueError(f"pooling padding {padding} must be smaller than the pool {(ph, pw)}")
    out_h = _out_size(h, pt + pb, ph, sh, "pooling height")
    out_w = _out_size(w, pl + pr, pw, sw, "pooling width")
    dy = _as_f32(dy, "dy", 4)
    if dy.shape != (nb, out_h, out_w, c_n):
        raise ValueError(f"dy must have shape {(nb, out_h, out_w, c_n)}, got {dy.shape}")
    return dy, ph, pw, sh, sw, pt, pl


def max_pool2d_backward(x, pool, strides, padding, dy, argmax=None) -> np.ndarray:
    """dx[n,ih,iw,c] = sum of dy over the windows whose first row-major maximum is (ih, iw)."""
    x = _as_f32(x, "x", 4)
    dy, ph, pw, sh, sw, pt, pl = _pool_geometry(x.shape, pool, strides, padding, dy)
    if argmax is None:
        argmax = max_pool2d_forward(x, pool, strides, padding, argmax=True)[1]
    elif argmax.dtype != np.int32 or argmax.shape != dy.shape:
        raise ValueError(f"argmax must be int32 of shape {dy.shape}, got {argmax.dtype} "
                         f"{argmax.shape}")
    dx = np.empty_like(x)  # (N, H, W, C)
    _parallel(_max_pool2d_backward, dx.shape[0], 16.0 * (dx.size + dy.size), dy,
              np.ascontiguousarray(argmax), dx, sh >= ph and sw >= pw)
    return dx


def avg_pool2d_backward(input_shape, pool, strides, padding, dy) -> np.ndarray:
    """dx[n,ih,iw,c] = sum over the windows holding (ih, iw) of dy / (real cells in the window)."""
    dy, ph, pw, sh, sw, pt, pl = _pool_geometry(input_shape, pool, strides, padding, dy)
    dx = np.empty(tuple(int(v) for v in input_shape), dtype=np.float32)  # (N, H, W, C)
    _parallel(_avg_pool2d_backward, dx.shape[0] * dx.shape[1], 2.0 * dx.size * ph * pw, dy, dx,
              ph, pw, sh, sw, pt, pl)
    return dx


def _global_dy(shape, dy) -> np.ndarray:
    """dy as float32 (N, C) for a global pooling of (N, S, C) `shape`, S >= 1."""
    if len(shape) != 3 or shape[1] < 1:
        raise ValueError(f"global pooling input must be (N, S, C) with S >= 1, got {shape}")
    dy = _as_f32(dy, "dy", 2)
    if dy.shape != (shape[0], shape[2]):
        raise ValueError(f"dy must have shape {(shape[0], shape[2])}, got {dy.shape}")
    return dy


def global_max_pool_backward(x, dy) -> np.ndarray:
    """dx[n, s, c] = dy[n, c] / #ties if x[n, s, c] = max_s x[n, s, c], else 0 (as reduce_max)."""
    x = _as_f32(x, "x", 3)
    dy = _global_dy(x.shape, dy)
    dx = np.empty_like(x)  # (N, S, C)
    _parallel(_global_max_pool_backward, x.shape[0], 4.0 * x.size, x, dy, dx)
    return dx


def global_avg_pool_backward(input_shape, dy) -> np.ndarray:
    """dx[n, s, c] = dy[n, c] / S; (N, C) -> (N, S, C)."""
    shape = tuple(int(v) for v in input_shape)
    dy = _global_dy(shape, dy)
    scale = np.float32(1.0 / shape[1])
    return np.ascontiguousarray(np.broadcast_to((dy * scale)[:, None, :], shape))
