"""Normalisation kernels without moving statistics: Normalization's fixed standardisation,
group norm (statistics per sample and group of channels) and unit (L2) norm per row."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.numba_startup import numba_ready
from seqcli.kernels.threads import _next_item, _parallel

numba_ready()  # every kernel here runs in numba

NORMALIZATION_EPSILON = np.float32(1e-7)
"""Keras's `backend.epsilon()`: Normalization's smallest standard deviation."""
UNIT_NORM_EPSILON = 1e-12
"""UnitNormalization's epsilon: the inverse norm is at most 1 / epsilon."""

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _standardize(counter, x, mean, deviation, invert, out):
    # (N, M) -> (N, M): (x - mean) / deviation, or mean + x * deviation when inverting
    n_n, m_n = x.shape
    n = _next_item(counter)  # taken in turn by the threads
    while n < n_n:
        if invert:
            for m in range(m_n):
                out[n, m] = mean[m] + x[n, m] * deviation[m]
        else:
            for m in range(m_n):
                out[n, m] = (x[n, m] - mean[m]) / deviation[m]
        n = _next_item(counter)


@njit(cache=True)
def _group_moments(x, n, c0, c1, eps):
    # sample n, channels [c0, c1) of (N, P, C, Q): mean and 1 / sqrt(biased var + eps), float64
    p_n, _, q_n = x.shape[1], x.shape[2], x.shape[3]
    total = 0.0
    for p in range(p_n):
        for c in range(c0, c1):
            for q in range(q_n):
                total += x[n, p, c, q]
    count = p_n * (c1 - c0) * q_n
    mu = total / count
    sq = 0.0
    for p in range(p_n):
        for c in range(c0, c1):
            for q in range(q_n):
                d = x[n, p, c, q] - mu
                sq += d * d
    return mu, 1.0 / math.sqrt(sq / count + eps)


@njit(cache=True, nogil=True)
def _group_norm(counter, x, gamma, beta, groups, eps, out):
    # (N, P, C, Q) -> (N, P, C, Q), per sample n and group g of C / groups channels:
    # (x - mean) / sqrt(var + eps) * gamma[c] + beta[c]
    n_n, p_n, c_n, q_n = x.shape
    size = c_n // groups
    item = _next_item(counter)
    while item < n_n * groups:
        n = item // groups
        c0 = (item % groups) * size
        mu, inv = _group_moments(x, n, c0, c0 + size, eps)
        for p in range(p_n):
            for c in range(c0, c0 + size):
                scale = inv * gamma[c]
                shift = beta[c] - mu * scale
                for q in range(q_n):
                    out[n, p, c, q] = x[n, p, c, q] * scale + shift
        item = _next_item(counter)


@njit(cache=True)
def _inverse_norm(x, i, eps):
    # row i of (M, K): min(1 / sqrt(sum x^2), 1 / eps), in float64
    sq = 0.0
    for j in range(x.shape[1]):
        v = np.float64(x[i, j])
        sq += v * v
    if sq == 0.0:
        return 1.0 / eps
    return min(1.0 / math.sqrt(sq), 1.0 / eps)


@njit(cache=True, nogil=True)
def _unit_norm(counter, x, eps, out):
    # (M, K) -> (M, K): each row times min(1 / ||row||, 1 / eps)
    m_n, k_n = x.shape
    i = _next_item(counter)
    while i < m_n:
        inv = _inverse_norm(x, i, eps)
        for j in range(k_n):
            out[i, j] = x[i, j] * inv
        i = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def normalization_forward(x, mean, variance, invert: bool = False) -> np.ndarray:
    """y = (x - mean) / max(sqrt(variance), 1e-7) per column of (N, M); invert: the inverse."""
    x = _as_f32(x, "x", 2)
    m_n = x.shape[1]
    mean = _as_f32(mean, "mean", 1)
    variance = _as_f32(variance, "variance", 1)
    if mean.shape != (m_n,) or variance.shape != (m_n,):
        raise ValueError(f"mean and variance must have shape ({m_n},), got {mean.shape} "
                         f"and {variance.shape}")
    deviation = np.maximum(np.sqrt(variance), NORMALIZATION_EPSILON)  # float32, as Keras
    out = np.empty_like(x)  # (N, M)
    _parallel(_standardize, x.shape[0], 16.0 * x.size, x, mean, deviation, bool(invert), out)
    return out


def group_norm_forward(x, gamma, beta, groups: int, epsilon: float) -> np.ndarray:
    """y = (x - mean) / sqrt(biased var + eps) * gamma + beta per sample and channel group."""
    x = _as_f32(x, "x", 4)
    c_n = x.shape[2]
    if groups < 1 or c_n % groups:
        raise ValueError(f"{c_n} channels do not split into {groups} groups")
    if x.shape[1] * x.shape[3] * c_n < 1:
        raise ValueError(f"group norm needs at least one value per group, got shape {x.shape}")
    gamma = _as_f32(gamma, "gamma", 1)
    beta = _as_f32(beta, "beta", 1)
    if gamma.shape != (c_n,) or beta.shape != (c_n,):
        raise ValueError(f"gamma and beta must have shape ({c_n},), got {gamma.shape} and "
                         f"{beta.shape}")
    out = np.empty_like(x)  # (N, P, C, Q)
    _parallel(_group_norm, x.shape[0] * groups, 16.0 * x.size, x, gamma, beta, int(groups),
              float(epsilon), out)
    return out


def unit_norm_forward(x) -> np.ndarray:
    """y = x * min(1 / sqrt(sum x^2), 1e12) per row of (M, K) (Keras's ops.normalize)."""
    x = _as_f32(x, "x", 2)
    out = np.empty_like(x)  # (M, K)
    _parallel(_unit_norm, x.shape[0], 16.0 * x.size, x, UNIT_NORM_EPSILON, out)
    return out
