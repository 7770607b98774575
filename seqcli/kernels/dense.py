"""Dense kernel: a BLAS matmul followed by the fused bias + activation epilogue."""

from __future__ import annotations

import numpy as np

from seqcli.kernels.activations import _as_f32, _bias_or_empty, _check_code, bias_activation_inplace


def dense_forward(x, kernel, bias, activation: int) -> np.ndarray:
    """y = act(x @ kernel + bias); (M, K) @ (K, U) -> (M, U)."""
    code = _check_code(activation)
    x = _as_f32(x, "x", 2)
    kernel = _as_f32(kernel, "kernel", 2)
    if kernel.shape[0] != x.shape[1]:
        raise ValueError(f"kernel {kernel.shape} does not match input features {x.shape[1]}")
    b = _bias_or_empty(bias, kernel.shape[1])
    y = np.ascontiguousarray(x @ kernel)  # (M, K) @ (K, U) -> (M, U), float32 BLAS
    bias_activation_inplace(y, b, code)
    return y
