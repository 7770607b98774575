"""Winograd F(4x4, 3x3) (Lavin & Gray, 2016) for 3x3 stride-1 convolutions: each 4x4 block of
outputs comes from its 6x6 input window d as A^T [U * (B^T d B)] A, U = G g G^T the
transformed filter: 36 products per (input, output) channel pair instead of 144. The 36
products of a block of tiles are 36 GEMMs over the channels, done by the direct kernel's
micro-kernel; the transforms work on 16 channels (filters) at once, in vector registers."""

from __future__ import annotations

import weakref

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from seqcli.kernels.activations import _LINEAR, _RELU, _bias_act_inplace, _bias_act_rows
from seqcli.kernels.im2col import _fill_band, _fill_band_channels
from seqcli.kernels.intrinsics import _conv_block, _float32_arrays, _vector_io
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item

numba_ready()  # every kernel here runs in numba

_WINOGRAD_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
                (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_WINOGRAD_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
               (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_WINOGRAD_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0),
                (0, 1, -1, 8, -8, 1))


def _combine(builder, coefficients, values):
    """sum(c * v) over the nonzero integer coefficients, as adds, subtracts and multiplies by
    the (exact) constants |c|, positive terms first."""
    vector = values[0].type
    terms = sorted(((c, v) for c, v in zip(coefficients, values) if c), key=lambda t: t[0] < 0)
    total = None
    for c, v in terms:
        term = v if abs(c) == 1 else builder.fmul(v, ir.Constant(vector, [float(abs(c))] * 16))
        if total is None:
            total = term if c > 0 else builder.fneg(term)
        else:
            total = builder.fadd(total, term) if c > 0 else builder.fsub(total, term)
    return total


@intrinsic
def _winograd_in16(typingctx, band, a, step, row, v, o, plane):
    """16 channels of one tile: v[o + k*plane + (0..15)] = (B^T d B)[k], k = 6*i + j, with
    d[r][s] = band[a + r*row + s*step + (0..15)]."""
    if not _float32_arrays(band, v):
        return None
    signature = types.void(band, a, step, row, v, o, plane)

    def codegen(context, builder, sig, args):
        data, integer, load, store = _vector_io(context, builder, sig, args)
        src, dst = data(0), data(4)
        a0, step_, row_, o0, plane_ = (integer(i) for i in (1, 2, 3, 5, 6))
        i64 = ir.IntType(64)
        d = [[load(src, builder.add(a0, builder.add(builder.mul(row_, ir.Constant(i64, r)),
                                                    builder.mul(step_, ir.Constant(i64, c)))))
              for c in range(6)] for r in range(6)]
        t = [[_combine(builder, _WINOGRAD_BT[i], [d[r][c] for r in range(6)]) for c in range(6)]
             for i in range(6)]  # B^T d
        for i in range(6):
            for j in range(6):  # (B^T d) B
                store(_combine(builder, _WINOGRAD_BT[j], t[i]), dst,
                      builder.add(o0, builder.mul(ir.Constant(i64, 6 * i + j), plane_)))
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def _winograd_out16(typingctx, m, a, plane, bias, b0, add_bias, relu, y, base, ld_row, ld_col,
                    rows, cols):
    """16 filters of one tile: Y = A^T M A of M[k] = m[a + k*plane + (0..15)], plus
    bias[b0 + (0..15)] if `add_bias`, then max(0, .) if `relu` (as the epilogue: 0 if v < 0),
    to y[base + i*ld_row + j*ld_col + (0..15)] for i < rows, j < cols."""
    if not _float32_arrays(m, bias, y):
        return None
    signature = types.void(m, a, plane, bias, b0, add_bias, relu, y, base, ld_row, ld_col,
                           rows, cols)

    def codegen(context, builder, sig, args):
        data, integer, load, store = _vector_io(context, builder, sig, args)
        src, bias_data, dst = data(0), data(3), data(7)
        a0, plane_, b0, base, ld_row, ld_col, rows, cols = (
            integer(i) for i in (1, 2, 4, 8, 9, 10, 11, 12))
        add_bias, relu = (context.cast(builder, args[i], sig.args[i], types.boolean)
                          for i in (5, 6))
        i64 = ir.IntType(64)
        q = [load(src, builder.add(a0, builder.mul(ir.Constant(i64, k), plane_)))
             for k in range(36)]
        s = [[_combine(builder, _WINOGRAD_AT[i], [q[6 * r + c] for r in range(6)])
              for c in range(6)] for i in range(4)]  # A^T M
        b = load(bias_data, b0)
        zero = ir.Constant(b.type, [0.0] * 16)
        for i in range(4):
            for j in range(4):  # (A^T M) A
                value = _combine(builder, _WINOGRAD_AT[j], s[i])
                value = builder.select(add_bias, builder.fadd(value, b), value)
                below = builder.fcmp_ordered("<", value, zero)
                value = builder.select(relu, builder.select(below, zero, value), value)
                inside = builder.and_(builder.icmp_signed("<", ir.Constant(i64, i), rows),
                                      builder.icmp_signed("<", ir.Constant(i64, j), cols))
                with builder.if_then(inside):
                    store(value, dst, builder.add(base, builder.add(
                        builder.mul(ir.Constant(i64, i), ld_row),
                        builder.mul(ir.Constant(i64, j), ld_col))))
        return context.get_dummy_value()

    return signature, codegen


