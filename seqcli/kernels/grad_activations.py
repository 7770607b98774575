"""Activation gradients: dx = dy * act'(x), softmax/log_softmax per row; kinks as jax.grad.

`activation_backward(x, y, dy, code)` reads the forward's output y for the codes in
`OUTPUT_ACTIVATION_CODES` (sigmoid, tanh, softmax, log_softmax, exponential; recomputed from x
when y is None) and its input x for all others; linear reads neither. At the kinks it returns
what jax.grad of Keras 3's activations gives: relu'(0) = 0; relu6' = 1 only on (0, 6);
hard_sigmoid' = 1/6 only where 0 < float32(x + 3) < 6, so 0 at -3 and 3 (hard_silu likewise:
0 at -3, 1 at 3); leaky_relu'(0) = 1; elu'(0) = 1; selu'(0) = scale * alpha.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from seqcli.activations import SELU_ALPHA, SELU_SCALE
from seqcli.kernels.activations import (  # the integer codes, shared with the forward kernels
    _ELU,
    _EXPONENTIAL,
    _GELU,
    _HARD_SIGMOID,
    _HARD_SILU,
    _LEAKY_RELU,
    _LINEAR,
    _LOG_SOFTMAX,
    _MISH,
    _RELU,
    _RELU6,
    _SELU,
    _SIGMOID,
    _SILU,
    _SOFTMAX,
    _SOFTPLUS,
    _SOFTSIGN,
    _TANH,
    _as_f32,
    _check_code,
    activation_forward,
)
from seqcli.kernels.threads import _next_item, _parallel

_LEAKY_SLOPE = 0.2
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327

# Codes differentiated from the forward's output y (as JAX does); all others need the input x.
OUTPUT_ACTIVATION_CODES = frozenset(
    {_SIGMOID, _TANH, _SOFTMAX, _LOG_SOFTMAX, _EXPONENTIAL}
)
_BLOCK = 4096  # elements a thread takes at a time


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True)
def _sigmoid(v):
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(cache=True)
def _act_grad(x, y, code):
    """act'(x) for one element in float64; sigmoid, tanh and exponential read y = act(x)."""
    v = np.float64(x)
    if code == _RELU:
        return 1.0 if v > 0.0 else 0.0  # relu'(0) = 0
    if code == _RELU6:
        return 1.0 if 0.0 < v < 6.0 else 0.0  # 0 at both kinks
    if code == _HARD_SIGMOID or code == _HARD_SILU:
        # JAX: relu6(x + 3) / 6 with x + 3 rounded to float32, slope only strictly inside
        t = np.float64(np.float32(x) + np.float32(3.0))
        inside = 1.0 if 0.0 < t < 6.0 else 0.0
        if code == _HARD_SIGMOID:
            return inside / 6.0
        return min(max(t, 0.0), 6.0) / 6.0 + v * inside / 6.0
    if code == _SIGMOID:
        s = np.float64(y)
        return s * (1.0 - s)
    if code == _TANH:
        t = np.float64(y)
        return 1.0 - t * t
    if code == _EXPONENTIAL:
        return np.float64(y)
    if code == _ELU:
        return 1.0 if v > 0.0 else math.exp(v)
    if code == _SELU:
        return SELU_SCALE if v > 0.0 else SELU_SCALE * SELU_ALPHA * math.exp(v)
    if code == _GELU:
        # Phi(x) + x phi(x)
        return 0.5 * math.erfc(-v * _INV_SQRT2) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v)
    if code == _SILU:
        s = _sigmoid(v)
        return s + v * s * (1.0 - s)
    if code == _SOFTPLUS:
        return _sigmoid(v)
    if code == _SOFTSIGN:
        d = 1.0 + abs(v)
        return 1.0 / (d * d)
    if code == _LEAKY_RELU:
        return 1.0 if v >= 0.0 else _LEAKY_SLOPE  # leaky_relu'(0) = 1
    if code == _MISH:
        # tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2), sp = softplus(x)
        t = math.tanh(max(v, 0.0) + math.log1p(math.exp(-abs(v))))
        return t + v * _sigmoid(v) * (1.0 - t * t)
    return 1.0


