"""Normalisation kernels (inference): batch norm with moving statistics, layer norm per row."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _batch_norm(counter, x, gamma, beta, mean, var, eps, out):
    # (A, C, B) -> (A, C, B), per channel c: (x - mean) * gamma / sqrt(var + eps) + beta
    a_n, c_n, b_n = x.shape
    r = _next_item(counter)  # taken in turn by the threads
    while r < a_n * c_n:
        a = r // c_n
        c = r % c_n
        mu = np.float64(mean[c])
        scale = gamma[c] / math.sqrt(np.float64(var[c]) + eps)
        shift = np.float64(beta[c])
        for b in range(b_n):
            out[a, c, b] = (x[a, c, b] - mu) * scale + shift
        r = _next_item(counter)


@njit(cache=True)
def _row_moments(x, i, eps):
    # row i of (M, K): its mean and 1 / sqrt(biased variance + eps), two-pass, in float64
    k_n = x.shape[1]
    total = 0.0
    for j in range(k_n):
        total += x[i, j]
    mu = total / k_n
    sq = 0.0
    for j in range(k_n):
        d = x[i, j] - mu
        sq += d * d
    return mu, 1.0 / math.sqrt(sq / k_n + eps)


@njit(cache=True, nogil=True)
def _layer_norm(counter, x, gamma, beta, eps, out):
    # (M, K) -> (M, K), normalised per row
    m_n, k_n = x.shape
    i = _next_item(counter)  # taken in turn by the threads
    while i < m_n:
        mu, inv = _row_moments(x, i, eps)
        for j in range(k_n):
            out[i, j] = (x[i, j] - mu) * inv * gamma[j] + beta[j]
        i = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _channel_vector(v, name: str, n: int) -> np.ndarray:
    """`v` as a float32 (n,) array; ValueError on any other shape."""
    a = _as_f32(v, name, 1)
    if a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def batch_norm_forward(x, gamma, beta, moving_mean, moving_variance, epsilon: float) -> np.ndarray:
    """y = (x - mean) / sqrt(var + eps) * gamma + beta over axis 1 of (A, C, B)."""
    x = _as_f32(x, "x", 3)
    c_n = x.shape[1]
    gamma = _channel_vector(gamma, "gamma", c_n)
    beta = _channel_vector(beta, "beta", c_n)
    mean = _channel_vector(moving_mean, "moving_mean", c_n)
    var = _channel_vector(moving_variance, "moving_variance", c_n)
    out = np.empty_like(x)  # (A, C, B)
    _parallel(_batch_norm, x.shape[0] * c_n, 16.0 * x.size, x, gamma, beta, mean, var,
              float(epsilon), out)
    return out


def layer_norm_forward(x, gamma, beta, epsilon: float) -> np.ndarray:
    """y = (x - mean) / sqrt(var + eps) * gamma + beta, mean and biased var per row of (M, K)."""
    x = _as_f32(x, "x", 2)
    k_n = x.shape[1]
    if k_n < 1:
        raise ValueError(f"layer norm needs at least one feature, got shape {x.shape}")
    gamma = _channel_vector(gamma, "gamma", k_n)
    beta = _channel_vector(beta, "beta", k_n)
    out = np.empty_like(x)  # (M, K)
    _parallel(_layer_norm, x.shape[0], 16.0 * x.size, x, gamma, beta, float(epsilon), out)
    return out
