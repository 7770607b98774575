"""The depthwise convolution: a direct loop over each output row's windows, channel by
channel (a depth multiplier DM gives DM outputs per channel), then bias + activation."""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _bias_act_inplace
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item

numba_ready()  # every kernel here runs in numba

@njit(cache=True, nogil=True)
def _depthwise(counter, x, kernel, bias, out, sh, sw, dh, dw, pt, pl, code):
    # (N, H, W, C) * (KH, KW, C*DM) -> (N, OH, OW, C*DM), channel c*DM + m, then act(. + bias)
    nb, h, w, c_n = x.shape
    k_h, k_w, cd = kernel.shape
    dm = cd // c_n
    out_h, out_w = out.shape[1], out.shape[2]
    out2d = out.reshape(nb * out_h * out_w, cd)
    # flat arrays and unsigned offsets: no negative-index checks, the channel loops vectorise
    flat_x, flat_out, flat_kernel = x.reshape(x.size), out.reshape(out.size), kernel.reshape(
        kernel.size)
    channels, inputs = np.uintp(cd), np.uintp(c_n)
    r = _next_item(counter)  # output rows (n, oh) taken in turn
    while r < nb * out_h:
        n = r // out_h
        oh = r % out_h
        row = np.uintp(r * out_w) * channels  # (OW, C*DM) from here
        for q in range(np.uintp(out_w) * channels):
            flat_out[row + q] = 0.0
        for ki in range(k_h):
            ih = oh * sh - pt + ki * dh
            if ih < 0 or ih >= h:
                continue
            for kj in range(k_w):
                weights = np.uintp((ki * k_w + kj) * cd)
                for ow in range(out_w):
                    iw = ow * sw - pl + kj * dw
                    if iw < 0 or iw >= w:
                        continue
                    pixel = np.uintp(((n * h + ih) * w + iw) * c_n)
                    acc = row + np.uintp(ow) * channels
                    if dm == 1:
                        for c in range(inputs):
                            flat_out[acc + c] += flat_x[pixel + c] * flat_kernel[weights + c]
                    else:
                        for c in range(inputs):
                            v = flat_x[pixel + c]
                            for m in range(np.uintp(dm)):
                                j = c * np.uintp(dm) + m
                                flat_out[acc + j] += v * flat_kernel[weights + j]
        _bias_act_inplace(out2d, r * out_w, out_w, 0, bias, code)
        r = _next_item(counter)
