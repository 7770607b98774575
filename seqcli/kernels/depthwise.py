"""Depthwise convolution, y[n, oh, ow, c*DM + m] = act(b + sum_ij x[n, ih, iw, c] k[i, j, c, m]).

On AVX-512 (`_depthwise_rows`) each output row is cut into blocks of up to 8 pixels x 32
channels whose sums stay in vector registers (`_depthwise_block`): they start from the bias,
take only the taps that read input (so padding costs nothing and nothing is copied), and are
clamped for relu/relu6 as they are stored. With 3 taps a row at stride 1 or 2, each input
vector is loaded once for every pixel whose window holds it. A depth multiplier DM > 1 reads
a copy of the input rows an output row needs with each channel repeated DM times. Other CPUs
take a direct loop over each output row's windows, channel by channel (`_depthwise_loop`)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from seqcli.kernels.activations import _LINEAR, _RELU, _RELU6, _bias_act_inplace
from seqcli.kernels.cpu import wide_vectors
from seqcli.kernels.intrinsics import _counted_loop, _float32_arrays, _vector_io
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel, thread_count

numba_ready()  # every kernel here runs in numba

# Items per thread the output rows are cut into (at most an image's rows each): enough that a
# late or slow thread finds some left, few enough that consecutive rows share input rows.
_ITEMS_PER_THREAD = 8


@intrinsic
def _depthwise_block(typingctx, src, base, pixel_step, row_step, col_step, n_rows, n_cols,
                     kernel, w_base, w_row_step, w_col_step, bias, bias_base, out, out_base,
                     out_step, lanes, low, high, pixels, vectors, taps, stride):
    """The depthwise micro-kernel, P pixels x 16V channels held in vector registers:
    out[out_base + p*out_step + c] = min(max(s, low), high), NaN kept, where s = bias[bias_base +
    c] + sum_{i<n_rows, j<n_cols} src[base + p*pixel_step + i*row_step + j*col_step + c] *
    kernel[w_base + i*w_row_step + j*w_col_step + c], for p < P = `pixels` (a constant) and
    c < 16(V-1) + `lanes`: the last vector's channels past `lanes` are neither read from src nor
    stored. V = `vectors` is 1 or 2, chosen at run time (both compiled). `taps` and `stride`
    are constants: taps 0 for any window, or T = n_cols taps one column apart on windows S =
    `stride` columns apart (pixel_step == S * col_step); then each input vector is loaded
    once for all the pixels that use it (the sums take the same products in the same order)."""
    if not all(isinstance(a, types.IntegerLiteral) for a in (pixels, taps, stride)):
        return None
    if not isinstance(vectors, types.Integer) or not _float32_arrays(src, kernel, bias, out):
        return None
    n_pixels, n_taps, n_stride = pixels.literal_value, taps.literal_value, stride.literal_value
    span = (n_pixels - 1) * n_stride + n_taps if n_taps else n_pixels  # columns (or pixels)
    signature = types.void(src, base, pixel_step, row_step, col_step, n_rows, n_cols, kernel,
                           w_base, w_row_step, w_col_step, bias, bias_base, out, out_base,
                           out_step, lanes, low, high, pixels, vectors, taps, stride)

    def codegen(context, builder, sig, args):
        data, integer, load, store = _vector_io(context, builder, sig, args)
        f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
        vector = ir.VectorType(f32, 16)
        x_data, w_data, b_data, out_data = data(0), data(7), data(11), data(13)
        base, pixel_step, row_step, col_step, n_rows, n_cols = (integer(i) for i in range(1, 7))
        w_base, w_row_step, w_col_step, bias_base = (integer(i) for i in (8, 9, 10, 12))
        out_base, out_step, lanes = (integer(i) for i in (14, 15, 16))

        def const(value):
            return ir.Constant(i64, value)

        def splat(value, element):
            undef = ir.Constant(ir.VectorType(element, 16), ir.Undefined)
            return builder.shuffle_vector(builder.insert_element(undef, value, ir.Constant(
                i32, 0)), undef, ir.Constant(ir.VectorType(i32, 16), [0] * 16))

        low, high = (splat(context.cast(builder, args[i], sig.args[i], types.float32), f32)
                     for i in (17, 18))
        mask = builder.icmp_unsigned("<", ir.Constant(ir.VectorType(i64, 16), list(range(16))),
                                     splat(lanes, i64))
        pointer = vector.as_pointer()
        masked_load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            vector, [pointer, i32, mask.type, vector]), "llvm.masked.load.v16f32.p0")
        masked_store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            ir.VoidType(), [vector, pointer, i32, mask.type]), "llvm.masked.store.v16f32.p0")
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector] * 3), "llvm.fma.v16f32")
        zeros = ir.Constant(vector, [0.0] * 16)
        # each pixel's own pointer (one for every S columns the windows span), hidden from
        # LLVM behind an empty asm (as in _conv_block)
        f32_pointer = f32.as_pointer()
        opaque = ir.InlineAsm(ir.FunctionType(f32_pointer, [f32_pointer]), "", "=r,0")
        pointers = [builder.call(opaque, [builder.gep(x_data, [builder.add(base, builder.mul(
            const(q), pixel_step))])]) for q in range(-(-span // max(1, n_stride)))]

        def emit(n_vectors, tail):
            def partial(v):  # the last vector, when some of its lanes are past the channels
                return tail and v == n_vectors - 1

            def read(q, at, v):  # vector v at `at` past pointer q
                at = builder.add(at, const(16 * v))
                if partial(v):
                    return builder.call(masked_load, [builder.bitcast(builder.gep(
                        pointers[q], [at]), pointer), ir.Constant(i32, 4), mask, zeros])
                return load(pointers[q], at)

            def accumulate(p, v, value, weight):
                builder.store(builder.call(fma, [value, weight, builder.load(sums[p][v])]),
                              sums[p][v])

            sums = [[cgutils.alloca_once(builder, vector) for _ in range(n_vectors)]
                    for _ in range(n_pixels)]  # promoted to registers by LLVM
            for v in range(n_vectors):
                start = load(b_data, builder.add(bias_base, const(16 * v)))
                for p in range(n_pixels):
                    builder.store(start, sums[p][v])
            with _counted_loop(builder, n_rows) as i:
                x_row = builder.mul(i, row_step)
                w_row = builder.add(w_base, builder.mul(i, w_row_step))
                if n_taps:  # column q holds tap j of pixel p where q = p*S + j
                    weights = [[load(w_data, builder.add(w_row, builder.add(builder.mul(
                        const(j), w_col_step), const(16 * v)))) for v in range(n_vectors)]
                        for j in range(n_taps)]
                    shifted = [builder.add(x_row, builder.mul(const(r), col_step))
                               for r in range(n_stride)]
                    for q in range(span):
                        for v in range(n_vectors):
                            value = read(q // n_stride, shifted[q % n_stride], v)
                            for j in range(n_taps):
                                if (q - j) % n_stride == 0 and 0 <= q - j < n_pixels * n_stride:
                                    accumulate((q - j) // n_stride, v, value, weights[j][v])
                else:
                    with _counted_loop(builder, n_cols) as j:
                        x_at = builder.add(x_row, builder.mul(j, col_step))
                        w_at = builder.add(w_row, builder.mul(j, w_col_step))
                        weights = [load(w_data, builder.add(w_at, const(16 * v)))
                                   for v in range(n_vectors)]
                        for p in range(n_pixels):
                            for v in range(n_vectors):
                                accumulate(p, v, read(p, x_at, v), weights[v])
            for p in range(n_pixels):
                for v in range(n_vectors):
                    value = builder.load(sums[p][v])
                    value = builder.select(builder.fcmp_ordered(">", value, high), high, value)
                    value = builder.select(builder.fcmp_ordered("<", value, low), low, value)
                    at = builder.add(out_base, builder.add(builder.mul(const(p), out_step),
                                                           const(16 * v)))
                    if partial(v):
                        builder.call(masked_store, [value, builder.bitcast(builder.gep(
                            out_data, [at]), pointer), ir.Constant(i32, 4), mask])
                    else:
                        store(value, out_data, at)

        two = builder.icmp_signed("==", integer(20), const(2))
        full = builder.icmp_signed("==", lanes, const(16))
        with builder.if_else(two) as (wide, narrow):
            for branch, n_vectors in ((wide, 2), (narrow, 1)):
                with branch, builder.if_else(full) as (whole, cut):
                    with whole:
                        emit(n_vectors, False)
                    with cut:
                        emit(n_vectors, True)
        return context.get_dummy_value()

    return signature, codegen


@njit(cache=True)
def _depthwise_row(src, base, row_step, n_rows, first_row, kernel, bias, out, out_base, sw, dw,
                   pl, in_w, first_col, end_col, low, high):
    # one output row (OW, CD) at out_base from the n_rows kernel rows from first_row on, whose
    # input rows (in_w, CD) start at src[base], row_step apart. Columns first_col..end_col-1
    # read input at every tap: blocks of 8 pixels (the last one moved back to end at end_col,
    # recomputing a few), else 4, else 1; the others one pixel at a time over their own taps.
    k_w, cd16 = kernel.shape[1], kernel.shape[2]
    out_w, cd = out.shape[2], out.shape[3]
    flat_kernel, flat_out = kernel.reshape(kernel.size), out.reshape(out.size)
    interior = end_col - first_col
    block = 8 if interior >= 8 else (4 if interior >= 4 else 1)
    three_taps = k_w == 3 and dw == 1  # in a row, one column apart
    for c0 in range(0, cd, 32):
        vectors = 2 if cd - c0 > 16 else 1
        lanes = min(16, cd - c0 - 16 * (vectors - 1))
        w_row = first_row * k_w * cd16 + c0
        ow = first_col
        while ow < end_col:
            start = min(ow, end_col - block)
            x_at = base + (start * sw - pl) * cd + c0
            o_at = out_base + start * cd + c0
            if block == 8 and three_taps and sw == 1:
                _depthwise_block(src, x_at, cd, row_step, cd, n_rows, 3, flat_kernel, w_row,
                                 3 * cd16, cd16, bias, c0, flat_out, o_at, cd, lanes, low, high,
                                 8, vectors, 3, 1)
            elif block == 8 and three_taps and sw == 2:
                _depthwise_block(src, x_at, 2 * cd, row_step, cd, n_rows, 3, flat_kernel, w_row,
                                 3 * cd16, cd16, bias, c0, flat_out, o_at, cd, lanes, low, high,
                                 8, vectors, 3, 2)
            elif block == 8:
                _depthwise_block(src, x_at, sw * cd, row_step, dw * cd, n_rows, k_w,
                                 flat_kernel, w_row, k_w * cd16, cd16, bias, c0, flat_out, o_at,
                                 cd, lanes, low, high, 8, vectors, 0, 1)
            elif block == 4:
                _depthwise_block(src, x_at, sw * cd, row_step, dw * cd, n_rows, k_w,
                                 flat_kernel, w_row, k_w * cd16, cd16, bias, c0, flat_out, o_at,
                                 cd, lanes, low, high, 4, vectors, 0, 1)
            else:
                _depthwise_block(src, x_at, sw * cd, row_step, dw * cd, n_rows, k_w,
                                 flat_kernel, w_row, k_w * cd16, cd16, bias, c0, flat_out, o_at,
                                 cd, lanes, low, high, 1, vectors, 0, 1)
            ow = start + block
        for edge in range(out_w - interior):
            ow = edge if edge < first_col else edge + interior
            left = ow * sw - pl  # the input column of tap 0, maybe in the padding
            j0 = -(left // dw) if left < 0 else 0  # first tap inside: ceil(-left / dw)
            j1 = min(k_w, (in_w - 1 - left) // dw + 1) if left < in_w else 0
            n_cols = max(0, j1 - j0)
            x_at = base + (left + j0 * dw) * cd + c0 if n_cols else base
            _depthwise_block(src, x_at, sw * cd, row_step, dw * cd, n_rows, n_cols, flat_kernel,
                             w_row + j0 * cd16, k_w * cd16, cd16, bias, c0, flat_out,
                             out_base + ow * cd + c0, cd, lanes, low, high, 1, vectors, 0, 1)


@njit(cache=True)
def _repeat_rows(x, n, first_ih, n_rows, dh, dm, rows):
    # rows first_ih + t*dh (t < n_rows) of image n, each channel c repeated DM times
    # -> rows (n_rows, W, C*DM), flat: channel c*DM + m holds x[..., c]
    _, _, w, c_n = x.shape
    at = 0
    for t in range(n_rows):
        pixels = x[n, first_ih + t * dh]
        for col in range(w):
            for c in range(c_n):
                rows[at:at + dm] = pixels[col, c]
                at += dm


@njit(cache=True, nogil=True)
def _depthwise_rows(counter, x, kernel, shifts, bias, out, sh, sw, dh, dw, pt, pl, low, high,
                    code, tile_rows):
    # (N, H, W, C) * (KH, KW, CD16) -> (N, OH, OW, CD), CD = C*DM; kernel and the sums' start
    # `shifts` zero-padded to CD16 channels. Items: tile_rows output rows (n, oh) in turn; per
    # row only the kernel rows that read input. low/high clamp the sums; for an activation
    # that is not such a clamp, shifts are zeros and act(. + bias) follows, row by row.
    nb, h, w, c_n = x.shape
    k_h, k_w = kernel.shape[0], kernel.shape[1]
    _, out_h, out_w, cd = out.shape
    dm = cd // c_n
    flat_x = x.reshape(x.size)
    out2d = out.reshape(nb * out_h * out_w, cd)
    rows = np.empty(k_h * w * cd if dm > 1 else 1, dtype=np.float32)  # this thread's copy
    first_col = min(out_w, -(-pl // sw))  # columns whose every tap reads input: first ..
    end_col = max(first_col, min(out_w, (w - 1 + pl - (k_w - 1) * dw) // sw + 1))  # .. end - 1
    total = nb * out_h
    tiles = (total + tile_rows - 1) // tile_rows
    t = _next_item(counter)
    while t < tiles:
        for r in range(t * tile_rows, min(total, (t + 1) * tile_rows)):
            n, oh = r // out_h, r % out_h
            top = oh * sh - pt  # the input row of kernel row 0, maybe in the padding
            i0 = -(top // dh) if top < 0 else 0
            i1 = min(k_h, (h - 1 - top) // dh + 1) if top < h else 0
            n_rows = max(0, i1 - i0)
            src, base, row_step = flat_x, (n * h + top + i0 * dh) * w * c_n, dh * w * c_n
            if n_rows == 0:  # only the bias: nothing is read
                base = 0
            elif dm > 1:
                _repeat_rows(x, n, top + i0 * dh, n_rows, dh, dm, rows)
                src, base, row_step = rows, 0, w * cd
            _depthwise_row(src, base, row_step, n_rows, i0, kernel, shifts, out, r * out_w * cd,
                           sw, dw, pl, w, first_col, end_col, low, high)
            if code != _LINEAR and code != _RELU and code != _RELU6:
                _bias_act_inplace(out2d, r * out_w, out_w, 0, bias, code)
        t = _next_item(counter)


@njit(cache=True, nogil=True)
def _depthwise_loop(counter, x, kernel, bias, out, sh, sw, dh, dw, pt, pl, code):
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


# The clamp (low, high) each fused activation is, applied as the sums are stored.
_CLAMPS = {code: (np.float32(low), np.float32(high)) for code, low, high in (
    (_LINEAR, -np.inf, np.inf), (_RELU, 0.0, np.inf), (_RELU6, 0.0, 6.0))}


def _depthwise_conv(x, kernel, bias, out, strides, dilation, pt, pl, code: int) -> None:
    """out (N, OH, OW, C*DM) = act(bias + depthwise conv of x (N, H, W, C) with kernel
    (KH, KW, C*DM)), given the padding before each axis (the output's size sets the rest);
    bias (C*DM,) float32. Every argument already checked."""
    (sh, sw), (dh, dw) = strides, dilation
    k_h, k_w, cd = kernel.shape
    flops = 2.0 * out.size * k_h * k_w
    if not wide_vectors():
        _parallel(_depthwise_loop, out.shape[0] * out.shape[1], 8.0 * flops, x, kernel, bias,
                  out, sh, sw, dh, dw, pt, pl, code)
        return
    low, high = _CLAMPS.get(code, _CLAMPS[_LINEAR])
    shifts = bias if code in _CLAMPS else np.zeros_like(bias)
    total = out.shape[0] * out.shape[1]
    tile_rows = max(1, min(out.shape[1], total // (_ITEMS_PER_THREAD * thread_count())))
    _parallel(_depthwise_rows, -(-total // tile_rows), flops + 16.0 * (x.size + out.size), x,
              _whole_vectors(kernel), _whole_vectors(shifts), bias, out, sh, sw, dh, dw, pt, pl,
              low, high, code, tile_rows)


def _whole_vectors(a: np.ndarray) -> np.ndarray:
    """`a` with zeros after its last axis up to a multiple of 16 entries (itself if it is one)."""
    size = a.shape[-1]
    if size % 16 == 0:
        return a
    padded = np.zeros((*a.shape[:-1], -(-size // 16) * 16), dtype=np.float32)
    padded[..., :size] = a
    return padded
