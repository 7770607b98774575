"""Small work in plain numpy, without loading numba.

`import numba` and loading the cached kernels cost 0.1-0.3 s, far more than a small model's
work: a Dense stack on a few rows is done in microseconds. A Dense layer or an activation
whose work is below the thresholds here runs on these functions instead of the jitted
kernels, with the same arithmetic: float32 matmul (numpy's BLAS, which stays on one thread at
this size by itself), and each activation computed in float64 and rounded once, as the
kernels' `_act` does (softmax and log-softmax per row in float64). A model made only of such
layers never imports numba.

A whole run may be small too: the guide's convnet on one image is 0.2 GMACs, some 10 ms in
numpy where loading numba takes 0.3 s. Inside `small_run(macs)` for a run of at most
`RUN_MACS` in a process that has not loaded numba (nor run more than that in numpy already),
convolutions and pooling run here as well (and Dense layers of any size): im2col
windows and one float32 GEMM per group, in slices of bounded memory."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from seqcli.activations import ACTIVATION_CODES, SELU_ALPHA, SELU_SCALE

SMALL_MACS = 1 << 18
"""Up to this many multiply-accumulates a Dense layer runs here; OpenBLAS keeps a GEMM this
small on one thread by itself (its SMP threshold is 65536 x 4)."""
SMALL_VALUES = 1 << 16
"""Up to this many values an activation runs here."""
RUN_MACS = 2_000_000_000
"""A run (every row through every layer) of at most this many multiply-accumulates runs here
whole: numpy does it in well under the 0.3 s that loading numba and its kernels takes."""
DENSE_NUMPY_MACS = 1 << 22
"""Up to this many multiply-accumulates a dense layer is a numpy matmul with a numpy epilogue
for linear, relu and softmax, in small runs or not (dense.py's `_SMALL_MACS`, which cannot
import it from here: this module imports that one)."""
WINDOW_VALUES = 1 << 22
"""The most values one slice of a convolution's im2col windows holds (16 MB)."""

_RUN: ContextVar[bool] = ContextVar("small_run", default=False)
_SPENT = [0]
"""Multiply-accumulates this process has run in numpy inside small runs."""


@contextmanager
def small_run(built, rows: int) -> Iterator[bool]:
    """Inside the block, convolutions and pooling run in numpy when `rows` samples through the
    built model `built` (a BuiltModel) take at most RUN_MACS multiply-accumulates, numba is
    not loaded yet, and the process's small runs so far leave room for them within RUN_MACS
    (a process that keeps predicting pays for the kernels once, then runs at their speed);
    yields whether they do."""
    small = False
    if not _kernels_loaded():
        macs = [info.macs for info in built.layers]
        work = rows * sum(macs) if None not in macs else None
        small = work is not None and _SPENT[0] + work <= RUN_MACS
    if small:
        _SPENT[0] += work
    token = _RUN.set(small)
    try:
        yield _RUN.get()
    finally:
        _RUN.reset(token)


def numpy_may_run() -> bool:
    """False when no `small_run` could run anything in numpy now (the kernels are loaded, and
    no small run is on): a caller may then skip entering one."""
    return not _kernels_loaded() or _RUN.get()


def _kernels_loaded() -> bool:
    """True once this process has loaded numba (and so may run the kernels at no extra
    cost)."""
    return "numba" in sys.modules


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
    small = m * k * kernel.shape[1] <= SMALL_MACS or _RUN.get()
    if not small or code not in SUPPORTED or not _plain(x, kernel):
        return None
    return _matmul_activation(x, kernel, bias, code)


def _matmul_activation(x, kernel, bias, code: int) -> np.ndarray:
    """act(x @ kernel + bias) in numpy, on float32 arrays already checked."""
    y = np.matmul(x, kernel)
    if bias is not None:
        y += bias
    _activation_inplace(y, code)
    return y


def dense_rows(kernel: np.ndarray, bias: np.ndarray | None, code: int):
    """dense_forward(x, kernel, bias, code) as a function of x, for calls with these weights."""
    # For a model's plan: the same numbers, the weights checked once here, and one row a matmul
    # and a numpy epilogue (the per-call checks, and setting BLAS's threads, would take half
    # its time); numba is loaded only when a call needs the kernels. None when the weights are
    # not float32 arrays in C order: the plan then calls the layer's forward as it is (a
    # converted copy would not see them change).
    given = [a for a in (kernel, bias) if a is not None]
    if not all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
               for a in given) or kernel.ndim != 2 or code not in ACTIVATION_CODES.values():
        return None
    k, units = kernel.shape
    small_row = k * units <= SMALL_MACS and code in SUPPORTED
    """A row of small work: what `small_dense_forward` does."""
    one_row = SMALL_MACS < k * units <= DENSE_NUMPY_MACS and code in (_LINEAR, _RELU)
    """A row of more, linear or relu: what `dense_forward` does, BLAS on its own threads (a
    row is no cost to wake them for), the same numbers as a small run's."""

    def rows(x: np.ndarray) -> np.ndarray:
        if x.shape == (1, k) and x.dtype == np.float32 and (small_row or one_row):
            return _matmul_activation(x, kernel, bias, code)
        y = small_dense_forward(x, kernel, bias, code)
        if y is None:
            from seqcli.kernels.dense import dense_forward

            y = dense_forward(x, kernel, bias, code)
        return y

    return rows


