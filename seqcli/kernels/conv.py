"""Convolution for Conv2D (and Conv1D as H=1) and DepthwiseConv2D: the checks, and the choice
of kernel. On AVX-512 the 3x3 stride-1 convolutions that Winograd suits go through it
(winograd.py), others through the direct convolution whose sums stay in vector registers
(conv_direct.py); grouped convolutions, and other CPUs, through a per-tile im2col and
single-threaded BLAS GEMMs (im2col.py), or numpy's matmul without such a BLAS. 1x1 stride-1
convolutions are a dense layer's matmul; depthwise has its own kernels (depthwise.py)."""

from __future__ import annotations

import functools

import numpy as np

from seqcli.kernels.activations import (
    _as_f32,
    _bias_or_empty,
    _check_code,
    bias_activation_inplace,
)
from seqcli.kernels.conv_direct import _conv_direct
from seqcli.kernels.cpu import wide_vectors
from seqcli.kernels.dense import _ROW_CODES, _blas, dense_forward
from seqcli.kernels.depthwise import _depthwise_conv
from seqcli.kernels.geometry import UsefulWindow, _int_pair, _out_size, _padding
from seqcli.kernels.im2col import _conv_im2col, _im2col
from seqcli.kernels.threads import _parallel, thread_count
from seqcli.kernels.winograd import _cached_winograd_filters, _conv_winograd, _winograd_fits

# Upper bound on one tile's buffer (bytes): its im2col columns, or its direct-convolution sums.
_CHUNK_BYTES = 256 << 10
# Output pixels a direct-convolution tile aims for (a few rows: its input band stays in cache).
_DIRECT_PIXELS = 256
# Items a thread aims for when a direct convolution's tiles are split by filters.
_SPLIT_ITEMS = 2


def _full_bias(b: np.ndarray, size: int) -> np.ndarray:
    """The bias to add: `b`, or zeros when there is none."""
    return b if len(b) else np.zeros(size, dtype=np.float32)


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
    pointwise = k_h == k_w == 1 and sh == sw == 1 and pt == pb == pl == pr == 0
    if pointwise and groups == 1:  # 1x1 stride 1: a plain matmul, (N*H*W, C) @ (C, F)
        return dense_forward(x.reshape(nb * h * w, c_n), kernel.reshape(c_n, f), bias,
                             code).reshape(nb, h, w, f)
    window = UsefulWindow((h, w), (k_h, k_w), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)))
    if window.trimmed:  # without the taps that read only padding
        return conv2d_forward(window.input(x), window.kernel(kernel), bias, (sh, sw), (dh, dw),
                              window.padding, groups, code)
    out = np.empty((nb, out_h, out_w, f), dtype=np.float32)  # (N, OH, OW, F)
    out2d = out.reshape(nb * out_h * out_w, f)
    if out.size == 0:
        return out
    full = _full_bias(b, f)
    if (groups == 1 and wide_vectors()
            and _winograd_fits(k_h, k_w, sh, sw, dh, dw, c_n, f, out_w)):
        c16, f16 = -(-c_n // 16) * 16, -(-f // 16) * 16
        _parallel(_conv_winograd, nb * -(-out_h // 4), 2.0 * out.size * 9 * c_n, x,
                  _cached_winograd_filters(kernel, c16, f16), full, np.pad(full, (0, f16 - f)), out,
                  pt, pl, code)
        return out
    if groups == 1 and wide_vectors():
        f16 = -(-f // 16) * 16
        if f16 != f:  # zero filters up to a multiple of 16, dropped by the epilogue
            kernel = np.pad(kernel, ((0, 0), (0, 0), (0, 0), (0, f16 - f)))
        rows = max(1, min(out_h, -(-_DIRECT_PIXELS // out_w), _CHUNK_BYTES // (4 * out_w * f16)))
        tiles = nb * -(-out_h // rows)
        f_block = _direct_filter_block(tiles, f, f16, code, thread_count())
        _parallel(_conv_direct, tiles * -(-f16 // f_block), 2.0 * out.size * k_h * k_w * c_n,
                  x, kernel, full, out, sh, sw, dh, dw, pt, pb, pl, pr, code, rows, f_block)
        return out
    fg = f // groups
    width = k_h * k_w * cg
    # (KH, KW, Cg, F) -> (G, KH*KW*Cg, F/G), rows in the im2col column order (kh, kw, c)
    wstack = np.ascontiguousarray(kernel.reshape(width, groups, fg).transpose(1, 0, 2))
    found = _blas()
    if found is None:
        _conv_numpy(x, wstack, b, out2d, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w, code)
        return out
    tile = max(1, min(out2d.shape[0], _CHUNK_BYTES // (4 * width * groups)))
    with found.single_threaded():
        _parallel(_conv_im2col, -(-out2d.shape[0] // tile), 2.0 * out.size * width, found.sgemm,
                  found.ilp64, x, wstack, full, out2d, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h,
                  out_w, code, tile)
    return out


def _direct_filter_block(tiles: int, f: int, f16: int, code: int, threads: int) -> int:
    """Filters per item of `_conv_direct`: all (F16), unless its `tiles` of output rows are too
    few to go round the threads (a Conv1D, or a small feature map, at batch 1): then parts of
    a multiple of 32 filters, `_SPLIT_ITEMS` items a thread. Never for softmax (whole rows), nor
    when F is not a multiple of 16 (the sums go through a buffer of F16 columns)."""
    if (threads < 2 or tiles >= _SPLIT_ITEMS * threads or f != f16 or code in _ROW_CODES
            or f16 < 64):
        return f16
    parts = min(f16 // 32, -(-_SPLIT_ITEMS * threads // tiles))
    return -(-(f16 // 32) // parts) * 32


def _conv_numpy(x, wstack, b, out2d, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w, code):
    """Without a BLAS that numba can call: im2col in chunks, numpy's (threaded) matmul, then one
    parallel epilogue."""
    groups, width, fg = wstack.shape
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
    bias_activation_inplace(out2d, b, code)


@functools.lru_cache(maxsize=256)
def _useful_window(spatial, kernel_spatial, strides, dilation, padding) -> UsefulWindow:
    """The `UsefulWindow` of these settings, made once: a model asks for the same at each
    batch, and making one costs as much as a small layer's kernel."""
    return UsefulWindow(spatial, kernel_spatial, strides, dilation, padding)


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
    window = _useful_window((h, w), (k_h, k_w), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)))
    if window.trimmed:  # without the taps that read only padding
        return depthwise_conv2d_forward(window.input(x), window.kernel(kernel), bias, (sh, sw),
                                        (dh, dw), window.padding, code)
    out_h = _out_size(h, pt + pb, dh * (k_h - 1) + 1, sh, "depthwise conv height")
    out_w = _out_size(w, pl + pr, dw * (k_w - 1) + 1, sw, "depthwise conv width")
    out = np.empty((nb, out_h, out_w, c_n * dm), dtype=np.float32)  # (N, OH, OW, C*DM)
    if out.size == 0:
        return out
    _depthwise_conv(x, kernel.reshape(k_h, k_w, c_n * dm), _full_bias(b, c_n * dm), out,
                    (sh, sw), (dh, dw), pt, pl, code)
    return out
