"""Convolution kernels for Conv2D (and Conv1D as H=1), in tiles of output rows that the kernels'
threads take in turn, bias + activation fused into each tile. On AVX-512 a direct convolution
whose sums stay in vector registers (`_conv_block`, written in LLVM IR: numba's own loops
would use half-width vectors); grouped convolutions, and other CPUs, go through a per-tile
im2col and single-threaded BLAS GEMMs. Depthwise is a direct loop."""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from seqcli.kernels.activations import (
    _LINEAR,
    _RELU,
    _as_f32,
    _bias_act_inplace,
    _bias_act_rows,
    _bias_or_empty,
    _check_code,
    bias_activation_inplace,
)
from seqcli.kernels.dense import _blas, _sgemm, dense_forward
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

# Upper bound on one tile's buffer (bytes): its im2col columns, or its direct-convolution sums.
_CHUNK_BYTES = 256 << 10
# Output pixels a direct-convolution tile aims for (a few rows: its input band stays in cache).
_DIRECT_PIXELS = 256
_WIDE: list = []  # [bool] once known


def _wide_vectors() -> bool:
    """True when numba compiles for a CPU with 32 registers of 16 floats (AVX-512): the direct
    kernel keeps 12 x 32 sums in them. Elsewhere convolutions go through BLAS."""
    if not _WIDE:
        from llvmlite import binding
        from numba.core import config

        if config.CPU_FEATURES is not None:
            features = config.CPU_FEATURES
        elif config.CPU_NAME is not None:
            features = ""
        else:
            features = binding.get_host_cpu_features().flatten()
        _WIDE.append("+avx512f" in features.split(","))
    return _WIDE[0]


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


@contextmanager
def _counted_loop(builder, count):
    """`for index in range(count)` in LLVM IR, marked not to be unrolled: unrolled, the
    micro-kernel's loop would need more vector registers than there are, and spill."""
    i64 = ir.IntType(64)
    before = builder.basic_block
    head = builder.append_basic_block("loop.head")
    body = builder.append_basic_block("loop.body")
    done = builder.append_basic_block("loop.done")
    builder.branch(head)
    builder.position_at_end(head)
    index = builder.phi(i64)
    index.add_incoming(ir.Constant(i64, 0), before)
    builder.cbranch(builder.icmp_signed("<", index, count), body, done)
    builder.position_at_end(body)
    yield index
    following = builder.add(index, ir.Constant(i64, 1))
    index.add_incoming(following, builder.basic_block)
    latch = builder.branch(head)
    module = builder.module
    marker = module.add_metadata([ir.MetaDataString(module, f"seqcli.loop.{id(latch)}")])
    marker.operands = (marker, module.add_metadata(
        [ir.MetaDataString(module, "llvm.loop.unroll.disable")]))
    latch.set_metadata("llvm.loop", marker)
    builder.position_at_end(done)


def _vector_io(context, builder, sig, args):
    """For intrinsics over float32 arrays: the data pointer of argument i, argument i as an
    int64, and load/store of the 16 floats at element `offset` of a data pointer."""
    vector = ir.VectorType(ir.FloatType(), 16)

    def data(i):
        return context.make_array(sig.args[i])(context, builder, args[i]).data

    def integer(i):
        return context.cast(builder, args[i], sig.args[i], types.int64)

    def at(pointer, offset):
        return builder.bitcast(builder.gep(pointer, [offset]), vector.as_pointer())

    def load(pointer, offset):
        return builder.load(at(pointer, offset), align=4)

    def store(value, pointer, offset):
        builder.store(value, at(pointer, offset), align=4)

    return data, integer, load, store


def _float32_arrays(*arrays) -> bool:
    return all(isinstance(a, types.Array) and a.dtype == types.float32 for a in arrays)