def small_activation_forward(x: np.ndarray, code: int) -> np.ndarray | None:
    """act(x) as a new array for a small float32 `x` and a computed activation, else None."""
    small = x.size <= SMALL_VALUES or _RUN.get()
    if not small or code not in SUPPORTED or x.dtype != np.float32:
        return None
    y = np.array(x, dtype=np.float32, order="C", copy=True)
    if y.size:
        last = y.shape[-1] if y.ndim else 1
        _activation_inplace(y.reshape(y.size // last, last), code)
    return y


def _plain(*arrays: np.ndarray) -> bool:
    """True when every array is float32 (what the kernels would otherwise check and convert)."""
    return all(a.dtype == np.float32 for a in arrays)


def small_conv2d_forward(x, kernel, bias, strides, dilation, padding, groups: int,
                         code: int) -> np.ndarray | None:
    """conv2d_forward's result in a small run for float32 and a computed activation, else None."""
    if not _RUN.get() or code not in SUPPORTED or not _plain(x, kernel):
        return None
    (sh, sw), (dh, dw) = strides, dilation
    (pt, pb), (pl, pr) = padding
    if not _modest(x, padding):
        return None
    kh, kw, cg, filters = kernel.shape
    x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    n, h, w, _ = x.shape
    oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (w - (kw - 1) * dw - 1) // sw + 1
    # (N, OH, OW, C, KH, KW) views of each output cell's window, then (.., KH, KW, C)
    windows = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    windows = windows[:, :oh * sh:sh, :ow * sw:sw, :, ::dh, ::dw].transpose(0, 1, 2, 4, 5, 3)
    fg = filters // groups
    y = np.empty((n, oh, ow, filters), np.float32)
    rows = max(1, WINDOW_VALUES // max(1, n * ow * kh * kw * cg))  # output rows a slice
    for g in range(groups):
        weights = kernel[..., g * fg:(g + 1) * fg].reshape(kh * kw * cg, fg)
        for r in range(0, oh, rows):
            part = windows[:, r:r + rows, :, :, :, g * cg:(g + 1) * cg]
            cols = part.reshape(-1, kh * kw * cg)  # a copy: the im2col slice
            y[:, r:r + rows, :, g * fg:(g + 1) * fg] = (cols @ weights).reshape(
                n, part.shape[1], ow, fg)
    flat = y.reshape(-1, filters)
    if bias is not None:
        flat += bias
    _activation_inplace(flat, code)
    return y


def small_pool2d_forward(x, pool, strides, padding, mode: str) -> np.ndarray | None:
    """max_pool2d_forward's or avg_pool2d_forward's result in a small run, else None."""
    if not _RUN.get() or x.dtype != np.float32 or not _modest(x, padding):
        return None
    (ph, pw), (sh, sw) = pool, strides
    (pt, pb), (pl, pr) = padding
    pads = ((0, 0), (pt, pb), (pl, pr), (0, 0))
    n, h, w, c = x.shape
    oh, ow = (h + pt + pb - ph) // sh + 1, (w + pl + pr - pw) // sw + 1
    if mode == "max":  # padded cells never win
        cells = np.pad(x, pads, constant_values=-np.inf)
        return _windows(cells, ph, pw, sh, sw, oh, ow).max(axis=(4, 5))
    total = _windows(np.pad(x, pads), ph, pw, sh, sw, oh, ow).sum(axis=(4, 5), dtype=np.float32)
    real = np.pad(np.ones((1, h, w, 1), np.float32), pads)  # the mean of the real cells
    count = _windows(real, ph, pw, sh, sw, oh, ow).sum(axis=(4, 5), dtype=np.float32)
    return total / count


def _modest(x: np.ndarray, padding) -> bool:
    """True when (N, H, W, C) padded by ((pt, pb), (pl, pr)) stays within four times its size
    or WINDOW_VALUES. A huge dilation or pool 'same'-pads by cells that only the kernels, which
    skip the taps that read nothing but padding, can afford."""
    (pt, pb), (pl, pr) = padding
    n, h, w, c = x.shape
    padded = n * (h + pt + pb) * (w + pl + pr) * c
    return padded <= max(4 * x.size, WINDOW_VALUES)


def _windows(x, ph, pw, sh, sw, oh, ow) -> np.ndarray:
    """(N, OH, OW, C, PH, PW) views of the pooling windows of (N, H, W, C)."""
    return sliding_window_view(x, (ph, pw), axis=(1, 2))[:, :oh * sh:sh, :ow * sw:sw]


def small_global_pool_forward(x, mode: str) -> np.ndarray | None:
    """global_max/avg_pool_forward's result for (N, S, C) in a small run, else None."""
    if not _RUN.get() or x.dtype != np.float32:
        return None
    if mode == "max":
        return x.max(axis=1)
    return x.mean(axis=1, dtype=np.float32)