@njit(cache=True, nogil=True)
def _softmax_backward(counter, y, dy, dx, code):
    # (M, K) -> (M, K), softmax or log_softmax over each row
    m, k = dy.shape
    i = _next_item(counter)
    while i < m:
        if code == _SOFTMAX:
            # dx_j = y_j (dy_j - sum_k dy_k y_k)
            dot = 0.0
            for j in range(k):
                dot += np.float64(dy[i, j]) * y[i, j]
            for j in range(k):
                dx[i, j] = y[i, j] * (dy[i, j] - dot)
        else:
            # dx_j = dy_j - exp(y_j) sum_k dy_k
            total = 0.0
            for j in range(k):
                total += dy[i, j]
            for j in range(k):
                dx[i, j] = dy[i, j] - math.exp(np.float64(y[i, j])) * total
        i = _next_item(counter)


@njit(cache=True, nogil=True)
def _elementwise_backward(counter, source, dy, dx, code):
    # (S,) -> (S,) in blocks of _BLOCK; source is y for OUTPUT_ACTIVATION_CODES, x otherwise.
    # The loops of the arithmetic-only activations name their code, so that each compiles to
    # vector instructions without branches; unsigned indices, as bounds are never negative
    size = dy.size
    b = _next_item(counter)
    while b * _BLOCK < size:
        start, stop = np.uintp(b * _BLOCK), np.uintp(min((b + 1) * _BLOCK, size))
        if code == _RELU:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _RELU)
        elif code == _RELU6:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _RELU6)
        elif code == _LEAKY_RELU:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _LEAKY_RELU)
        elif code == _HARD_SIGMOID:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _HARD_SIGMOID)
        elif code == _HARD_SILU:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _HARD_SILU)
        elif code == _SOFTSIGN:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _SOFTSIGN)
        elif code == _SIGMOID:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _SIGMOID)
        elif code == _TANH:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _TANH)
        elif code == _EXPONENTIAL:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], _EXPONENTIAL)
        else:
            for j in range(start, stop):
                dx[j] = dy[j] * _act_grad(source[j], source[j], code)
        b = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _rows(a: np.ndarray) -> np.ndarray:
    """(M, K) view of `a` over its last axis (a scalar is (1, 1))."""
    last = a.shape[-1] if a.ndim else 1
    return a.reshape(a.size // last if last else 0, last)


def activation_backward(x, y, dy, code: int) -> np.ndarray:
    """dx = dy act'(x); softmax: y (dy - sum dy y), log_softmax: dy - exp(y) sum dy (last axis)."""
    code = _check_code(code)
    dy = _as_f32(dy, "dy")
    if code == _LINEAR:
        return dy.copy()
    if code in OUTPUT_ACTIVATION_CODES:
        if y is None:
            if x is None:
                raise ValueError("activation_backward needs the input x or the output y")
            y = activation_forward(x, code)
        source, name = _as_f32(y, "y"), "y"
    else:
        if x is None:
            raise ValueError(f"activation code {code} is differentiated from its input x")
        source, name = _as_f32(x, "x"), "x"
    if source.shape != dy.shape:
        raise ValueError(f"{name} {source.shape} and dy {dy.shape} must have the same shape")
    dx = np.empty_like(dy)
    if dy.size == 0:
        return dx
    if code in (_SOFTMAX, _LOG_SOFTMAX):
        rows = _rows(dy)
        _parallel(_softmax_backward, rows.shape[0], 20.0 * rows.size, _rows(source), rows,
                  _rows(dx), code)
    else:
        _parallel(_elementwise_backward, -(-dy.size // _BLOCK), 20.0 * dy.size,
                  source.reshape(-1), dy.reshape(-1), dx.reshape(-1), code)
    return dx
