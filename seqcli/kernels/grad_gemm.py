"""The products of the backward passes, op(a) @ op(b) with op a transpose where asked (x.T @ dy,
dy @ kernel.T): numpy's own BLAS `sgemm` called from the kernels' threads on tiles of the
result, BLAS single-threaded inside, as the forward's GEMMs are (dense.py). Never BLAS's own
threads beside the kernels' pool: on a busy machine the two wait for each other.

Where numpy's BLAS cannot be called from the kernels (`_blas()` is None), numpy's matmul."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from seqcli.kernels.dense import _ONE, _ROW_MAJOR, _blas, _cblas_codegen, _gemm_parameters
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel, thread_count

numba_ready()  # every kernel here runs in numba

# Up to this many multiply-accumulates a product is one single-threaded BLAS call: waking a
# thread would cost more than it saves.
_ONE_CALL_MACS = 1 << 21
# Rows (or columns) of one tile at least: BLAS runs near its peak on tiles this big.
_MIN_TILE = 64


@intrinsic
def _sgemm_op(typingctx, address, ilp64, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc,
              beta):
    """c = op(a) @ op(b) + beta * c through the cblas_sgemm at `address`, row-major float32;
    op transposes where `trans_a` / `trans_b` is true. a, b, c are arrays whose first element
    starts each stored matrix, lda/ldb/ldc their row strides as stored."""
    for array in (a, b, c):
        if not isinstance(array, types.Array) or array.dtype != types.float32:
            return None
    signature = types.void(address, ilp64, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc,
                           beta)

    def arguments(operand, width):
        integer = [operand(i, "integer") for i in (4, 5, 6, 8, 10, 12)]
        return [_ROW_MAJOR, operand(2, "transpose"), operand(3, "transpose"), *integer[:3],
                _ONE, operand(7, "pointer"), integer[3], operand(9, "pointer"), integer[4],
                operand(13, "float"), operand(11, "pointer"), integer[5]]

    return signature, _cblas_codegen(_gemm_parameters, arguments)


@njit(cache=True, nogil=True)
def _gemm_op_tiles(counter, address, ilp64, a, trans_a, b, trans_b, c, k, beta, tile_rows,
                   tile_cols):
    # c (M, N) = op(a) @ op(b) + beta * c, in tiles of (tile_rows, tile_cols) taken in turn
    m, n = c.shape
    lda, ldb = a.shape[1], b.shape[1]
    flat_a, flat_b, flat_c = a.reshape(a.size), b.reshape(b.size), c.reshape(c.size)
    col_tiles = (n + tile_cols - 1) // tile_cols
    tiles = (m + tile_rows - 1) // tile_rows * col_tiles
    t = _next_item(counter)
    while t < tiles:
        r0 = (t // col_tiles) * tile_rows
        c0 = (t % col_tiles) * tile_cols
        a_start = r0 if trans_a else r0 * lda  # op(a)'s row r0: a column of a, or a row
        b_start = c0 * ldb if trans_b else c0
        _sgemm_op(address, ilp64, trans_a, trans_b, min(tile_rows, m - r0),
                  min(tile_cols, n - c0), k, flat_a[a_start:], lda, flat_b[b_start:], ldb,
                  flat_c[r0 * n + c0:], n, beta)
        t = _next_item(counter)


def _product(a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False,
             out: np.ndarray | None = None) -> np.ndarray:
    """op(a) @ op(b) of float32 C-contiguous 2-D arrays (op transposes where asked), added
    into `out` when given (M, N) float32 C-contiguous, else a new array."""
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    if out is None:
        c = np.zeros((m, n), dtype=np.float32) if k == 0 else np.empty((m, n), np.float32)
    else:
        c = out
    if c.size == 0 or k == 0:
        return c
    found = _blas()
    op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
    macs = m * n * k
    if found is None or macs <= _ONE_CALL_MACS:
        with found.single_threaded() if found is not None else nullcontext():
            if out is None:
                np.matmul(op_a, op_b, out=c)
            else:
                c += op_a @ op_b
        return c
    tile_rows, tile_cols = _tiles(m, n, thread_count())
    tiles = -(-m // tile_rows) * -(-n // tile_cols)
    with found.single_threaded():
        _parallel(_gemm_op_tiles, tiles, 2.0 * macs, found.sgemm, found.ilp64, a, trans_a, b,
                  trans_b, c, k, np.float32(0.0 if out is None else 1.0), tile_rows, tile_cols)
    return c


def _tiles(m: int, n: int, threads: int) -> tuple[int, int]:
    """(tile_rows, tile_cols) of an (m, n) product: about two tiles a thread, split along its
    longer side, none thinner than `_MIN_TILE` (one tile on one thread)."""
    if threads == 1:
        return m, n
    if m >= n:
        return max(_MIN_TILE, -(-m // (2 * threads))), n
    return m, max(_MIN_TILE, -(-n // (2 * threads)))
