"""Convolution gradients: chunked im2col/col2im + BLAS for Conv2D, direct loops for depthwise.

Both take dy_pre, the gradient w.r.t. the pre-activation output: apply `activation_backward`
for the fused activation first. Geometry as the forwards in `seqcli.kernels.conv` (Conv1D as
H=1); db = sum of dy_pre over (N, OH, OW); dx is None when `input_grad` is false (first layer).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.geometry import UsefulWindow, _int_pair, _out_size, _padding
from seqcli.kernels.im2col import _im2col
from seqcli.kernels.threads import _n_blocks, _next_item, _parallel

# Upper bound on the im2col buffer of one chunk of output rows (bytes).
_CHUNK_BYTES = 4 << 20


# ----------------------------------------------------------------------------- jitted kernels


# Serial, as the forward's im2col (im2col._im2col, used here too): these alternate with
# multithreaded BLAS calls.
@njit(cache=True)
def _scatter_cols(dcols, dx, r0, rows, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w):
    # col2im, the transpose of im2col._im2col: dcols (G, R, KH*KW*Cg) added into dx (N, H, W, C)
    _, h, w, _ = dx.shape
    groups, _, width = dcols.shape
    cg = width // (k_h * k_w)
    for i in range(rows):
        r = r0 + i
        n = r // (out_h * out_w)
        oh = (r // out_w) % out_h
        ow = r % out_w
        for ki in range(k_h):
            ih = oh * sh - pt + ki * dh
            if ih < 0 or ih >= h:
                continue
            for kj in range(k_w):
                iw = ow * sw - pl + kj * dw
                if iw < 0 or iw >= w:
                    continue
                base = (ki * k_w + kj) * cg
                for g in range(groups):
                    for c in range(cg):
                        dx[n, ih, iw, g * cg + c] += dcols[g, i, base + c]


@njit(cache=True, nogil=True)
def _depthwise_input_grad(counter, dy, kernel, dx, sh, sw, dh, dw, pt, pl):
    # (N, OH, OW, C*DM) -> (N, H, W, C): dx[n,ih,iw,c] = sum_{i,j,m} dy[n,oh,ow,c*DM+m] k[i,j,c,m]
    # over the (oh, ow) with oh*sh - pt + i*dh = ih and ow*sw - pl + j*dw = iw (a gather)
    nb, h, w, c_n = dx.shape
    k_h, k_w, _, dm = kernel.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    r = _next_item(counter)
    while r < nb * h:
        n = r // h
        ih = r % h
        acc = np.empty(c_n, dtype=np.float64)
        for iw in range(w):
            for c in range(c_n):
                acc[c] = 0.0
            for ki in range(k_h):
                t = ih + pt - ki * dh
                if t < 0 or t % sh != 0 or t // sh >= out_h:
                    continue
                oh = t // sh
                for kj in range(k_w):
                    u = iw + pl - kj * dw
                    if u < 0 or u % sw != 0 or u // sw >= out_w:
                        continue
                    ow = u // sw
                    for c in range(c_n):
                        for m in range(dm):
                            acc[c] += np.float64(dy[n, oh, ow, c * dm + m]) * kernel[ki, kj, c, m]
            for c in range(c_n):
                dx[n, ih, iw, c] = acc[c]
        r = _next_item(counter)


@njit(cache=True, nogil=True)
def _depthwise_kernel_grad(counter, x, dy, partial, sh, sw, dh, dw, pt, pl):
    # partial (T, KH, KW, C, DM), float64: block t sums x[n,ih,iw,c] dy[n,oh,ow,c*DM+m] over its
    # share of the (n, oh) rows; each block writes only its own slice
    nb, h, w, c_n = x.shape
    n_blocks, k_h, k_w, _, dm = partial.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    total = nb * out_h
    t = _next_item(counter)
    while t < n_blocks:
        part = partial[t]
        part[...] = 0.0
        for r in range(t * total // n_blocks, (t + 1) * total // n_blocks):
            n = r // out_h
            oh = r % out_h
            for ow in range(out_w):
                for ki in range(k_h):
                    ih = oh * sh - pt + ki * dh
                    if ih < 0 or ih >= h:
                        continue
                    for kj in range(k_w):
                        iw = ow * sw - pl + kj * dw
                        if iw < 0 or iw >= w:
                            continue
                        for c in range(c_n):
                            v = np.float64(x[n, ih, iw, c])
                            for m in range(dm):
                                part[ki, kj, c, m] += v * dy[n, oh, ow, c * dm + m]
        t = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _geometry(x, kernel, strides, dilation, padding, dy, channels_out, name):
    """Validated (sh, sw, dh, dw, pt, pl, out_h, out_w) and dy as float32, for either conv."""
    nb, h, w, _ = x.shape
    k_h, k_w = kernel.shape[:2]
    if k_h < 1 or k_w < 1:
        raise ValueError(f"kernel {kernel.shape} has an empty spatial size")
    sh, sw = _int_pair(strides, "strides", 1)
    dh, dw = _int_pair(dilation, "dilation", 1)
    pt, pb, pl, pr = _padding(padding)
    out_h = _out_size(h, pt + pb, dh * (k_h - 1) + 1, sh, f"{name} height")
    out_w = _out_size(w, pl + pr, dw * (k_w - 1) + 1, sw, f"{name} width")
    dy = _as_f32(dy, "dy", 4)
    if dy.shape != (nb, out_h, out_w, channels_out):
        raise ValueError(f"dy must have shape {(nb, out_h, out_w, channels_out)}, got {dy.shape}")
    return dy, sh, sw, dh, dw, pt, pl, out_h, out_w


def _bias_grad(dy2d: np.ndarray) -> np.ndarray:
    """sum over rows of (R, F), accumulated in float64."""
    return dy2d.sum(axis=0, dtype=np.float64).astype(np.float32)


def conv2d_backward(
    x, kernel, strides, dilation, padding, groups: int, dy_pre, *, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx, dk, db): dk[i,j,c,f] = sum x[n, oh*sh-pt+i*dh, ow*sw-pl+j*dw, c] dy[n,oh,ow,f]."""
    x = _as_f32(x, "x", 4)
    kernel = _as_f32(kernel, "kernel", 4)
    nb, h, w, c_n = x.shape
    k_h, k_w, cg, f = kernel.shape
    groups = int(groups)
    if groups < 1 or c_n % groups or f % groups or cg != c_n // groups:
        raise ValueError(
            f"kernel {kernel.shape} does not fit {c_n} input channels in {groups} groups"
        )
    dy, sh, sw, dh, dw, pt, pl, out_h, out_w = _geometry(
        x, kernel, strides, dilation, padding, dy_pre, f, "conv2d"
    )
    window = UsefulWindow(x.shape[1:3], kernel.shape[:2], (sh, sw), (dh, dw), padding)
    if window.trimmed:  # without the taps that read only padding: theirs are zero
        dx, dkernel, dbias = conv2d_backward(window.input(x), window.kernel(kernel), (sh, sw),
                                             (dh, dw), window.padding, groups, dy,
                                             input_grad=input_grad)
        return window.input_grad(dx, x.shape), window.kernel_grad(dkernel, kernel.shape), dbias
    total = nb * out_h * out_w
    dy2d = dy.reshape(total, f)  # (N*OH*OW, F)
    dbias = _bias_grad(dy2d)
    if k_h == k_w == 1 and sh == sw == 1 and (out_h, out_w) == (h, w) and groups == 1:
        # 1x1 stride 1 unpadded: plain matmuls on (N*H*W, C)
        x2d = x.reshape(total, c_n)
        dkernel = np.ascontiguousarray(x2d.T @ dy2d).reshape(1, 1, c_n, f)
        dx = (dy2d @ kernel.reshape(c_n, f).T).reshape(x.shape) if input_grad else None
        return dx, dkernel, dbias
    fg = f // groups
    width = k_h * k_w * cg
    # (KH, KW, Cg, F) -> (G, KH*KW*Cg, F/G), rows in the im2col column order (kh, kw, c)
    wstack = kernel.reshape(width, groups, fg).transpose(1, 0, 2)
    dstack = np.zeros((groups, width, fg), dtype=np.float32)
    dx = np.zeros_like(x) if input_grad else None
    chunk = max(1, min(total, _CHUNK_BYTES // max(1, 4 * width * groups)))
    cols = np.empty((groups, chunk, width), dtype=np.float32)
    geometry = (k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w)
    for r0 in range(0, total, chunk):
        rows = min(chunk, total - r0)
        _im2col(x, cols, r0, rows, *geometry)
        dyg = dy2d[r0 : r0 + rows].reshape(rows, groups, fg).transpose(1, 0, 2)  # (G, rows, F/G)
        dstack += np.matmul(cols[:, :rows].transpose(0, 2, 1), dyg)  # (G, width, F/G)
        if input_grad:
            dcols = np.matmul(dyg, wstack.transpose(0, 2, 1))  # (G, rows, width)
            _scatter_cols(dcols, dx, r0, rows, *geometry)
    # (G, KH*KW*Cg, F/G) -> (KH, KW, Cg, F), filter g*F/G + j
    dkernel = np.ascontiguousarray(dstack.transpose(1, 0, 2)).reshape(k_h, k_w, cg, f)
    return dx, dkernel, dbias


def depthwise_conv2d_backward(
    x, kernel, strides, dilation, padding, dy_pre, *, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx, dk, db): dk[i,j,c,m] = sum x[n, oh*sh-pt+i*dh, ow*sw-pl+j*dw, c] dy[n,oh,ow,c*DM+m]."""
    x = _as_f32(x, "x", 4)
    kernel = _as_f32(kernel, "kernel", 4)
    c_n = x.shape[3]
    k_h, k_w, kc, dm = kernel.shape
    if kc != c_n:
        raise ValueError(f"depthwise kernel {kernel.shape} does not match {c_n} input channels")
    dy, sh, sw, dh, dw, pt, pl, out_h, out_w = _geometry(
        x, kernel, strides, dilation, padding, dy_pre, c_n * dm, "depthwise conv"
    )
    window = UsefulWindow(x.shape[1:3], kernel.shape[:2], (sh, sw), (dh, dw), padding)
    if window.trimmed:  # without the taps that read only padding: theirs are zero
        dx, dkernel, dbias = depthwise_conv2d_backward(
            window.input(x), window.kernel(kernel), (sh, sw), (dh, dw), window.padding, dy,
            input_grad=input_grad)
        return window.input_grad(dx, x.shape), window.kernel_grad(dkernel, kernel.shape), dbias
    dbias = _bias_grad(dy.reshape(-1, c_n * dm))
    n_blocks = _n_blocks(x.shape[0] * out_h)
    partial = np.empty((n_blocks, k_h, k_w, c_n, dm), dtype=np.float64)
    _parallel(_depthwise_kernel_grad, n_blocks, 2.0 * dy.size * k_h * k_w, x, dy, partial, sh, sw,
              dh, dw, pt, pl)
    dkernel = partial.sum(axis=0).astype(np.float32)  # (KH, KW, C, DM)
    dx = None
    if input_grad:
        dx = np.empty_like(x)  # (N, H, W, C)
        _parallel(_depthwise_input_grad, dx.shape[0] * dx.shape[1], 2.0 * dx.size * k_h * k_w * dm,
                  dy, kernel, dx, sh, sw, dh, dw, pt, pl)
    return dx, dkernel, dbias
