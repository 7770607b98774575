"""Dense gradients: the fused activation's gradient, then two BLAS matmuls and a column sum.

`dense_backward(x, kernel, z, y, dy, activation)`: z = x @ kernel + bias and y = act(z) are the
forward's (M, U) pre- and post-activation; pass what was kept, None for the other (the rules of
`activation_backward`: sigmoid, tanh, softmax, log_softmax and exponential read y, the other
activations z, linear neither). dx is None when `input_grad` is false (the first layer).
"""

from __future__ import annotations

import numpy as np

from seqcli.kernels.activations import _as_f32, _check_code
from seqcli.kernels.grad_activations import activation_backward


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
    dkernel = np.ascontiguousarray(x.T @ dz)  # (K, M) @ (M, U) -> (K, U)
    dbias = dz.sum(axis=0, dtype=np.float64).astype(np.float32)  # (U,)
    dx = np.ascontiguousarray(dz @ kernel.T) if input_grad else None  # (M, U) @ (U, K)
    return dx, dkernel, dbias
