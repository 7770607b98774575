"""Dense kernel, and the GEMM that the convolutions share: numpy's own BLAS `sgemm` (`sgemv` for a
single row), called from the kernels' threads on tiles of rows or columns (BLAS single-threaded
inside), bias + activation fused per tile.

Where numpy's BLAS cannot be found (not an OpenBLAS, or `SEQCLI_NUMBA_BLAS=0`), `_blas()` is None
and the kernels fall back to numpy's matmul followed by the parallel epilogue."""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from seqcli.activations import ACTIVATION_CODES
from seqcli.kernels.activations import (
    _as_f32,
    _bias_act_inplace,
    _bias_act_numpy,
    _bias_or_empty,
    _check_code,
    bias_activation_inplace,
)
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel, thread_count

# Up to this many multiply-accumulates a dense layer is one single-threaded numpy matmul with
# a numpy epilogue for linear/relu/softmax (no thread wakes); small.py's DENSE_NUMPY_MACS.
_SMALL_MACS = 1 << 22
# Up to this many OpenBLAS runs a GEMM on one thread by itself (its SMP threshold, 65536 x
# GEMM_MULTITHREAD_THRESHOLD 4): no need to find the library to keep it there.
_ONE_THREAD_MACS = 1 << 18
# Rows of one GEMM tile: enough for BLAS to run near its peak, few enough to share out.
_TILE_ROWS = 256
# A single row's columns are shared out in tiles of a multiple of this many (each tile's columns
# start on a cache line, and fill BLAS's vector blocks).
_ROW_TILE_STEP = 64
_ROW_CODES = (ACTIVATION_CODES["softmax"], ACTIVATION_CODES["log_softmax"])


# ----------------------------------------------------------------------------- numpy's BLAS


class _Blas:
    """numpy's OpenBLAS as numba code calls it: `cblas_sgemm`'s and `cblas_sgemv`'s addresses
    and integer width, and its thread count, which must be 1 while numba's threads call it."""

    def __init__(self, sgemm: int, sgemv: int, ilp64: bool, get_threads, set_threads):
        self.sgemm = sgemm
        """The address of `cblas_sgemm`."""
        self.sgemv = sgemv
        """The address of `cblas_sgemv`."""
        self.ilp64 = ilp64
        """True when its integers are 64-bit."""
        self._get_threads = get_threads
        self._set_threads = set_threads

    @contextmanager
    def single_threaded(self):
        """BLAS on one thread inside the block (numba's threads share the cores out)."""
        before = self._get_threads()
        if before != 1:
            self._set_threads(1)
        try:
            yield
        finally:
            if before != 1:
                self._set_threads(before)


_BLAS: list = []  # [_Blas | None] once looked up


def _blas() -> _Blas | None:
    """numpy's own OpenBLAS (found through threadpoolctl), or None: the kernels then use matmul."""
    if not _BLAS:
        _BLAS.append(_find_blas() if os.environ.get("SEQCLI_NUMBA_BLAS", "1") != "0" else None)
    return _BLAS[0]


def _find_blas() -> _Blas | None:
    from threadpoolctl import ThreadpoolController

    for library in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        dynlib = library.dynlib
        for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("", "")):
            try:
                sgemm = getattr(dynlib, f"{prefix}cblas_sgemm{suffix}")
                sgemv = getattr(dynlib, f"{prefix}cblas_sgemv{suffix}")
                get_threads = getattr(dynlib, f"{prefix}openblas_get_num_threads{suffix}")
                set_threads = getattr(dynlib, f"{prefix}openblas_set_num_threads{suffix}")
            except AttributeError:
                continue
            ilp64 = suffix == "64_" or _openblas_config(dynlib, prefix, suffix).find(
                "USE64BITINT") >= 0
            get_threads.restype = ctypes.c_int
            set_threads.argtypes = [ctypes.c_int]
            return _Blas(ctypes.cast(sgemm, ctypes.c_void_p).value,
                         ctypes.cast(sgemv, ctypes.c_void_p).value, ilp64, get_threads,
                         set_threads)
    return None


def _openblas_config(dynlib, prefix: str, suffix: str) -> str:
    try:
        get_config = getattr(dynlib, f"{prefix}openblas_get_config{suffix}")
    except AttributeError:
        return ""
    get_config.restype = ctypes.c_char_p
    return (get_config() or b"").decode("ascii", "replace")


# ----------------------------------------------------------------------------- jitted kernels


