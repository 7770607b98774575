"""3-D convolution for Conv3D: a per-tile im2col of (depth, height, width) windows and one
single-threaded BLAS GEMM per group and tile, the tiles shared out to the threads (numpy's
matmul without such a BLAS). With few input channels that GEMM is too thin to run fast: the
depth window's slices are stacked as channels instead (x'[n·OD + od, h, w, kd·C + c] =
x[n, od·sd - pf + kd·dd, h, w, c]) and the 2-D convolution (conv.py) runs on them. Also the
3-D im2col and col2im that the transposed convolutions and the gradients share."""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import (
    _as_f32,
    _bias_act_inplace,
    _bias_or_empty,
    _check_code,
    bias_activation_inplace,
)
from seqcli.kernels.conv import conv2d_forward
from seqcli.kernels.dense import _blas, _sgemm
from seqcli.kernels.geometry import UsefulWindow, _out_size
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

# Upper bound on one tile's im2col buffer (bytes).
_CHUNK_BYTES = 256 << 10
# Up to this many input channels in the depth window (kd·C), the depth slices are stacked.
_STACK_CHANNELS = 16


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True)
def _im2col3d(x, cols, r0, rows, geometry):
    # x (N, D, H, W, C), output rows r0..r0+rows of (N*OD*OH*OW) -> cols (G, R, KD*KH*KW*Cg),
    # columns in the order (kd, kh, kw, c); zeros where the window leaves x
    k_d, k_h, k_w, sd, sh, sw, dd, dh, dw, pf, pt, pl, out_d, out_h, out_w = geometry
    _, d, h, w, c_n = x.shape
    groups, _, width = cols.shape
    cg = width // (k_d * k_h * k_w)
    run = k_w * c_n  # one kernel row of one window: contiguous in x when dw == 1
    flat = x.reshape(x.size)
    flat_cols = cols.reshape(cols.size)
    per_image = out_d * out_h * out_w
    for i in range(rows):
        r = r0 + i
        n = r // per_image
        od = (r // (out_h * out_w)) % out_d
        oh = (r // out_w) % out_h
        ow = r % out_w
        iw0 = ow * sw - pl
        inside = groups == 1 and dw == 1 and iw0 >= 0 and iw0 + k_w <= w
        for kd in range(k_d):
            iz = od * sd - pf + kd * dd
            for ki in range(k_h):
                ih = oh * sh - pt + ki * dh
                base = (kd * k_h + ki) * k_w * cg
                if iz < 0 or iz >= d or ih < 0 or ih >= h:
                    for g in range(groups):
                        for j in range(base, base + k_w * cg):
                            cols[g, i, j] = 0.0
                elif inside:
                    src = np.uintp((((n * d + iz) * h + ih) * w + iw0) * c_n)
                    dst = np.uintp(i * width + base)
                    for j in range(np.uintp(run)):
                        flat_cols[dst + j] = flat[src + j]
                else:
                    for kj in range(k_w):
                        iw = iw0 + kj * dw
                        at = base + kj * cg
                        if 0 <= iw < w:
                            for g in range(groups):
                                for c in range(cg):
                                    cols[g, i, at + c] = x[n, iz, ih, iw, g * cg + c]
                        else:
                            for g in range(groups):
                                for c in range(cg):
                                    cols[g, i, at + c] = 0.0


@njit(cache=True)
def _col2im3d(cols, out, r0, rows, geometry):
    # the transpose of _im2col3d: cols (G, R, KD*KH*KW*Cg) added into out (N, D, H, W, C) at
    # the cells the windows of rows r0..r0+rows read; what falls outside is dropped
    k_d, k_h, k_w, sd, sh, sw, dd, dh, dw, pf, pt, pl, out_d, out_h, out_w = geometry
    _, d, h, w, c_n = out.shape
    groups, _, width = cols.shape
    cg = width // (k_d * k_h * k_w)
    run = k_w * c_n  # one kernel row of one window: contiguous in out when dw == 1
    flat = out.reshape(out.size)
    flat_cols = cols.reshape(cols.size)
    per_image = out_d * out_h * out_w
    for i in range(rows):
        r = r0 + i
        n = r // per_image
        od = (r // (out_h * out_w)) % out_d
        oh = (r // out_w) % out_h
        ow = r % out_w
        iw0 = ow * sw - pl
        inside = groups == 1 and dw == 1 and iw0 >= 0 and iw0 + k_w <= w
        for kd in range(k_d):
            iz = od * sd - pf + kd * dd
            if iz < 0 or iz >= d:
                continue
            for ki in range(k_h):
                ih = oh * sh - pt + ki * dh
                if ih < 0 or ih >= h:
                    continue
                if inside:  # unsigned offsets, so that the add vectorises
                    dst = np.uintp((((n * d + iz) * h + ih) * w + iw0) * c_n)
                    src = np.uintp(i * width + (kd * k_h + ki) * run)
                    for j in range(np.uintp(run)):
                        flat[dst + j] += flat_cols[src + j]
                    continue
                for kj in range(k_w):
                    iw = ow * sw - pl + kj * dw
                    if iw < 0 or iw >= w:
                        continue
                    at = ((kd * k_h + ki) * k_w + kj) * cg
                    for g in range(groups):
                        for c in range(cg):
                            out[n, iz, ih, iw, g * cg + c] += cols[g, i, at + c]


@njit(cache=True, nogil=True)
def _conv3d_im2col(counter, address, ilp64, x, wstack, bias, out2d, geometry, code, tile):
    # (N, D, H, W, C) -> (N*OD*OH*OW, F): per tile of output rows, im2col then a GEMM per group
    total, f = out2d.shape
    groups, width, fg = wstack.shape
    n_tiles = (total + tile - 1) // tile
    cols = np.empty((groups, tile, width), dtype=np.float32)  # this thread's
    t = _next_item(counter)
    while t < n_tiles:
        r0 = t * tile
        rows = min(tile, total - r0)
        _im2col3d(x, cols, r0, rows, geometry)
        for g in range(groups):
            _sgemm(address, ilp64, rows, fg, width, cols[g], width, wstack[g], fg,
                   out2d[r0:, g * fg:], f, np.float32(0.0))
        _bias_act_inplace(out2d, r0, rows, 0, bias, code)
        t = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _triple(value, name: str, minimum: int) -> tuple[int, int, int]:
    """Three Python ints, each >= minimum; ValueError otherwise."""
    a, b, c = (int(v) for v in value)
    if min(a, b, c) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {tuple(value)}")
    return a, b, c


def _pads3(padding) -> tuple[tuple[int, int], ...]:
    """((front, back), (top, bottom), (left, right)) as non-negative Python ints."""
    pairs = tuple(tuple(int(v) for v in side) for side in padding)
    if len(pairs) != 3 or any(len(p) != 2 or min(p) < 0 for p in pairs):
        raise ValueError(f"padding must be three (before, after) pairs >= 0, got {padding}")
    return pairs


def _depth_stacked(x, k_d, sd, dd, front, out_d) -> np.ndarray:
    """(N, D, H, W, C) -> (N*OD, H, W, KD*C): the depth window's slices side by side as
    channels, zeros where the window leaves x (a copy, KD times the input at most)."""
    nb, d, h, w, c_n = x.shape
    stacked = np.zeros((nb, out_d, h, w, k_d, c_n), dtype=np.float32)
    for kd in range(k_d):
        depths = np.arange(out_d) * sd - front + kd * dd  # the input slice of each od
        inside = (depths >= 0) & (depths < d)
        stacked[..., kd, :][:, inside] = x[:, depths[inside]]
    return stacked.reshape(nb * out_d, h, w, k_d * c_n)


def _geometry3d(x_shape, kernel_shape, strides, dilation, padding, name="conv3d"):
    """The flat geometry tuple the 3-D kernels take, (KD, KH, KW, SD, SH, SW, DD, DH, DW, PF,
    PT, PL, OD, OH, OW), for a convolution of `x_shape` (N, D, H, W, C); ValueError if empty."""
    k_d, k_h, k_w = (int(v) for v in kernel_shape[:3])
    if min(k_d, k_h, k_w) < 1:
        raise ValueError(f"kernel {tuple(kernel_shape)} has an empty spatial size")
    strides = _triple(strides, "strides", 1)
    dilation = _triple(dilation, "dilation", 1)
    pads = _pads3(padding)
    out = tuple(_out_size(int(n), before + after, dl * (k - 1) + 1, s, f"{name} {axis}")
                for n, (before, after), k, s, dl, axis in zip(
                    x_shape[1:4], pads, (k_d, k_h, k_w), strides, dilation,
                    ("depth", "height", "width")))
    return (k_d, k_h, k_w, *strides, *dilation, pads[0][0], pads[1][0], pads[2][0], *out)


def conv3d_forward(
    x, kernel, bias, strides, dilation, padding, groups: int, activation: int
) -> np.ndarray:
    """y[n,o,f] = act(b[f] + sum x[n, o*s-p+(i,j,l)*d, c] k[i,j,l,c,f]), o = (od,oh,ow), grouped."""
    code = _check_code(activation)
    x = _as_f32(x, "x", 5)
    kernel = _as_f32(kernel, "kernel", 5)
    nb, _, _, _, c_n = x.shape
    k_d, k_h, k_w, cg, f = kernel.shape
    groups = int(groups)
    if groups < 1 or c_n % groups or f % groups or cg != c_n // groups:
        raise ValueError(
            f"kernel {kernel.shape} does not fit {c_n} input channels in {groups} groups"
        )
    geometry = _geometry3d(x.shape, kernel.shape, strides, dilation, padding)
    window = UsefulWindow(x.shape[1:4], kernel.shape[:3], geometry[3:6], geometry[6:9],
                          _pads3(padding))
    if window.trimmed:  # without the taps that read only padding
        return conv3d_forward(window.input(x), window.kernel(kernel), bias, geometry[3:6],
                              geometry[6:9], window.padding, groups, code)
    out_d, out_h, out_w = geometry[12:]
    b = _bias_or_empty(bias, f)
    shape = (nb, out_d, out_h, out_w, f)  # (N, OD, OH, OW, F)
    if nb and groups == 1 and k_d * c_n <= _STACK_CHANNELS:
        stacked = _depth_stacked(x, k_d, geometry[3], geometry[6], geometry[9], out_d)
        # (KD, KH, KW, C, F) -> (KH, KW, KD*C, F), rows in the stacked channels' order
        plane = np.ascontiguousarray(kernel.transpose(1, 2, 0, 3, 4)).reshape(
            k_h, k_w, k_d * c_n, f)
        return conv2d_forward(stacked, plane, bias, geometry[4:6], geometry[7:9],
                              _pads3(padding)[1:], 1, code).reshape(shape)
    out = np.empty(shape, dtype=np.float32)
    if out.size == 0:
        return out
    out2d = out.reshape(-1, f)
    fg = f // groups
    width = k_d * k_h * k_w * cg
    # (KD, KH, KW, Cg, F) -> (G, KD*KH*KW*Cg, F/G), rows in the im2col column order
    wstack = np.ascontiguousarray(kernel.reshape(width, groups, fg).transpose(1, 0, 2))
    found = _blas()
    if found is None:  # numpy's matmul on im2col chunks, then one epilogue
        total = out2d.shape[0]
        chunk = max(1, min(total, _CHUNK_BYTES // (4 * width * groups)))
        cols = np.empty((groups, chunk, width), dtype=np.float32)
        for r0 in range(0, total, chunk):
            rows = min(chunk, total - r0)
            _im2col3d(x, cols, r0, rows, geometry)
            prod = np.matmul(cols[:, :rows], wstack)  # (G, rows, F/G)
            out2d[r0 : r0 + rows].reshape(rows, groups, fg)[...] = prod.transpose(1, 0, 2)
        bias_activation_inplace(out2d, b, code)
        return out
    full = b if len(b) else np.zeros(f, dtype=np.float32)
    tile = max(1, min(out2d.shape[0], _CHUNK_BYTES // (4 * width * groups)))
    with found.single_threaded():
        _parallel(_conv3d_im2col, -(-out2d.shape[0] // tile), 2.0 * out.size * width,
                  found.sgemm, found.ilp64, x, wstack, full, out2d, geometry, code, tile)
    return out
