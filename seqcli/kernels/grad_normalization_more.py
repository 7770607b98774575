"""Gradients of group norm and unit norm (see normalization_more for the forwards).

Group norm works on (N, P, C, Q) with channels on axis 2 split into `groups`; per sample and
group, xhat = (x - mean) inv, inv = 1 / sqrt(var + epsilon), and with g = dy gamma[c]
    dx = inv (g - mean(g) - xhat mean(g xhat)),  dgamma[c] = sum dy xhat,  dbeta[c] = sum dy
(means over the group's values, sums over samples and positions). Per-channel sums
accumulate in float64 partial buffers, one per block of samples.

Unit norm, y = x r per row with r = min(1 / ||x||, 1 / epsilon): where r is the norm's
inverse, dx = r dy - r^3 x sum(dy x); where it is clipped (a constant), dx = r dy.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.grad_normalization import _same_shape
from seqcli.kernels.normalization_more import UNIT_NORM_EPSILON, _group_moments
from seqcli.kernels.threads import _n_blocks, _next_item, _parallel

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _group_norm_backward(counter, x, gamma, groups, eps, dy, dx, partial):
    # (N, P, C, Q); partial (T, 2, C): per block of samples, sum dy and sum dy xhat
    n_n, p_n, c_n, q_n = x.shape
    size = c_n // groups
    n_blocks = partial.shape[0]
    t = _next_item(counter)
    while t < n_blocks:
        for c in range(c_n):
            partial[t, 0, c] = 0.0
            partial[t, 1, c] = 0.0
        for n in range(t * n_n // n_blocks, (t + 1) * n_n // n_blocks):
            for g in range(groups):
                c0 = g * size
                mu, inv = _group_moments(x, n, c0, c0 + size, eps)
                mean_g = 0.0
                mean_g_xhat = 0.0
                for p in range(p_n):
                    for c in range(c0, c0 + size):
                        for q in range(q_n):
                            xhat = (x[n, p, c, q] - mu) * inv
                            d = np.float64(dy[n, p, c, q])
                            mean_g += d * gamma[c]
                            mean_g_xhat += d * gamma[c] * xhat
                            partial[t, 0, c] += d
                            partial[t, 1, c] += d * xhat
                count = p_n * size * q_n
                mean_g /= count
                mean_g_xhat /= count
                for p in range(p_n):
                    for c in range(c0, c0 + size):
                        for q in range(q_n):
                            xhat = (x[n, p, c, q] - mu) * inv
                            dx[n, p, c, q] = inv * (np.float64(dy[n, p, c, q]) * gamma[c]
                                                    - mean_g - xhat * mean_g_xhat)
        t = _next_item(counter)


@njit(cache=True, nogil=True)
def _unit_norm_backward(counter, x, dy, eps, dx):
    # (M, K) rows: dx = r dy - r^3 x sum(dy x), or r dy where r is clipped to 1 / eps
    m_n, k_n = x.shape
    i = _next_item(counter)
    while i < m_n:
        sq = 0.0
        dot = 0.0
        for j in range(k_n):
            v = np.float64(x[i, j])
            sq += v * v
            dot += v * dy[i, j]
        clipped = sq == 0.0 or 1.0 / np.sqrt(sq) >= 1.0 / eps
        r = 1.0 / eps if clipped else 1.0 / np.sqrt(sq)
        correction = 0.0 if clipped else r * r * r * dot
        for j in range(k_n):
            dx[i, j] = r * dy[i, j] - correction * x[i, j]
        i = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def group_norm_backward(x, gamma, groups: int, epsilon: float, dy):
    """dx = inv (g - mean g - xhat mean(g xhat)), g = dy gamma; dgamma = sum dy xhat."""
    x = _as_f32(x, "x", 4)
    n_n, _, c_n, _ = x.shape
    if groups < 1 or c_n % groups:
        raise ValueError(f"{c_n} channels do not split into {groups} groups")
    gamma = _as_f32(gamma, "gamma", 1)
    if gamma.shape != (c_n,):
        raise ValueError(f"gamma must have shape ({c_n},), got {gamma.shape}")
    dy = _same_shape(dy, x)
    partial = np.empty((_n_blocks(n_n), 2, c_n), dtype=np.float64)
    dx = np.empty_like(x)  # (N, P, C, Q)
    _parallel(_group_norm_backward, partial.shape[0], 16.0 * x.size, x,
              gamma.astype(np.float64), int(groups), float(epsilon), dy, dx, partial)
    total = partial.sum(axis=0)
    return dx, total[1].astype(np.float32), total[0].astype(np.float32)


def unit_norm_backward(x, dy) -> np.ndarray:
    """dx = r dy - r^3 x sum(dy x) per row, r = min(1 / ||x||, 1e12) (r dy where clipped)."""
    x = _as_f32(x, "x", 2)
    dy = _same_shape(dy, x)
    dx = np.empty_like(x)  # (M, K)
    _parallel(_unit_norm_backward, x.shape[0], 8.0 * x.size, x, dy, UNIT_NORM_EPSILON, dx)
    return dx
