"""LLVM IR for what numba's own loops would do with half-width vectors: helpers for numba
intrinsics over float32 arrays, and the direct-convolution micro-kernel (`_conv_block`) that
the direct and Winograd convolutions share."""

from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


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
