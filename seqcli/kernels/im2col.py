"""The input a convolution reads, copied where its kernels want it: im2col columns (one row of
window values per output pixel) and bands of zero-padded input rows; and the im2col + BLAS
convolution that grouped convolutions, and CPUs without AVX-512, take."""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _bias_act_inplace
from seqcli.kernels.dense import _sgemm
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item

numba_ready()  # every kernel here runs in numba

@njit(cache=True)
def _im2col(x, cols, r0, rows, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w):
    # x (N, H, W, C), output rows r0..r0+rows of (N*OH*OW) -> cols (G, R, KH*KW*Cg), (kh, kw, c)
    _, h, w, c_n = x.shape
    groups, _, width = cols.shape
    cg = width // (k_h * k_w)
    run = k_w * c_n  # one kernel row of one pixel's window: contiguous in x when dw == 1
    flat = x.reshape(x.size)
    flat_cols = cols.reshape(cols.size)
    per_image = out_h * out_w
    n, oh, ow = r0 // per_image, (r0 // out_w) % out_h, r0 % out_w
    for i in range(rows):
        iw0 = ow * sw - pl
        inside = groups == 1 and dw == 1 and iw0 >= 0 and iw0 + k_w <= w
        for ki in range(k_h):
            ih = oh * sh - pt + ki * dh
            if ih < 0 or ih >= h:
                for g in range(groups):
                    for j in range(ki * k_w * cg, (ki + 1) * k_w * cg):
                        cols[g, i, j] = 0.0
            elif inside:
                # unsigned offsets: no negative-index checks, so that the copy vectorises
                src = np.uintp(((n * h + ih) * w + iw0) * c_n)
                dst = np.uintp(i * width + ki * run)
                for j in range(np.uintp(run)):
                    flat_cols[dst + j] = flat[src + j]
            else:
                for kj in range(k_w):
                    iw = iw0 + kj * dw
                    base = (ki * k_w + kj) * cg
                    if 0 <= iw < w:
                        for g in range(groups):
                            for c in range(cg):
                                cols[g, i, base + c] = x[n, ih, iw, g * cg + c]
                    else:
                        for g in range(groups):
                            for c in range(cg):
                                cols[g, i, base + c] = 0.0
        ow += 1
        if ow == out_w:
            ow = 0
            oh += 1
            if oh == out_h:
                oh = 0
                n += 1


@njit(cache=True)
def _fill_band(x, n, ih0, height, pl, pr, band):
    # rows ih0 .. ih0+height-1 of image n, zero outside x and pl/pr zero columns each side
    # -> band (height, PL+W+PR, C), flat
    _, h, w, c_n = x.shape
    row = np.uintp((pl + w + pr) * c_n)
    for j in range(height):
        ih = ih0 + j
        dst = np.uintp(j) * row
        if ih < 0 or ih >= h:
            for q in range(row):
                band[dst + q] = 0.0
            continue
        for q in range(np.uintp(pl * c_n)):
            band[dst + q] = 0.0
        src = x[n, ih].reshape(w * c_n)
        dst += np.uintp(pl * c_n)
        for q in range(np.uintp(w * c_n)):
            band[dst + q] = src[q]
        dst += np.uintp(w * c_n)
        for q in range(np.uintp(pr * c_n)):
            band[dst + q] = 0.0


@njit(cache=True)
def _fill_band_channels(x, n, ih0, height, pl, band_w, c16, band):
    # as _fill_band, with each pixel's C channels followed by zeros up to c16
    _, h, w, c_n = x.shape
    for j in range(height):
        ih = ih0 + j
        for col in range(band_w):
            iw = col - pl
            dst = (j * band_w + col) * c16
            inside = 0 <= ih < h and 0 <= iw < w
            for c in range(c16):
                band[dst + c] = x[n, ih, iw, c] if inside and c < c_n else 0.0


@njit(cache=True, nogil=True)
def _conv_im2col(counter, address, ilp64, x, wstack, bias, out2d, k_h, k_w, sh, sw, dh, dw, pt,
                 pl, out_h, out_w, code, tile):
    # (N, H, W, C) -> (N*OH*OW, F): per tile of output rows, im2col then one GEMM per group
    total, f = out2d.shape
    groups, width, fg = wstack.shape
    n_tiles = (total + tile - 1) // tile
    cols = np.empty((groups, tile, width), dtype=np.float32)  # this thread's
    t = _next_item(counter)
    while t < n_tiles:
        r0 = t * tile
        rows = min(tile, total - r0)
        _im2col(x, cols, r0, rows, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w)
        for g in range(groups):
            _sgemm(address, ilp64, rows, fg, width, cols[g], width, wstack[g], fg,
                   out2d[r0:, g * fg:], f, np.float32(0.0))
        _bias_act_inplace(out2d, r0, rows, 0, bias, code)
        t = _next_item(counter)
