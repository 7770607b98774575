"""Convolution gradients: Conv2D's (Conv1D as H=1) and depthwise's.

Conv2D's kernel gradient comes from a direct kernel on AVX-512 (the sums of each block of the
kernel's rows kept in vector registers, `_conv_block`, each block of tiles adding into a
partial of its own), elsewhere (and for grouped convolutions) from im2col tiles and BLAS. Its
input gradient is the forward convolution of dy with the kernel mirrored (the forward's own
fast kernels) for stride 1 when dy is not much smaller than the input, else dy @ kernel.T by
BLAS and col2im, an image per thread. Everything runs on the kernels' threads, BLAS
single-threaded inside. Depthwise has direct loops.

All take dy_pre, the gradient w.r.t. the pre-activation output: apply `activation_backward`
for the fused activation first. Geometry as the forwards in `seqcli.kernels.conv` (Conv1D as
H=1); db = sum of dy_pre over (N, OH, OW); dx is None when `input_grad` is false (first layer).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.activations import activation_code
from seqcli.kernels.activations import _as_f32
from seqcli.kernels.conv import conv2d_forward
from seqcli.kernels.cpu import wide_vectors
from seqcli.kernels.dense import _blas
from seqcli.kernels.geometry import UsefulWindow, _int_pair, _out_size, _padding
from seqcli.kernels.grad_dense import _bias_grad
from seqcli.kernels.grad_gemm import _product, _sgemm_op
from seqcli.kernels.im2col import _fill_band, _im2col
from seqcli.kernels.intrinsics import _conv_block
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _n_blocks, _next_item, _parallel, thread_count

numba_ready()  # every kernel here runs in numba

# Upper bound on the im2col buffer of one chunk of output rows (bytes).
_CHUNK_BYTES = 4 << 20
# Output pixels a tile of the direct kernel gradient aims for (a few rows of one image), and
# the blocks of tiles (one partial sum each) the kernel gradients share out per thread when
# there are several.
_TILE_PIXELS = 256
_BLOCKS_PER_THREAD = 4
# Upper bound on one thread's im2col or col2im buffer (bytes): it stays in the CPU's cache.
_TILE_BYTES = 256 << 10
# The input gradient is a mirrored forward convolution unless that convolution's output (the
# input's size) exceeds dy's by more than this factor: its extra pixels read dy's zero border.
_MIRRORED_WASTE = 1.25
_LINEAR = activation_code("linear")


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True)
def _kernel_grad_run(src, base, pixel_step, out_w, dy, dy_base, part, row0, run, f16):
    # part[row0 + p, f] += sum_{ow < OW} src[base + ow*pixel_step + p] dy[dy_base + ow*F16 + f]
    # for p < run, f < F16 (part flat, rows of F16): blocks of 12, 4, 3 (a 3-wide kernel on one
    # channel), then 1 rows, of 32 filters (16 for the last when F16 is an odd multiple of 16)
    p0 = 0
    while p0 < run:
        left = run - p0
        block = 12 if left >= 12 else (4 if left >= 4 else (3 if left == 3 else 1))
        for f0 in range(0, f16, 32):
            vectors = 2 if f16 - f0 >= 32 else 1
            out_base = (row0 + p0) * f16 + f0
            if block == 12:
                _conv_block(src, base + p0, 1, pixel_step, out_w, 1, dy, dy_base + f0, f16, f16,
                            part, out_base, f16, True, 12, vectors)
            elif block == 4:
                _conv_block(src, base + p0, 1, pixel_step, out_w, 1, dy, dy_base + f0, f16, f16,
                            part, out_base, f16, True, 4, vectors)
            elif block == 3:
                _conv_block(src, base + p0, 1, pixel_step, out_w, 1, dy, dy_base + f0, f16, f16,
                            part, out_base, f16, True, 3, vectors)
            else:
                _conv_block(src, base + p0, 1, pixel_step, out_w, 1, dy, dy_base + f0, f16, f16,
                            part, out_base, f16, True, 1, vectors)
        p0 += block


@njit(cache=True, nogil=True)
def _conv_kernel_grad(counter, x, dy, partial, bias_sums, k_h, k_w, sh, sw, dh, dw, pt, pb, pl,
                      pr, tile_rows):
    # partial (B, KH*KW*C, F16), bias_sums (B, F16) float64, dy (N, OH, OW, F16): item b adds,
    # over the output rows of its share of the tiles (tile_rows rows of one image),
    # x[n, oh*sh-pt+i*dh, ow*sw-pl+j*dw, c] dy[n,oh,ow,f] into partial[b, (i*KW + j)*C + c, f]
    # and dy[n,oh,ow,f] into bias_sums[b, f]. Rows (j, c) of one i are one run of x when
    # dw == 1. With padding, the input rows a tile reads are copied with zeros around them.
    nb, h, w, c_n = x.shape
    _, out_h, out_w, f16 = dy.shape
    n_blocks = partial.shape[0]
    padded = pt + pb + pl + pr > 0
    wp = w + pl + pr
    per_image = (out_h + tile_rows - 1) // tile_rows
    tiles = nb * per_image
    band = np.empty(((tile_rows - 1) * sh + (k_h - 1) * dh + 1) * wp * c_n if padded else 1,
                    dtype=np.float32)  # this thread's
    flat_x = x.reshape(x.size)
    flat_dy = dy.reshape(dy.size)
    cells = 1 if dw == 1 else k_w
    run = k_w * c_n if dw == 1 else c_n
    b = _next_item(counter)
    while b < n_blocks:
        part = partial[b].reshape(partial.shape[1] * f16)
        bias = bias_sums[b]
        for t in range(b * tiles // n_blocks, (b + 1) * tiles // n_blocks):
            n = t // per_image
            oh0 = (t % per_image) * tile_rows
            rows = min(tile_rows, out_h - oh0)
            if padded:
                _fill_band(x, n, oh0 * sh - pt, (rows - 1) * sh + (k_h - 1) * dh + 1, pl, pr,
                           band)
            for r in range(rows):
                dy_base = (n * out_h + oh0 + r) * out_w * f16
                for i in range(k_h):
                    for j in range(cells):
                        row0 = (i * k_w + j) * c_n
                        if padded:
                            _kernel_grad_run(band, ((r * sh + i * dh) * wp + j * dw) * c_n,
                                             sw * c_n, out_w, flat_dy, dy_base, part, row0, run,
                                             f16)
                        else:
                            _kernel_grad_run(flat_x, ((n * h + (oh0 + r) * sh + i * dh) * w
                                                      + j * dw) * c_n, sw * c_n, out_w, flat_dy,
                                             dy_base, part, row0, run, f16)
                for ow in range(out_w):
                    for f in range(f16):
                        bias[f] += flat_dy[dy_base + ow * f16 + f]
        b = _next_item(counter)


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
def _col2im_input_grad(counter, address, ilp64, dy2d, wstack, dx, k_h, k_w, sh, sw, dh, dw, pt,
                       pl, out_h, out_w, chunk):
    # dx (N, H, W, C): item n is image n, whole (one thread writes each image): by chunks of
    # `chunk` of its output pixels, dcols[g] (rows, KH*KW*Cg) = dy[rows, group g] @ wstack[g].T
    # through BLAS, then col2im adds dcols into dx[n]
    nb = dx.shape[0]
    groups, width, fg = wstack.shape
    f = groups * fg
    per_image = out_h * out_w
    dcols = np.empty((groups, chunk, width), dtype=np.float32)  # this thread's
    flat_cols = dcols.reshape(dcols.size)
    flat_dy = dy2d.reshape(dy2d.size)
    flat_w = wstack.reshape(wstack.size)
    n = _next_item(counter)
    while n < nb:
        dx[n] = 0.0
        for p0 in range(0, per_image, chunk):
            rows = min(chunk, per_image - p0)
            r0 = n * per_image + p0
            for g in range(groups):
                _sgemm_op(address, ilp64, False, True, rows, width, fg, flat_dy[r0 * f + g * fg:],
                          f, flat_w[g * width * fg:], fg, flat_cols[g * chunk * width:], width,
                          np.float32(0.0))
            _scatter_cols(dcols, dx, r0, rows, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w)
        n = _next_item(counter)


@njit(cache=True, nogil=True)
def _im2col_kernel_grad(counter, address, ilp64, x, dy2d, partial, k_h, k_w, sh, sw, dh, dw, pt,
                        pl, out_h, out_w, tile):
    # partial (B, G, KH*KW*Cg, F/G): item b adds, over its share of the tiles of `tile` output
    # pixels, cols[g].T @ dy[tile rows, group g] through BLAS, cols the tile's im2col
    total, f = dy2d.shape
    n_blocks, groups, width, fg = partial.shape
    tiles = (total + tile - 1) // tile
    cols = np.empty((groups, tile, width), dtype=np.float32)  # this thread's
    flat_cols = cols.reshape(cols.size)
    flat_dy = dy2d.reshape(dy2d.size)
    b = _next_item(counter)
    while b < n_blocks:
        part = partial[b].reshape(groups * width * fg)
        for t in range(b * tiles // n_blocks, (b + 1) * tiles // n_blocks):
            r0 = t * tile
            rows = min(tile, total - r0)
            _im2col(x, cols, r0, rows, k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w)
            for g in range(groups):
                _sgemm_op(address, ilp64, True, False, width, fg, rows,
                          flat_cols[g * tile * width:], width, flat_dy[r0 * f + g * fg:], f,
                          part[g * width * fg:], fg, np.float32(1.0))
        b = _next_item(counter)


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
    if k_h == k_w == 1 and sh == sw == 1 and (out_h, out_w) == (h, w) and groups == 1:
        # 1x1 stride 1 unpadded: plain products on (N*H*W, C)
        x2d = x.reshape(total, c_n)
        dkernel = _product(x2d, dy2d, trans_a=True).reshape(1, 1, c_n, f)
        dx = _product(dy2d, kernel.reshape(c_n, f), trans_b=True).reshape(x.shape) \
            if input_grad else None
        return dx, dkernel, _bias_grad(dy2d)
    pads = _padding(padding)
    geometry = (k_h, k_w, sh, sw, dh, dw, pt, pl, out_h, out_w)
    if groups == 1 and wide_vectors():
        dkernel, dbias = _direct_kernel_grad(x, dy, kernel.shape, (sh, sw), (dh, dw), pads)
    else:
        dkernel, dbias = _im2col_kernel_grad_of(x, kernel.shape, dy2d, groups, geometry), \
            _bias_grad(dy2d)
    dx = None
    if input_grad:
        dx = _mirrored_input_grad(dy, kernel, (sh, sw), (dh, dw), pads) if groups == 1 else None
        if dx is None:
            dx = _col2im_input_grad_of(x.shape, kernel, dy2d, groups, geometry)
    return dx, dkernel, dbias


def _mirrored_input_grad(dy, kernel, strides, dilation, pads) -> np.ndarray | None:
    """dx of a stride-1 convolution as the forward convolution of dy, padded by the dilated
    kernel's extent less the forward's padding, with the kernel mirrored and its channel axes
    swapped: dx[n,ih,iw,c] = sum_ijf dy[n, ih+pt-i*dh, iw+pl-j*dw, f] k[i,j,c,f]. None for
    other strides, a padding wider than that extent, or an input much larger than dy (its
    pixels cost a whole window each, `_MIRRORED_WASTE`)."""
    (dh, dw), (pt, pb, pl, pr) = dilation, pads
    k_h, k_w = kernel.shape[:2]
    sides = (dh * (k_h - 1) - pt, dh * (k_h - 1) - pb, dw * (k_w - 1) - pl, dw * (k_w - 1) - pr)
    if strides != (1, 1) or min(sides) < 0:
        return None
    h = dy.shape[1] + sides[0] + sides[1] - dh * (k_h - 1)  # the input's size
    w = dy.shape[2] + sides[2] + sides[3] - dw * (k_w - 1)
    if h * w > _MIRRORED_WASTE * dy.shape[1] * dy.shape[2]:
        return None
    mirrored = np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2))  # (KH, KW, F, C)
    return conv2d_forward(dy, mirrored, None, (1, 1), (dh, dw), (sides[:2], sides[2:]), 1,
                          _LINEAR)


def _direct_kernel_grad(x, dy, kernel_shape, strides, dilation, pads):
    """(dk, db) of an ungrouped convolution by `_conv_kernel_grad`, on the kernels' threads
    (AVX-512 only: it keeps 12 x 32 sums in vector registers)."""
    nb, _, _, c_n = x.shape
    _, out_h, out_w, f = dy.shape
    k_h, k_w = kernel_shape[:2]
    f16 = -(-f // 16) * 16
    if f16 != f:  # zero filters up to a multiple of 16, dropped at the end
        dy = np.pad(dy, ((0, 0), (0, 0), (0, 0), (0, f16 - f)))
    tile_rows = max(1, min(out_h, -(-_TILE_PIXELS // out_w)))
    tiles = nb * -(-out_h // tile_rows)
    threads = thread_count()
    blocks = 1 if threads == 1 else min(tiles, _BLOCKS_PER_THREAD * threads)
    partial = np.zeros((blocks, k_h * k_w * c_n, f16), dtype=np.float32)
    bias_sums = np.zeros((blocks, f16), dtype=np.float64)
    _parallel(_conv_kernel_grad, blocks, 2.0 * dy.size * k_h * k_w * c_n, x, dy, partial,
              bias_sums, k_h, k_w, *strides, *dilation, *pads, tile_rows)
    dkernel = np.ascontiguousarray(partial.sum(axis=0)[:, :f]).reshape(k_h, k_w, c_n, f)
    return dkernel, bias_sums.sum(axis=0)[:f].astype(np.float32)


def _im2col_kernel_grad_of(x, kernel_shape, dy2d, groups, geometry):
    """dk by `_im2col_kernel_grad` on the kernels' threads (numpy's matmul by chunks without
    a BLAS the kernels can call)."""
    k_h, k_w, cg, f = kernel_shape
    fg, width = f // groups, k_h * k_w * cg
    found = _blas()
    if found is None:
        dstack = _im2col_products(x, dy2d, np.zeros((groups, width, fg), dtype=np.float32),
                                  None, None, geometry)
    else:
        tile = max(1, min(dy2d.shape[0], _TILE_BYTES // (4 * width * groups)))
        tiles = -(-dy2d.shape[0] // tile)
        threads = thread_count()
        blocks = 1 if threads == 1 else min(tiles, _BLOCKS_PER_THREAD * threads)
        partial = np.zeros((blocks, groups, width, fg), dtype=np.float32)
        with found.single_threaded():
            _parallel(_im2col_kernel_grad, blocks, 2.0 * dy2d.size * width, found.sgemm,
                      found.ilp64, x, dy2d, partial, *geometry, tile)
        dstack = partial.sum(axis=0)
    # (G, KH*KW*Cg, F/G) -> (KH, KW, Cg, F), filter g*F/G + j
    return np.ascontiguousarray(dstack.transpose(1, 0, 2)).reshape(k_h, k_w, cg, f)


def _col2im_input_grad_of(x_shape, kernel, dy2d, groups, geometry):
    """dx by `_col2im_input_grad` on the kernels' threads, an image each (numpy's matmul by
    chunks without a BLAS the kernels can call)."""
    k_h, k_w, cg, f = kernel.shape
    fg, width = f // groups, k_h * k_w * cg
    # (KH, KW, Cg, F) -> (G, KH*KW*Cg, F/G), rows in the im2col column order (kh, kw, c)
    wstack = np.ascontiguousarray(kernel.reshape(width, groups, fg).transpose(1, 0, 2))
    found = _blas()
    if found is None:
        dx = np.zeros(x_shape, dtype=np.float32)
        return _im2col_products(None, dy2d, None, wstack, dx, geometry)
    dx = np.empty(x_shape, dtype=np.float32)  # (N, H, W, C)
    per_image = geometry[-2] * geometry[-1]
    chunk = max(1, min(per_image, _TILE_BYTES // (4 * width * groups)))
    with found.single_threaded():
        _parallel(_col2im_input_grad, x_shape[0], 2.0 * dy2d.size * width, found.sgemm,
                  found.ilp64, dy2d, wstack, dx, *geometry, chunk)
    return dx


def _im2col_products(x, dy2d, dstack, wstack, dx, geometry):
    """Without a BLAS the kernels can call, by chunks of output pixels: dstack (G, width, F/G)
    += im2col(x).T @ dy per group when given, or dx += col2im(dy @ wstack.T); returns the one
    given."""
    total, f = dy2d.shape
    groups, width, fg = (dstack if dstack is not None else wstack).shape
    chunk = max(1, min(total, _CHUNK_BYTES // max(1, 4 * width * groups)))
    cols = np.empty((groups, chunk, width), dtype=np.float32)
    for r0 in range(0, total, chunk):
        rows = min(chunk, total - r0)
        dyg = dy2d[r0 : r0 + rows].reshape(rows, groups, fg).transpose(1, 0, 2)  # (G, rows, F/G)
        if dstack is not None:
            _im2col(x, cols, r0, rows, *geometry)
            dstack += np.matmul(cols[:, :rows].transpose(0, 2, 1), dyg)  # (G, width, F/G)
        else:
            cols[:, :rows] = np.matmul(dyg, wstack.transpose(0, 2, 1))  # (G, rows, width)
            _scatter_cols(cols, dx, r0, rows, *geometry)
    return dstack if dstack is not None else dx


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