@njit(cache=True)
def _tiles_gemm(v, v_base, c16, u, u_base, f16, m, m_base, tiles, vectors):
    # m[m_base + p*F16 + (0 .. 16*vectors)] = sum_c v[v_base + p*C16 + c] u[u_base + c*F16 + ..]
    # for p < tiles (12, 8, 6, 4, 2 or 1): the micro-kernel with that many pixels
    if tiles == 12:
        _conv_block(v, v_base, c16, 0, 1, c16, u, u_base, 0, f16, m, m_base, f16, False, 12,
                    vectors)
    elif tiles == 8:
        _conv_block(v, v_base, c16, 0, 1, c16, u, u_base, 0, f16, m, m_base, f16, False, 8,
                    vectors)
    elif tiles == 6:
        _conv_block(v, v_base, c16, 0, 1, c16, u, u_base, 0, f16, m, m_base, f16, False, 6,
                    vectors)
    elif tiles == 4:
        _conv_block(v, v_base, c16, 0, 1, c16, u, u_base, 0, f16, m, m_base, f16, False, 4,
                    vectors)
    elif tiles == 2:
        _conv_block(v, v_base, c16, 0, 1, c16, u, u_base, 0, f16, m, m_base, f16, False, 2,
                    vectors)
    else:
        _conv_block(v, v_base, c16, 0, 1, c16, u, u_base, 0, f16, m, m_base, f16, False, 1,
                    vectors)


@njit(cache=True)
def _winograd_block(left):
    # tiles in the next block of a row with `left` tiles to go: the largest size that fits
    if left >= 12:
        return 12
    if left >= 8:
        return 8
    if left >= 6:
        return 6
    if left >= 4:
        return 4
    return 2 if left >= 2 else 1


