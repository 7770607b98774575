"""Dense gradients: the fused activation's gradient, then two BLAS products on the kernels'
threads (grad_gemm.py) and a column sum.

`dense_backward(x, kernel, z, y, dy, activation)`: z = x @ kernel + bias and y = act(z) are the
forward's (M, U) pre- and post-activation; pass what was kept, None for the other (the rules of
`activation_backward`: sigmoid, tanh, softmax, log_softmax and exponential read y, the other
activations z, linear neither). dx is None when `input_grad` is false (the first layer).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32, _check_code
from seqcli.kernels.grad_activations import activation_backward
from seqcli.kernels.grad_gemm import _product
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel, thread_count

numba_ready()  # every kernel here runs in numba


@njit(cache=True, nogil=True)
def _column_sums(counter, rows, partial):
    # partial (B, F) float64: item b adds its share of the rows of rows (R, F) into partial[b]
    total, f = rows.shape
    n_blocks = partial.shape[0]
    b = _next_item(counter)
    while b < n_blocks:
        sums = partial[b]
        for r in range(b * total // n_blocks, (b + 1) * total // n_blocks):
            for c in range(f):
                sums[c] += rows[r, c]
        b = _next_item(counter)


def _bias_grad(dz: np.ndarray) -> np.ndarray:
    """The bias gradient, sum over the rows of dz (R, F), accumulated in float64 on the
    kernels' threads (a block of rows each)."""
    blocks = max(1, min(dz.shape[0], thread_count()))
    partial = np.zeros((blocks, dz.shape[1]), dtype=np.float64)
    _parallel(_column_sums, blocks, 2.0 * dz.size, dz, partial)
    return partial.sum(axis=0).astype(np.float32)


def dense_backward(
    x, kernel, z, y, dy, activation: int, *, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """dz = dy act'(z); (dx, dkernel, dbias) = (dz @ kernel.T, x.T @ dz, sum_rows dz)."""
    code = _check_code(activation)
    x = _as_f32(x, "x", 2)
    kernel = _as_f32(kernel, "kernel", 2)
    dy = _as_f32(dy, "dy", 2)
    m, k = x.shape
    if kernel.shape[0] != k or dy.shape != (m, kernel.shape[1]):
        raise ValueError(
            f"x {x.shape}, kernel {kernel.shape} and dy {dy.shape} do not fit (M, K) @ (K, U)"
        )
    dz = activation_backward(z, y, dy, code)  # (M, U)
    dkernel = _product(x, dz, trans_a=True)  # (K, M) @ (M, U) -> (K, U)
    dbias = _bias_grad(dz)  # (U,)
    dx = _product(dz, kernel, trans_b=True) if input_grad else None  # (M, U) @ (U, K)
    return dx, dkernel, dbias