@intrinsic
def _conv_block(typingctx, src, base, pixel_step, row_step, k_h, k_c, kernel, w_base, w_row_step,
                ldw, out, out_base, ldo, accumulate, pixels, vectors):
    """The direct-convolution micro-kernel, P pixels x 16V filters held in vector registers:
    out[out_base + p*ldo + f] (+)= sum_{i<k_h, q<k_c} src[base + p*pixel_step + i*row_step + q]
    * kernel[w_base + i*w_row_step + q*ldw + f] for p < P = `pixels` (a constant), f < 16V,
    V = `vectors`: a constant, or 1 or 2 chosen at run time (both are compiled)."""
    if not isinstance(pixels, types.IntegerLiteral) or not isinstance(vectors, types.Integer):
        return None
    if not _float32_arrays(src, kernel, out):
        return None
    n_pixels = pixels.literal_value
    fixed = vectors.literal_value if isinstance(vectors, types.IntegerLiteral) else None
    signature = types.void(src, base, pixel_step, row_step, k_h, k_c, kernel, w_base, w_row_step,
                           ldw, out, out_base, ldo, accumulate, pixels, vectors)

    def codegen(context, builder, sig, args):
        data, integer, load, store = _vector_io(context, builder, sig, args)
        f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
        vector = ir.VectorType(f32, 16)

        def const(value):
            return ir.Constant(i64, value)

        x_data, w_data, out_data = data(0), data(6), data(10)
        base, pixel_step, row_step, k_h, k_c = (integer(i) for i in (1, 2, 3, 4, 5))
        w_base, w_row_step, ldw, out_base, ldo = (integer(i) for i in (7, 8, 9, 11, 12))
        accumulate = context.cast(builder, args[13], sig.args[13], types.boolean)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector] * 3), "llvm.fma.v16f32")
        splat = ir.Constant(ir.VectorType(i32, 16), [0] * 16)
        undef = ir.Constant(vector, ir.Undefined)
        # each pixel's own pointer, hidden from LLVM behind an empty asm: it would otherwise
        # derive them one from another inside the loop, a chain of adds that halves the speed
        f32_pointer = f32.as_pointer()
        opaque = ir.InlineAsm(ir.FunctionType(f32_pointer, [f32_pointer]), "", "=r,0")
        pixel_pointers = [
            builder.call(opaque, [builder.gep(x_data, [builder.add(base, builder.mul(
                const(p), pixel_step))])]) for p in range(n_pixels)]

        def emit(n_vectors):
            outs = [[builder.add(out_base, builder.add(builder.mul(const(p), ldo),
                                                       const(16 * v)))
                     for v in range(n_vectors)] for p in range(n_pixels)]
            sums = [[cgutils.alloca_once(builder, vector) for _ in range(n_vectors)]
                    for _ in range(n_pixels)]  # promoted to registers by LLVM
            with builder.if_else(accumulate) as (add_to, fresh):
                with add_to:
                    for p in range(n_pixels):
                        for v in range(n_vectors):
                            builder.store(load(out_data, outs[p][v]), sums[p][v])
                with fresh:
                    for p in range(n_pixels):
                        for v in range(n_vectors):
                            builder.store(ir.Constant(vector, [0.0] * 16), sums[p][v])
            with _counted_loop(builder, k_h) as i:
                x_row = builder.mul(i, row_step)
                w_row = builder.add(w_base, builder.mul(i, w_row_step))
                with _counted_loop(builder, k_c) as q:
                    w_at = builder.add(w_row, builder.mul(q, ldw))
                    weights = [load(w_data, builder.add(w_at, const(16 * v)))
                               for v in range(n_vectors)]
                    x_at = builder.add(x_row, q)
                    for p in range(n_pixels):
                        value = builder.load(builder.gep(pixel_pointers[p], [x_at]))
                        broadcast = builder.shuffle_vector(builder.insert_element(
                            undef, value, ir.Constant(i32, 0)), undef, splat)
                        for v in range(n_vectors):
                            total = builder.call(fma, [broadcast, weights[v],
                                                       builder.load(sums[p][v])])
                            builder.store(total, sums[p][v])
            for p in range(n_pixels):
                for v in range(n_vectors):
                    store(builder.load(sums[p][v]), out_data, outs[p][v])

        if fixed is not None:
            emit(fixed)
        else:
            two = builder.icmp_signed("==", integer(15), const(2))
            with builder.if_else(two) as (wide, narrow):
                with wide:
                    emit(2)
                with narrow:
                    emit(1)
        return context.get_dummy_value()

    return signature, codegen


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
                 tile_rows):
    # out[n, oh, ow, f] = act(bias[f] + sum_ijc xpad[n, oh*sh + i*dh, ow*sw + j*dw, c]
    # kernel[i, j, c, f]), kernel (KH, KW, C, F16) zero-padded to a multiple of 16 filters.
    # Tiles of output rows; with padding, the input rows a tile needs are copied with zeros
    # around them; sums go to a per-worker buffer, the epilogue writes them to out.
    nb, h, w, c_n = x.shape
    k_h, k_w, _, f16 = kernel.shape
    _, out_h, out_w, f = out.shape
    padded = pt + pb + pl + pr > 0
    wp = w + pl + pr
    blocks = (out_h + tile_rows - 1) // tile_rows
    n_tiles = nb * blocks
    band_h = (tile_rows - 1) * sh + (k_h - 1) * dh + 1
    out2d = out.reshape(nb * out_h * out_w, f)
    flat_out = out.reshape(out.size)
    direct = f == f16  # sums straight into out, else into a buffer of F16 columns
    flat_x = x.reshape(x.size)
    band = np.empty(band_h * wp * c_n if padded else 1, dtype=np.float32)  # this thread's
    sums = np.empty(1 if direct else tile_rows * out_w * f16, dtype=np.float32)
    t = _next_item(counter)
    while t < n_tiles:
        n = t // blocks
        oh0 = (t % blocks) * tile_rows
        rows = min(tile_rows, out_h - oh0)
        if padded:
            _fill_band(x, n, oh0 * sh - pt, (rows - 1) * sh + (k_h - 1) * dh + 1, pl, pr,
                       band)
        first = (n * out_h + oh0) * out_w
        target = flat_out if direct else sums
        target_base = first * f16 if direct else 0
        for f0 in range(0, f16, 32):
            vectors = 2 if f16 - f0 >= 32 else 1
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
            _bias_act_inplace(out2d, first, rows * out_w, 0, bias, code)
        else:
            _bias_act_rows(sums.reshape(tile_rows * out_w, f16), 0, out2d, first,
                           rows * out_w, bias, code)
        t = _next_item(counter)


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