def _cblas_codegen(parameters, arguments):
    """The codegen of a call to the cblas function whose address is the intrinsic's first
    argument, with 64-bit integers where its second is true: `parameters(width)` gives its LLVM
    parameter types and `arguments(operand, width)` the values passed, `operand(i, kind)`
    reading the intrinsic's argument i as a float32 pointer ("pointer", of an array's first
    element), an integer of `width` ("integer"), a float32 ("float") or a CBLAS transpose flag
    ("transpose")."""

    def codegen(context, builder, sig, args):
        f32, i32 = ir.FloatType(), ir.IntType(32)

        def call(width):
            def operand(i, kind):
                if kind == "pointer":
                    data = context.make_array(sig.args[i])(context, builder, args[i]).data
                    return builder.bitcast(data, f32.as_pointer())
                if kind == "float":
                    return context.cast(builder, args[i], sig.args[i], types.float32)
                if kind == "transpose":  # CblasTrans (112) where true, else CblasNoTrans (111)
                    flag = context.cast(builder, args[i], sig.args[i], types.boolean)
                    return builder.select(flag, ir.Constant(i32, 112), ir.Constant(i32, 111))
                value = context.cast(builder, args[i], sig.args[i], types.int64)
                return builder.trunc(value, width) if width is i32 else value

            fnty = ir.FunctionType(ir.VoidType(), parameters(width))
            address = context.cast(builder, args[0], sig.args[0], types.int64)
            builder.call(builder.inttoptr(address, fnty.as_pointer()), arguments(operand, width))

        is_ilp64 = context.cast(builder, args[1], sig.args[1], types.boolean)
        with builder.if_else(is_ilp64) as (wide, narrow):
            with wide:
                call(ir.IntType(64))
            with narrow:
                call(i32)
        return context.get_dummy_value()

    return codegen


