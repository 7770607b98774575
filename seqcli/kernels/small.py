"""Small work in plain numpy, without loading numba.

`import numba` and loading the cached kernels cost 0.1-0.3 s, far more than a small model's
work: a Dense stack on a few rows is done in microseconds. A Dense layer or an activation
whose work is below the thresholds here runs on these functions instead of the jitted
kernels, with the same arithmetic: float32 matmul (numpy's BLAS, which stays on one thread at
this size by itself), and each activation computed in float64 and rounded once, as the
kernels' `_act` does (softmax and log-softmax per row in float64). A model made only of such
layers never imports numba."""

from __future__ import annotations

import numpy as np

from seqcli.activations import ACTIVATION_CODES, SELU_ALPHA, SELU_SCALE

SMALL_MACS = 1 << 18
"""Up to this many multiply-accumulates a Dense layer runs here; OpenBLAS keeps a GEMM this
small on one thread by itself (its SMP threshold is 65536 x 4)."""
SMALL_VALUES = 1 << 16
"""Up to this many values an activation runs here."""

_LEAKY_SLOPE = 0.2  # Keras 3's default negative_slope, as the kernels
_INV_SQRT2 = 0.7071067811865476


def _softplus(v: np.ndarray) -> np.ndarray:
    """log(1 + exp(v)) = max(v, 0) + log1p(exp(-|v|)), stable for large |v|."""
    return np.maximum(v, 0.0) + np.log1p(np.exp(-np.abs(v)))


def _sigmoid(v: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-v)), written as the kernels do for each sign (no overflow)."""
    e = np.exp(-np.abs(v))
    return np.where(v >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def _hard_sigmoid(v: np.ndarray) -> np.ndarray:
    return np.clip(v + 3.0, 0.0, 6.0) / 6.0


_FLOAT64 = {
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "tanh": np.tanh,
    "elu": lambda v: np.where(v > 0.0, v, np.expm1(np.minimum(v, 0.0))),
    "selu": lambda v: SELU_SCALE * np.where(v > 0.0, v,
                                            SELU_ALPHA * np.expm1(np.minimum(v, 0.0))),
    "silu": lambda v: v * _sigmoid(v),
    "hard_silu": lambda v: v * _hard_sigmoid(v),
    "softplus": _softplus,
    "softsign": lambda v: v / (1.0 + np.abs(v)),
    "leaky_relu": lambda v: np.where(v < 0.0, _LEAKY_SLOPE * v, v),
    "exponential": np.exp,
    "mish": lambda v: v * np.tanh(_softplus(v)),
}
"""Elementwise activations computed in float64 (as the kernels' `_act`), by code."""
_FLOAT64_CODES = {ACTIVATION_CODES[name]: function for name, function in _FLOAT64.items()}
_LINEAR, _RELU, _RELU6 = (ACTIVATION_CODES[n] for n in ("linear", "relu", "relu6"))
_SOFTMAX, _LOG_SOFTMAX = ACTIVATION_CODES["softmax"], ACTIVATION_CODES["log_softmax"]
SUPPORTED = frozenset({_LINEAR, _RELU, _RELU6, _SOFTMAX, _LOG_SOFTMAX, *_FLOAT64_CODES})
"""The activation codes these functions compute (every one but GELU, whose erfc numpy lacks)."""


def _activation_inplace(y: np.ndarray, code: int) -> None:
    """act(y) in place on a float32 (M, K) array; softmax and log-softmax per row."""
    if code == _LINEAR:
        return
    if code == _RELU:
        np.maximum(y, np.float32(0.0), out=y)
    elif code == _RELU6:
        np.clip(y, np.float32(0.0), np.float32(6.0), out=y)
    elif code in (_SOFTMAX, _LOG_SOFTMAX):
        v = y.astype(np.float64)
        v -= v.max(axis=1, keepdims=True)
        if code == _SOFTMAX:
            np.exp(v, out=v)
            v /= v.sum(axis=1, keepdims=True)
        else:
            v -= np.log(np.exp(v).sum(axis=1, keepdims=True))
        y[...] = v
    else:
        with np.errstate(over="ignore"):  # overflow gives inf, as in the kernels
            y[...] = _FLOAT64_CODES[code](y.astype(np.float64))


def small_dense_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None,
          code: int) -> np.ndarray | None:
    """act(x @ kernel + bias) for small float32 work and a computed activation, else None."""
    m, k = x.shape
    if m * k * kernel.shape[1] > SMALL_MACS or code not in SUPPORTED or not _plain(x, kernel):
        return None
    y = np.matmul(x, kernel)
    if bias is not None:
        y += bias
    _activation_inplace(y, code)
    return y


def small_activation_forward(x: np.ndarray, code: int) -> np.ndarray | None:
    """act(x) as a new array for a small float32 `x` and a computed activation, else None."""
    if x.size > SMALL_VALUES or code not in SUPPORTED or x.dtype != np.float32:
        return None
    y = np.array(x, dtype=np.float32, order="C", copy=True)
    if y.size:
        last = y.shape[-1] if y.ndim else 1
        _activation_inplace(y.reshape(y.size // last, last), code)
    return y


def _plain(*arrays: np.ndarray) -> bool:
    """True when every array is float32 (what the kernels would otherwise check and convert)."""
    return all(a.dtype == np.float32 for a in arrays)