# ----------------------------------------------------------------------------- Winograd
# Winograd F(4x4, 3x3) (Lavin & Gray, 2016) for 3x3 stride-1 convolutions: each 4x4 block of
# outputs comes from its 6x6 input window d as A^T [U * (B^T d B)] A, U = G g G^T the
# transformed filter: 36 products per (input, output) channel pair instead of 144. The 36
# products of a block of tiles are 36 GEMMs over the channels, done by the direct kernel's
# micro-kernel; the transforms work on 16 channels (filters) at once, in vector registers.

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


# ----------------------------------------------------------------------------- public wrappers


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
    out = np.empty((nb, out_h, out_w, f), dtype=np.float32)  # (N, OH, OW, F)
    out2d = out.reshape(nb * out_h * out_w, f)
    if out.size == 0:
        return out
    pointwise = k_h == k_w == 1 and sh == sw == 1 and pt == pb == pl == pr == 0
    if pointwise and groups == 1:  # 1x1 stride 1: a plain matmul, (N*H*W, C) @ (C, F)
        return dense_forward(x.reshape(nb * h * w, c_n), kernel.reshape(c_n, f), bias,
                             code).reshape(out.shape)
    full = _full_bias(b, f)
    if (groups == 1 and _wide_vectors()
            and _winograd_fits(k_h, k_w, sh, sw, dh, dw, c_n, f, out_w)):
        c16, f16 = -(-c_n // 16) * 16, -(-f // 16) * 16
        _parallel(_conv_winograd, nb * -(-out_h // 4), 2.0 * out.size * 9 * c_n, x,
                  _cached_winograd_filters(kernel, c16, f16), full, np.pad(full, (0, f16 - f)), out,
                  pt, pl, code)
        return out
    if groups == 1 and _wide_vectors():
        f16 = -(-f // 16) * 16
        if f16 != f:  # zero filters up to a multiple of 16, dropped by the epilogue
            kernel = np.pad(kernel, ((0, 0), (0, 0), (0, 0), (0, f16 - f)))
        rows = max(1, min(out_h, -(-_DIRECT_PIXELS // out_w), _CHUNK_BYTES // (4 * out_w * f16)))
        _parallel(_conv_direct, nb * -(-out_h // rows), 2.0 * out.size * k_h * k_w * c_n, x,
                  kernel, full, out, sh, sw, dh, dw, pt, pb, pl, pr, code, rows)
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
    if out.size == 0:
        return out
    _parallel(_depthwise, nb * out_h, 16.0 * out.size * k_h * k_w, x,
              kernel.reshape(k_h, k_w, c_n * dm), _full_bias(b, c_n * dm), out, sh, sw, dh, dw,
              pt, pl, code)
    return out
