"""The direct convolution for AVX-512: tiles of output rows taken in turn by the kernels'
threads, each one's sums kept in vector registers by the micro-kernel (`_conv_block`), then
bias + activation while the tile is in cache."""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _bias_act_inplace, _bias_act_rows
from seqcli.kernels.im2col import _fill_band
from seqcli.kernels.intrinsics import _conv_block
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item

numba_ready()  # every kernel here runs in numba

@njit(cache=True)
def _conv_row_blocks(src, row_base, pixel_step, row_step, k_h, k_w, dw, c_n, kernel, sums,
                     sums_base, out_w, f0, vectors):
    # one output row into sums (OW, F16) from sums_base, filters f0 .. f0+16*vectors: blocks of
    # 12 pixels (the last one moved back to end at OW, recomputing a few), else 4, else 1
    flat_kernel = kernel.reshape(kernel.size)
    f = kernel.shape[3]
    cells = k_w if dw > 1 else 1  # dilated: one call per kernel column, summed up
    k_c = c_n if dw > 1 else k_w * c_n
    w_row_step = k_w * c_n * f
    ow = 0
    while ow < out_w:
        block = 12 if out_w >= 12 else (4 if out_w >= 4 else 1)
        start = min(ow, out_w - block)
        for j in range(cells):
            x_base = row_base + start * pixel_step + j * dw * c_n
            w_base = j * c_n * f + f0
            o_base = sums_base + start * f + f0
            if block == 12:
                _conv_block(src, x_base, pixel_step, row_step, k_h, k_c, flat_kernel, w_base,
                            w_row_step, f, sums, o_base, f, j > 0, 12, vectors)
            elif block == 4:
                _conv_block(src, x_base, pixel_step, row_step, k_h, k_c, flat_kernel, w_base,
                            w_row_step, f, sums, o_base, f, j > 0, 4, vectors)
            else:
                _conv_block(src, x_base, pixel_step, row_step, k_h, k_c, flat_kernel, w_base,
                            w_row_step, f, sums, o_base, f, j > 0, 1, vectors)
        ow = start + block


@njit(cache=True, nogil=True)
def _conv_direct(counter, x, kernel, bias, out, sh, sw, dh, dw, pt, pb, pl, pr, code,
                 tile_rows, f_block):
    # out[n, oh, ow, f] = act(bias[f] + sum_ijc xpad[n, oh*sh + i*dh, ow*sw + j*dw, c]
    # kernel[i, j, c, f]), kernel (KH, KW, C, F16) zero-padded to a multiple of 16 filters.
    # Items: tiles of output rows, each split into parts of f_block filters (a multiple of 32;
    # F16 for one part). With padding, the input rows a tile needs are copied with zeros around
    # them; sums go to out (F a multiple of 16), else to a per-worker buffer of F16 columns
    # (then one part of F16 filters). The epilogue writes each part's filters.
    nb, h, w, c_n = x.shape
    k_h, k_w, _, f16 = kernel.shape
    _, out_h, out_w, f = out.shape
    padded = pt + pb + pl + pr > 0
    wp = w + pl + pr
    blocks = (out_h + tile_rows - 1) // tile_rows
    parts = (f16 + f_block - 1) // f_block
    items = nb * blocks * parts
    band_h = (tile_rows - 1) * sh + (k_h - 1) * dh + 1
    out2d = out.reshape(nb * out_h * out_w, f)
    flat_out = out.reshape(out.size)
    direct = f == f16  # sums straight into out, else into a buffer of F16 columns
    flat_x = x.reshape(x.size)
    band = np.empty(band_h * wp * c_n if padded else 1, dtype=np.float32)  # this thread's
    sums = np.empty(1 if direct else tile_rows * out_w * f16, dtype=np.float32)
    t = _next_item(counter)
    while t < items:
        tile = t // parts
        fa = (t % parts) * f_block
        fb = min(f16, fa + f_block)
        n = tile // blocks
        oh0 = (tile % blocks) * tile_rows
        rows = min(tile_rows, out_h - oh0)
        if padded:
            _fill_band(x, n, oh0 * sh - pt, (rows - 1) * sh + (k_h - 1) * dh + 1, pl, pr,
                       band)
        first = (n * out_h + oh0) * out_w
        target = flat_out if direct else sums
        target_base = first * f16 if direct else 0
        for f0 in range(fa, fb, 32):
            vectors = 2 if fb - f0 >= 32 else 1
            for r in range(rows):
                if padded:
                    _conv_row_blocks(band, r * sh * wp * c_n, sw * c_n, dh * wp * c_n, k_h,
                                     k_w, dw, c_n, kernel, target,
                                     target_base + r * out_w * f16, out_w, f0, vectors)
                else:
                    _conv_row_blocks(flat_x, ((n * h + (oh0 + r) * sh) * w) * c_n, sw * c_n,
                                     dh * w * c_n, k_h, k_w, dw, c_n, kernel, target,
                                     target_base + r * out_w * f16, out_w, f0, vectors)
        if direct:
            _bias_act_inplace(out2d, first, rows * out_w, fa, bias[fa:fb], code)
        else:
            _bias_act_rows(sums.reshape(tile_rows * out_w, f16), 0, out2d, first,
                           rows * out_w, bias, code)
        t = _next_item(counter)