@njit(cache=True, nogil=True)
def _conv_winograd(counter, x, u, bias, bias16, out, pt, pl, code):
    # out = act(bias + 3x3 stride-1 convolution of x, zero-padded by pt/pl at the top/left and
    # as much as the output needs at the bottom/right); u (36, C16, F16) the filters' G g G^T.
    # Items: rows of tiles (four output rows of one image), in blocks of 12 tiles or fewer.
    # With F a multiple of 16 the outputs go straight to out, else through a buffer of F16
    # columns.
    nb, h, w, c_n = x.shape
    _, c16, f16 = u.shape
    _, out_h, out_w, f = out.shape
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    band_w = 4 * tiles_w + 2
    buffered = f != f16
    band = np.empty(6 * band_w * c16, dtype=np.float32)  # this thread's
    v = np.empty(36 * 12 * c16, dtype=np.float32)
    m = np.empty(36 * 12 * f16, dtype=np.float32)
    y = np.empty(4 * out_w * f16 if buffered else 1, dtype=np.float32)
    flat_u = u.reshape(u.size)
    flat_out = out.reshape(out.size)
    out2d = out.reshape(nb * out_h * out_w, f)
    fused = not buffered and (code == _LINEAR or code == _RELU)  # else the epilogue's
    relu = fused and code == _RELU
    t = _next_item(counter)
    while t < nb * tiles_h:
        n = t // tiles_h
        oh = 4 * (t % tiles_h)
        rows = min(4, out_h - oh)
        if c16 == c_n:
            _fill_band(x, n, oh - pt, 6, pl, band_w - w - pl, band)
        else:
            _fill_band_channels(x, n, oh - pt, 6, pl, band_w, c16, band)
        first = (n * out_h + oh) * out_w
        target = y if buffered else flat_out
        base = 0 if buffered else first * f16
        start = 0
        while start < tiles_w:
            block = _winograd_block(tiles_w - start)
            for p in range(block):  # input transform
                src = 4 * (start + p) * c16
                for c in range(0, c16, 16):
                    _winograd_in16(band, src + c, c16, band_w * c16, v, p * c16 + c,
                                   block * c16)
            for k in range(36):  # the products: 36 GEMMs (block, C16) @ (C16, F16)
                for f0 in range(0, f16, 32):
                    _tiles_gemm(v, k * block * c16, c16, flat_u, k * c16 * f16 + f0, f16, m,
                                k * block * f16 + f0, block, 2 if f16 - f0 >= 32 else 1)
            for p in range(block):  # output transform
                ow = 4 * (start + p)
                for q in range(0, f16, 16):
                    _winograd_out16(m, p * f16 + q, block * f16, bias16, q, fused, relu,
                                    target, base + ow * f16 + q, out_w * f16, f16, rows,
                                    min(4, out_w - ow))
            start += block
        if buffered:
            _bias_act_rows(y.reshape(4 * out_w, f16), 0, out2d, first, rows * out_w, bias,
                           code)
        elif not fused:
            _bias_act_inplace(out2d, first, rows * out_w, 0, bias, code)
        t = _next_item(counter)


_FILTERS: dict = {}  # id(kernel) -> (weak reference to it, a copy of it, its Winograd filters)


def _cached_winograd_filters(kernel: np.ndarray, c16: int, f16: int) -> np.ndarray:
    """`_winograd_filters(kernel)`, kept while that kernel array lives and holds the same values
    (training changes weights in place: the values are compared, not trusted): a small batch
    would otherwise spend as long transforming the filters as convolving."""
    key = id(kernel)
    entry = _FILTERS.get(key)
    if entry is not None:
        alive, values, filters = entry
        if (alive() is kernel and filters.shape == (36, c16, f16)
                and np.array_equal(values, kernel, equal_nan=True)):
            return filters
    filters = _winograd_filters(kernel, c16, f16)
    try:
        alive = weakref.ref(kernel, lambda _, key=key: _FILTERS.pop(key, None))
    except TypeError:  # not weakly referenceable: not kept
        return filters
    _FILTERS[key] = (alive, kernel.copy(), filters)
    return filters


def _winograd_filters(kernel: np.ndarray, c16: int, f16: int) -> np.ndarray:
    """(3, 3, C, F) -> (36, C16, F16): G g G^T of each (c, f) filter at position 6*i + j,
    computed in float64 and rounded once; zero rows and columns up to C16 and F16."""
    g = np.array(_WINOGRAD_G)
    u = np.tensordot(g, np.tensordot(g, kernel.astype(np.float64), ([1], [1])), ([1], [1]))
    c_n, f = kernel.shape[2], kernel.shape[3]
    padded = np.zeros((36, c16, f16), dtype=np.float32)
    padded[:, :c_n, :f] = u.reshape(36, c_n, f)
    return padded


# Winograd pays off from this many input channels (fewer: the transforms cost more than the
# products they save) and output columns (narrower: tiles wasted at the edges), while its
# transformed filters (read whole for every block of tiles) stay in the CPU's cache.
_WINOGRAD_MIN_CHANNELS = 16
_WINOGRAD_MIN_WIDTH = 16
_WINOGRAD_MAX_FILTER_BYTES = 10 << 20


def _winograd_fits(k_h, k_w, sh, sw, dh, dw, c_n, f, out_w) -> bool:
    """True for the 3x3 stride-1 undilated convolutions that go through Winograd F(4x4, 3x3)."""
    filter_bytes = 36 * 4 * -(-c_n // 16) * 16 * -(-f // 16) * 16
    return (k_h == k_w == 3 and sh == sw == dh == dw == 1 and c_n >= _WINOGRAD_MIN_CHANNELS
            and out_w >= _WINOGRAD_MIN_WIDTH and filter_bytes <= _WINOGRAD_MAX_FILTER_BYTES)
