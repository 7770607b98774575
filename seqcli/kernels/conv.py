"""Convolution kernels: chunked im2col + BLAS for Conv2D (and Conv1D as H=1), direct depthwise."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from seqcli.kernels.activations import _as_f32, _bias_or_empty, _check_code, bias_activation_inplace

# Upper bound on the im2col buffer of one chunk of output rows (bytes).
_CHUNK_BYTES = 4 << 20


# ----------------------------------------------------------------------------- geometry helpers


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


# ----------------------------------------------------------------------------- jitted kernels


# Serial on purpose: it alternates with multithreaded BLAS, and a numba thread pool spinning
# against BLAS's made whole convolutions several times slower; a plain copy loop vectorises well.
@njit(cache=True)
def _im2col(x, cols, r0, rows, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w):
    # x (N, H, W, C), output rows r0..r0+rows of (N*OH*OW) -> cols (G, R, KH*KW*Cg), (kh, kw, c)
    _, h, w, _ = x.shape
    groups, _, width = cols.shape
    cg = width // (k_h * k_w)
    for i in range(rows):
        r = r0 + i
        n = r // (out_h * out_w)
        oh = (r // out_w) % out_h
        ow = r % out_w
        for ki in range(k_h):
            ih = oh * sh - pt + ki * dh
            for kj in range(k_w):
                iw = ow * sw - pl + kj * dw
                base = (ki * k_w + kj) * cg
                if 0 <= ih < h and 0 <= iw < w:
                    for g in range(groups):
                        for c in range(cg):
                            cols[g, i, base + c] = x[n, ih, iw, g * cg + c]
                else:
                    for g in range(groups):
                        for c in range(cg):
                            cols[g, i, base + c] = 0.0


@njit(cache=True, parallel=True)
def _depthwise(x, kernel, out, sh, sw, dh, dw, pt, pl):
    # (N, H, W, C) * (KH, KW, C, DM) -> (N, OH, OW, C*DM), channel c*DM + m, no bias
    nb, h, w, c_n = x.shape
    k_h, k_w, _, dm = kernel.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for r in prange(nb * out_h):
        n = r // out_h
        oh = r % out_h
        acc = np.empty(c_n * dm, dtype=np.float64)
        for ow in range(out_w):
            for j in range(c_n * dm):
                acc[j] = 0.0
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
                            acc[c * dm + m] += v * kernel[ki, kj, c, m]
            for j in range(c_n * dm):
                out[n, oh, ow, j] = acc[j]


# ----------------------------------------------------------------------------- public wrappers


def conv2d_forward(
    x, kernel, bias, strides, dilation, padding, groups: int, activation: int
) -> np.ndarray:
    """y[n,oh,ow,f] = act(b[f] + sum x[n, oh*sh-pt+i*dh, ow*sw-pl+j*dw, c] k[i,j,c,f]), grouped."""
    code = _check_code(activation)
    x = _as_f32(x, "x", 4)
    kernel = _as_f32(kernel, "kernel", 4)
    nb, h, w, c_n = x.shape
    k_h, k_w, cg, f = kernel.shape
    groups = int(groups)
    sh, sw = _int_pair(strides, "strides", 1)
    dh, dw = _int_pair(dilation, "dilation", 1)
    pt, pb, pl, pr = _padding(padding)
    if groups < 1 or c_n % groups or f % groups or cg != c_n // groups:
        raise ValueError(
            f"kernel {kernel.shape} does not fit {c_n} input channels in {groups} groups"
        )
    if k_h < 1 or k_w < 1:
        raise ValueError(f"kernel {kernel.shape} has an empty spatial size")
    b = _bias_or_empty(bias, f)
    out_h = _out_size(h, pt + pb, dh * (k_h - 1) + 1, sh, "conv2d height")
    out_w = _out_size(w, pl + pr, dw * (k_w - 1) + 1, sw, "conv2d width")
    out = np.empty((nb, out_h, out_w, f), dtype=np.float32)  # (N, OH, OW, F)
    out2d = out.reshape(nb * out_h * out_w, f)
    if k_h == k_w == 1 and sh == sw == 1 and pt == pb == pl == pr == 0 and groups == 1:
        # 1x1 stride 1: a plain matmul, (N*H*W, C) @ (C, F)
        np.matmul(x.reshape(nb * h * w, c_n), kernel.reshape(c_n, f), out=out2d)
        bias_activation_inplace(out2d, b, code)
        return out
    fg = f // groups
    width = k_h * k_w * cg
    # (KH, KW, Cg, F) -> (G, KH*KW*Cg, F/G), rows in the im2col column order (kh, kw, c)
    wstack = np.ascontiguousarray(kernel.reshape(width, groups, fg).transpose(1, 0, 2))
    total = out2d.shape[0]
    chunk = max(1, min(total, _CHUNK_BYTES // max(1, 4 * width * groups)))
    cols = np.empty((groups, chunk, width), dtype=np.float32)
    for r0 in range(0, total, chunk):
        rows = min(chunk, total - r0)
        _im2col(x, cols, r0, rows, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w)
        block = out2d[r0 : r0 + rows]  # (rows, F)
        if groups == 1:
            np.matmul(cols[0, :rows], wstack[0], out=block)
        else:
            prod = np.matmul(cols[:, :rows], wstack)  # (G, rows, F/G)
            block.reshape(rows, groups, fg)[...] = prod.transpose(1, 0, 2)
    bias_activation_inplace(out2d, b, code)  # one parallel pass: no BLAS/numba ping-pong
    return out


def depthwise_conv2d_forward(
    x, kernel, bias, strides, dilation, padding, activation: int
) -> np.ndarray:
    """y[n,oh,ow,c*DM+m] = act(b + sum_ij x[n, oh*sh-pt+i*dh, ow*sw-pl+j*dw, c] k[i,j,c,m])."""
    code = _check_code(activation)
    x = _as_f32(x, "x", 4)
    kernel = _as_f32(kernel, "kernel", 4)
    nb, h, w, c_n = x.shape
    k_h, k_w, kc, dm = kernel.shape
    if kc != c_n:
        raise ValueError(f"depthwise kernel {kernel.shape} does not match {c_n} input channels")
    if k_h < 1 or k_w < 1:
        raise ValueError(f"kernel {kernel.shape} has an empty spatial size")
    sh, sw = _int_pair(strides, "strides", 1)
    dh, dw = _int_pair(dilation, "dilation", 1)
    pt, pb, pl, pr = _padding(padding)
    b = _bias_or_empty(bias, c_n * dm)
    out_h = _out_size(h, pt + pb, dh * (k_h - 1) + 1, sh, "depthwise conv height")
    out_w = _out_size(w, pl + pr, dw * (k_w - 1) + 1, sw, "depthwise conv width")
    out = np.empty((nb, out_h, out_w, c_n * dm), dtype=np.float32)  # (N, OH, OW, C*DM)
    _depthwise(x, kernel, out, sh, sw, dh, dw, pt, pl)
    bias_activation_inplace(out.reshape(nb * out_h * out_w, c_n * dm), b, code)
    return out