def _gemm_parameters(width):
    """cblas_sgemm's parameter types, its integers `width` wide."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    return [i32, i32, i32, width, width, width, f32, f32.as_pointer(), width, f32.as_pointer(),
            width, f32, f32.as_pointer(), width]


_ROW_MAJOR, _NO_TRANSPOSE = ir.Constant(ir.IntType(32), 101), ir.Constant(ir.IntType(32), 111)
_ONE = ir.Constant(ir.FloatType(), 1.0)


@intrinsic
def _sgemm(typingctx, address, ilp64, m, n, k, a, lda, b, ldb, c, ldc, beta):
    """c = a @ b + beta * c through the cblas_sgemm at `address`, all row-major float32; a, b, c
    are arrays whose first element starts each matrix, lda/ldb/ldc their row strides."""
    for array in (a, b, c):
        if not isinstance(array, types.Array) or array.dtype != types.float32:
            return None
    signature = types.void(address, ilp64, m, n, k, a, lda, b, ldb, c, ldc, beta)

    def arguments(operand, width):
        integer = [operand(i, "integer") for i in (2, 3, 4, 6, 8, 10)]
        return [_ROW_MAJOR, _NO_TRANSPOSE, _NO_TRANSPOSE, *integer[:3], _ONE,
                operand(5, "pointer"), integer[3], operand(7, "pointer"), integer[4],
                operand(11, "float"), operand(9, "pointer"), integer[5]]

    return signature, _cblas_codegen(_gemm_parameters, arguments)


@intrinsic
def _sgemv(typingctx, address, ilp64, k, n, a, lda, x, y):
    """y[:n] = x[:k] @ a[:k, :n] through the cblas_sgemv at `address` (row-major `a` with row
    stride lda, transposed), all float32; a, x, y are arrays whose first element starts each."""
    for array in (a, x, y):
        if not isinstance(array, types.Array) or array.dtype != types.float32:
            return None
    signature = types.void(address, ilp64, k, n, a, lda, x, y)

    def parameters(width):
        f32, i32 = ir.FloatType(), ir.IntType(32)
        return [i32, i32, width, width, f32, f32.as_pointer(), width, f32.as_pointer(), width,
                f32, f32.as_pointer(), width]

    def arguments(operand, width):
        one, transposed = ir.Constant(width, 1), ir.Constant(ir.IntType(32), 112)
        return [_ROW_MAJOR, transposed, operand(2, "integer"), operand(3, "integer"), _ONE,
                operand(4, "pointer"), operand(5, "integer"), operand(6, "pointer"), one,
                ir.Constant(ir.FloatType(), 0.0), operand(7, "pointer"), one]

    return signature, _cblas_codegen(parameters, arguments)


@njit(cache=True, nogil=True)
def _gemm_bias_act(counter, address, gemv_address, ilp64, x, kernel, bias, out, code, tile_rows,
                   tile_cols):
    # (M, K) @ (K, U) -> (M, U) in tiles of (tile_rows, tile_cols) taken in turn, each one
    # sgemm call (sgemv for a single row: no copy of the kernel's columns) then
    # act(tile + bias) while it is in cache
    m, k = x.shape
    units = kernel.shape[1]
    col_tiles = (units + tile_cols - 1) // tile_cols
    tiles = (m + tile_rows - 1) // tile_rows * col_tiles
    t = _next_item(counter)
    while t < tiles:
        r0 = (t // col_tiles) * tile_rows
        c0 = (t % col_tiles) * tile_cols
        rows = min(tile_rows, m - r0)
        cols = min(tile_cols, units - c0)
        if rows == 1:
            _sgemv(gemv_address, ilp64, k, cols, kernel[:, c0:], units, x[r0], out[r0, c0:])
        else:
            _sgemm(address, ilp64, rows, cols, k, x[r0:], k, kernel[:, c0:], units,
                   out[r0:, c0:], units, np.float32(0.0))
        _bias_act_inplace(out, r0, rows, c0, bias[c0:c0 + cols], code)
        t = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def dense_forward(x, kernel, bias, activation: int) -> np.ndarray:
    """y = act(x @ kernel + bias); (M, K) @ (K, U) -> (M, U)."""
    code = _check_code(activation)
    x = _as_f32(x, "x", 2)
    kernel = _as_f32(kernel, "kernel", 2)
    if kernel.shape[0] != x.shape[1]:
        raise ValueError(f"kernel {kernel.shape} does not match input features {x.shape[1]}")
    b = _bias_or_empty(bias, kernel.shape[1])
    m, k = x.shape
    units = kernel.shape[1]
    y = np.empty((m, units), dtype=np.float32)  # (M, K) @ (K, U) -> (M, U)
    if y.size == 0:
        return y
    macs = m * k * units
    small = macs <= _SMALL_MACS
    found = None if k == 0 or macs <= _ONE_THREAD_MACS else _blas()
    if m == 1 and not small and found is not None and code not in _ROW_CODES:
        _row_forward(found, x, kernel, b, y, code)
        return y
    if small or found is None:
        if found is None:
            np.matmul(x, kernel, out=y)  # float32 BLAS, its own threads (one when this small)
        else:
            with found.single_threaded():  # small: waking BLAS's threads would cost more
                np.matmul(x, kernel, out=y)
        if not (small and _bias_act_numpy(y, b, code)):
            bias_activation_inplace(y, b, code)
        return y
    full = b if len(b) else np.zeros(units, dtype=np.float32)
    numba_ready()
    tile_rows, tile_cols = _gemm_tiles(m, units, code, thread_count())
    tiles = -(-m // tile_rows) * -(-units // tile_cols)
    with found.single_threaded():
        _parallel(_gemm_bias_act, tiles, 2.0 * m * k * units, found.sgemm, found.sgemv,
                  found.ilp64, x, kernel, full, y, code, tile_rows, tile_cols)
    return y


def _row_forward(found: _Blas, x, kernel, b, y, code: int) -> None:
    """y = act(x @ kernel + b) for a single row x (1, K) beyond the small size: a matrix-vector
    product, bound by reading the kernel (a GEMM's tiles would copy it), its columns shared
    out."""
    k, units = kernel.shape
    threads = thread_count()
    tile_cols = -(-units // (2 * threads * _ROW_TILE_STEP)) * _ROW_TILE_STEP
    full = b if len(b) else np.zeros(units, dtype=np.float32)
    numba_ready()
    with found.single_threaded():
        _parallel(_gemm_bias_act, -(-units // tile_cols), 16.0 * k * units, found.sgemm,
                  found.sgemv, found.ilp64, x, kernel, full, y, code, 1, tile_cols)


def _gemm_tiles(m: int, units: int, code: int, threads: int) -> tuple[int, int]:
    """Tile shape for `_gemm_bias_act`: a few row tiles a thread (big enough that BLAS packs the
    kernel rarely); column tiles when there are too few rows to go round (never for softmax,
    which needs whole rows)."""
    tile_rows = max(_TILE_ROWS, -(-m // (4 * threads)))
    if m >= threads * _TILE_ROWS or code in _ROW_CODES or units < 32 * threads:
        return min(tile_rows, m), units
    return m, max(16, -(-units // (16 * threads)) * 16)
