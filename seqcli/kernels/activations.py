"""Activation kernels (codes from `seqcli.activations`), the bias+activation epilogue every
kernel fuses, and the argument checks all kernels share.

Numba caches each jitted function by its own file only: a kernel keeps its cached copy of a
helper from another kernel file (here, the convolution and normalization kernels keep the
epilogue) after that file changes. `make install` (and so `make test`) rebuilds every cached
kernel once any kernel source changed (`python -m seqcli.warmup`); elsewhere, run that after
editing a shared helper."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from seqcli.activations import ACTIVATION_CODES, ACTIVATIONS, SELU_ALPHA, SELU_SCALE
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

# Integer codes as module constants: numba freezes them into the compiled code.
_LINEAR = ACTIVATION_CODES["linear"]
_RELU = ACTIVATION_CODES["relu"]
_RELU6 = ACTIVATION_CODES["relu6"]
_SIGMOID = ACTIVATION_CODES["sigmoid"]
_HARD_SIGMOID = ACTIVATION_CODES["hard_sigmoid"]
_TANH = ACTIVATION_CODES["tanh"]
_SOFTMAX = ACTIVATION_CODES["softmax"]
_LOG_SOFTMAX = ACTIVATION_CODES["log_softmax"]
_ELU = ACTIVATION_CODES["elu"]
_SELU = ACTIVATION_CODES["selu"]
_GELU = ACTIVATION_CODES["gelu"]
_SILU = ACTIVATION_CODES["silu"]
_HARD_SILU = ACTIVATION_CODES["hard_silu"]
_SOFTPLUS = ACTIVATION_CODES["softplus"]
_SOFTSIGN = ACTIVATION_CODES["softsign"]
_LEAKY_RELU = ACTIVATION_CODES["leaky_relu"]
_EXPONENTIAL = ACTIVATION_CODES["exponential"]
_MISH = ACTIVATION_CODES["mish"]
_N_CODES = len(ACTIVATIONS)

_LEAKY_SLOPE = 0.2  # Keras 3 default negative_slope
_INV_SQRT2 = 0.7071067811865476

# A zero-length bias: "no bias" for `bias_activation_inplace`.
_NO_BIAS = np.zeros(0, dtype=np.float32)


# ----------------------------------------------------------------------------- shared helpers


def _as_f32(x, name: str, ndim: int | None = None) -> np.ndarray:
    """`x` as a C-contiguous float32 array (no copy if already one); ValueError on wrong rank."""
    a = np.asarray(x, dtype=np.float32, order="C")  # as np.ascontiguousarray, but keeps 0-d
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def _check_code(code) -> int:
    """`code` as a Python int, ValueError unless it is a known activation code."""
    c = int(code)
    if c != code or not 0 <= c < _N_CODES:
        raise ValueError(f"unknown activation code {code!r} (expected 0..{_N_CODES - 1})")
    return c


def _bias_or_empty(bias, units: int) -> np.ndarray:
    """`bias` as a float32 (units,) array, or the zero-length "no bias" array if `bias` is None."""
    if bias is None:
        return _NO_BIAS
    b = _as_f32(bias, "bias", 1)
    if b.shape[0] != units:
        raise ValueError(f"bias must have shape ({units},), got {b.shape}")
    return b


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True)
def _softplus(v):
    # log(1 + exp(v)) = max(v, 0) + log1p(exp(-|v|)), stable for large |v|
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@njit(cache=True)
def _act(x, code):
    """One elementwise activation of a scalar, computed in float64 (softmax codes excluded)."""
    v = np.float64(x)
    if code == _LINEAR:
        return v
    if code == _RELU:
        return 0.0 if v < 0.0 else v
    if code == _RELU6:
        return 0.0 if v < 0.0 else (6.0 if v > 6.0 else v)
    if code == _SIGMOID:
        if v >= 0.0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    if code == _HARD_SIGMOID:
        t = v + 3.0
        return (0.0 if t < 0.0 else (6.0 if t > 6.0 else t)) / 6.0
    if code == _TANH:
        return math.tanh(v)
    if code == _ELU:
        return v if v > 0.0 else math.expm1(v)
    if code == _SELU:
        return SELU_SCALE * (v if v > 0.0 else SELU_ALPHA * math.expm1(v))
    if code == _GELU:
        # 0.5 * x * (1 + erf(x / sqrt 2)), via erfc to keep precision for negative x (as TF/JAX)
        return 0.5 * v * math.erfc(-v * _INV_SQRT2)
    if code == _SILU:
        if v >= 0.0:
            return v / (1.0 + math.exp(-v))
        e = math.exp(v)
        return v * e / (1.0 + e)
    if code == _HARD_SILU:
        t = v + 3.0
        return v * (0.0 if t < 0.0 else (6.0 if t > 6.0 else t)) / 6.0
    if code == _SOFTPLUS:
        return _softplus(v)
    if code == _SOFTSIGN:
        return v / (1.0 + abs(v))
    if code == _LEAKY_RELU:
        return _LEAKY_SLOPE * v if v < 0.0 else v
    if code == _EXPONENTIAL:
        return math.exp(v)
    if code == _MISH:
        return v * math.tanh(_softplus(v))
    return v


@njit(cache=True)
def _bias_act_inplace(y, r0, count, c0, bias, code):
    """y[r0 + i, c0 + j] = act(y[r0 + i, c0 + j] + bias[j]) for i < count, j < len(bias), y a
    C-contiguous (R, K); softmax per row. The epilogue every kernel fuses (one loop nest per
    activation, indices off a contiguous array: each vectorises)."""
    k = np.uintp(bias.shape[0])
    c = np.uintp(c0)  # unsigned column indices: no negative-index checks in the inner loops
    if code == _LINEAR:
        for i in range(r0, r0 + count):
            for j in range(k):
                y[i, c + j] += bias[j]
    elif code == _RELU:
        for i in range(r0, r0 + count):
            for j in range(k):
                v = y[i, c + j] + bias[j]
                y[i, c + j] = np.float32(0.0) if v < np.float32(0.0) else v
    elif code == _RELU6:
        for i in range(r0, r0 + count):
            for j in range(k):
                v = y[i, c + j] + bias[j]
                v = np.float32(6.0) if v > np.float32(6.0) else v
                y[i, c + j] = np.float32(0.0) if v < np.float32(0.0) else v
    elif code == _LEAKY_RELU:  # as _act: the product in float64, rounded once
        for i in range(r0, r0 + count):
            for j in range(k):
                v = y[i, c + j] + bias[j]
                y[i, c + j] = np.float32(_LEAKY_SLOPE * v) if v < np.float32(0.0) else v
    elif code == _SOFTMAX or code == _LOG_SOFTMAX:
        for i in range(r0, r0 + count):
            d = y[i, c0:c0 + bias.shape[0]]
            for j in range(k):
                d[j] += bias[j]
            # softmax(x)_j = exp(x_j - max) / sum exp(x - max); log_softmax = x_j - max - log(sum)
            mx = np.float64(d[0])
            for j in range(1, k):
                if d[j] > mx:
                    mx = np.float64(d[j])
            total = 0.0
            for j in range(k):
                total += math.exp(np.float64(d[j]) - mx)
            if code == _SOFTMAX:
                for j in range(k):
                    d[j] = math.exp(np.float64(d[j]) - mx) / total
            else:
                log_total = math.log(total)
                for j in range(k):
                    d[j] = np.float64(d[j]) - mx - log_total
    else:
        for i in range(r0, r0 + count):
            for j in range(k):
                y[i, c + j] = _act(y[i, c + j] + bias[j], code)


@njit(cache=True)
def _bias_act_rows(src, s0, dst, d0, count, bias, code):
    """dst[d0 + i] = act(src[s0 + i, :K] + bias) for i < count; dst (R, K) must not overlap src
    (whose rows may be longer). In place, `_bias_act_inplace` (no copy)."""
    k = dst.shape[1]
    for i in range(count):
        for j in range(k):
            dst[d0 + i, j] = src[s0 + i, j]
    _bias_act_inplace(dst, d0, count, 0, bias, code)


# Rows per parallel task of the stand-alone epilogue: enough work to be worth a thread.
_EPILOGUE_ROWS = 64


@njit(cache=True, nogil=True)
def _bias_act_parallel(counter, y, bias, code, rows):
    # (M, K) in place, bias (K,), blocks of rows taken in turn
    m = y.shape[0]
    t = _next_item(counter)
    while t * rows < m:
        r0 = t * rows
        _bias_act_inplace(y, r0, min(rows, m - r0), 0, bias, code)
        t = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _bias_act_numpy(y, bias, code: int) -> bool:
    """act(y + bias) in place with numpy for linear, relu (the numba epilogue's float32 results)
    and softmax (in float32; float64 in numba), without loading numba for a small (M, K) array;
    False for any other activation."""
    if code not in (_LINEAR, _RELU, _SOFTMAX):
        return False
    if len(bias):
        np.add(y, bias, out=y)
    if code == _RELU:
        np.maximum(y, np.float32(0.0), out=y)
    elif code == _SOFTMAX:  # exp(x - max) / sum exp(x - max), per row
        y -= y.max(axis=1, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)
    return True


def bias_activation_inplace(y, bias, code) -> None:
    """y[i, j] = act(y[i, j] + bias[j]) in place on (M, K); empty bias = none; softmax per row."""
    code = _check_code(code)
    m, k = y.shape
    if m == 0 or k == 0 or (code == _LINEAR and len(bias) == 0):
        return
    if len(bias) == 0:
        bias = np.zeros(k, dtype=y.dtype)
    numba_ready()
    rows = max(1, min(_EPILOGUE_ROWS, (1 << 16) // k))
    _parallel(_bias_act_parallel, -(-m // rows), m * k * 16.0, y, bias, code, rows)


def activation_forward(x, code: int) -> np.ndarray:
    """act(x) for any shape; elementwise, except softmax/log_softmax over the last axis."""
    code = _check_code(code)
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if out.size == 0:
        return out
    last = out.shape[-1] if out.ndim else 1
    bias_activation_inplace(out.reshape(out.size // last, last), _NO_BIAS, code)  # (M, K) view
    return out
