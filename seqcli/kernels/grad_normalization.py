"""Normalisation gradients: frozen and training-mode batch norm, layer norm.

Batch norm works on (A, C, B) with channel axis 1, as `batch_norm_forward`; layer norm on
(M, K) rows. Below xhat = (x - mean) * inv, inv = 1 / sqrt(var + epsilon); all three
backwards return (dx, dgamma, dbeta). Per-channel (per-feature) sums across rows accumulate
in float64 partial buffers, one per block of rows, so no two threads write the same cell.

Keras 3 training mode (`BatchNormalization.call` with training=True and trainable=True)
normalises with the batch mean and the *biased* batch variance (`ops.moments`, i.e. jnp.var),
and updates the moving statistics in float32 with that same biased variance:
    moving_mean     = moving_mean * momentum + batch_mean * (1 - momentum)
    moving_variance = moving_variance * momentum + batch_var * (1 - momentum)
(checked with Keras 3.15 / JAX: momentum 0.5, moving (0, 1), batch [1, 2, 4, 9] -> moving
mean 2.0, moving variance 5.25 = (1 + 9.5) / 2, where 9.5 is the biased variance; the
unbiased 12.67 would give 6.83). A frozen (trainable=False) layer always uses its moving
statistics, which are then constants: `batch_norm_backward_inference`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.normalization import _channel_vector, _row_moments
from seqcli.kernels.threads import _n_blocks, _next_item, _parallel

# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _channel_sums(counter, x, mean, partial):
    # (A, C, B) -> partial (T, 2, C): per block, sum x and sum (x - mean)^2 (mean may be empty)
    a_n, c_n, b_n = x.shape
    n_blocks = partial.shape[0]
    centred = mean.shape[0] > 0
    t = _next_item(counter)
    while t < n_blocks:
        for c in range(c_n):
            partial[t, 0, c] = 0.0
            partial[t, 1, c] = 0.0
        for a in range(t * a_n // n_blocks, (t + 1) * a_n // n_blocks):
            for c in range(c_n):
                mu = mean[c] if centred else 0.0
                for b in range(b_n):
                    v = np.float64(x[a, c, b])
                    partial[t, 0, c] += v
                    partial[t, 1, c] += (v - mu) * (v - mu)
        t = _next_item(counter)


@njit(cache=True, nogil=True)
def _normalize(counter, x, mean, inv, gamma, beta, out):
    # (A, C, B) -> (A, C, B): (x - mean[c]) * inv[c] * gamma[c] + beta[c]
    a_n, c_n, b_n = x.shape
    r = _next_item(counter)
    while r < a_n * c_n:
        a = r // c_n
        c = r % c_n
        scale = inv[c] * gamma[c]
        for b in range(b_n):
            out[a, c, b] = (x[a, c, b] - mean[c]) * scale + beta[c]
        r = _next_item(counter)


@njit(cache=True, nogil=True)
def _dy_sums(counter, x, dy, mean, inv, partial):
    # (A, C, B) -> partial (T, 2, C): per block, sum dy and sum dy * xhat, xhat = (x - mean) inv
    a_n, c_n, b_n = x.shape
    n_blocks = partial.shape[0]
    t = _next_item(counter)
    while t < n_blocks:
        for c in range(c_n):
            partial[t, 0, c] = 0.0
            partial[t, 1, c] = 0.0
        for a in range(t * a_n // n_blocks, (t + 1) * a_n // n_blocks):
            for c in range(c_n):
                for b in range(b_n):
                    g = np.float64(dy[a, c, b])
                    partial[t, 0, c] += g
                    partial[t, 1, c] += g * (x[a, c, b] - mean[c]) * inv[c]
        t = _next_item(counter)


@njit(cache=True, nogil=True)
def _batch_norm_train_dx(counter, x, dy, mean, inv, gamma, sum_dy, sum_dy_xhat, count, dx):
    # dx = gamma inv (dy - sum_dy / count - xhat sum_dy_xhat / count), xhat = (x - mean) inv
    a_n, c_n, b_n = x.shape
    r = _next_item(counter)
    while r < a_n * c_n:
        a = r // c_n
        c = r % c_n
        scale = gamma[c] * inv[c]
        mean_dy = sum_dy[c] / count
        mean_dy_xhat = sum_dy_xhat[c] / count
        for b in range(b_n):
            xhat = (x[a, c, b] - mean[c]) * inv[c]
            dx[a, c, b] = scale * (dy[a, c, b] - mean_dy - xhat * mean_dy_xhat)
        r = _next_item(counter)


@njit(cache=True, nogil=True)
def _layer_norm_backward(counter, x, gamma, eps, dy, dx, partial):
    # (M, K) rows; dx = inv (g - mean(g) - xhat mean(g xhat)), g = dy gamma; partial (T, 2, K):
    # per block sum dy (-> dbeta) and sum dy xhat (-> dgamma)
    m_n, k_n = x.shape
    n_blocks = partial.shape[0]
    t = _next_item(counter)
    while t < n_blocks:
        xhat = np.empty(k_n, dtype=np.float64)
        for j in range(k_n):
            partial[t, 0, j] = 0.0
            partial[t, 1, j] = 0.0
        for i in range(t * m_n // n_blocks, (t + 1) * m_n // n_blocks):
            mu, inv = _row_moments(x, i, eps)
            mean_g = 0.0
            mean_g_xhat = 0.0
            for j in range(k_n):
                xhat[j] = (x[i, j] - mu) * inv
                g = np.float64(dy[i, j]) * gamma[j]
                mean_g += g
                mean_g_xhat += g * xhat[j]
                partial[t, 0, j] += dy[i, j]
                partial[t, 1, j] += dy[i, j] * xhat[j]
            mean_g /= k_n
            mean_g_xhat /= k_n
            for j in range(k_n):
                dx[i, j] = inv * (np.float64(dy[i, j]) * gamma[j] - mean_g - xhat[j] * mean_g_xhat)
        t = _next_item(counter)


# ----------------------------------------------------------------------------- public wrappers


def _same_shape(dy, x: np.ndarray) -> np.ndarray:
    """dy as float32 with the shape of x; ValueError otherwise."""
    dy = _as_f32(dy, "dy", x.ndim)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {x.shape}, got {dy.shape}")
    return dy


def _reduce(partial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2, C) float64 partial sums -> the two (C,) float64 totals."""
    total = partial.sum(axis=0)
    return total[0], total[1]


def batch_norm_backward_inference(x, gamma, moving_mean, moving_variance, epsilon: float, dy):
    """Moving statistics constant: dx = dy gamma inv; dgamma = sum dy xhat; dbeta = sum dy."""
    x = _as_f32(x, "x", 3)
    c_n = x.shape[1]
    gamma = _channel_vector(gamma, "gamma", c_n)
    mean = _channel_vector(moving_mean, "moving_mean", c_n).astype(np.float64)
    var = _channel_vector(moving_variance, "moving_variance", c_n)
    dy = _same_shape(dy, x)
    inv = 1.0 / np.sqrt(var.astype(np.float64) + float(epsilon))  # (C,)
    partial = np.empty((_n_blocks(x.shape[0]), 2, c_n), dtype=np.float64)
    _parallel(_dy_sums, partial.shape[0], 6.0 * x.size, x, dy, mean, inv, partial)
    sum_dy, sum_dy_xhat = _reduce(partial)
    dx = (dy * (gamma * inv).astype(np.float32)[None, :, None]).astype(np.float32)
    return dx, sum_dy_xhat.astype(np.float32), sum_dy.astype(np.float32)


def batch_norm_train_forward(x, gamma, beta, epsilon: float):
    """(y, mean, var, cache=inv): y = (x - mean) inv gamma + beta, inv = (biased var + eps)^-1/2."""
    x = _as_f32(x, "x", 3)
    a_n, c_n, b_n = x.shape
    count = a_n * b_n
    if count < 1:
        raise ValueError(f"batch norm needs at least one value per channel, got shape {x.shape}")
    gamma = _channel_vector(gamma, "gamma", c_n)
    beta = _channel_vector(beta, "beta", c_n)
    partial = np.empty((_n_blocks(a_n), 2, c_n), dtype=np.float64)
    blocks, work = partial.shape[0], 4.0 * x.size
    _parallel(_channel_sums, blocks, work, x, np.zeros(0), partial)  # mean, then deviations
    mean = _reduce(partial)[0] / count
    _parallel(_channel_sums, blocks, work, x, mean, partial)
    var = _reduce(partial)[1] / count
    inv = 1.0 / np.sqrt(var + float(epsilon))
    y = np.empty_like(x)  # (A, C, B)
    _parallel(_normalize, a_n * c_n, work, x, mean, inv, gamma, beta, y)
    f32 = np.float32
    return y, mean.astype(f32), var.astype(f32), inv.astype(f32)


def batch_norm_train_backward(x, gamma, batch_mean, cache, dy):
    """dx = gamma inv (dy - mean dy - xhat mean(dy xhat)); dgamma = sum dy xhat; dbeta = sum dy."""
    x = _as_f32(x, "x", 3)
    a_n, c_n, b_n = x.shape
    gamma = _channel_vector(gamma, "gamma", c_n)
    mean = _channel_vector(batch_mean, "batch_mean", c_n).astype(np.float64)
    inv = _channel_vector(cache, "cache (inv)", c_n).astype(np.float64)
    dy = _same_shape(dy, x)
    partial = np.empty((_n_blocks(a_n), 2, c_n), dtype=np.float64)
    _parallel(_dy_sums, partial.shape[0], 6.0 * x.size, x, dy, mean, inv, partial)
    sum_dy, sum_dy_xhat = _reduce(partial)
    dx = np.empty_like(x)  # (A, C, B)
    _parallel(_batch_norm_train_dx, a_n * c_n, 8.0 * x.size, x, dy, mean, inv,
              gamma.astype(np.float64), sum_dy, sum_dy_xhat, float(a_n * b_n), dx)
    return dx, sum_dy_xhat.astype(np.float32), sum_dy.astype(np.float32)


def batch_norm_moving_update(moving_mean, moving_variance, batch_mean, batch_var, momentum: float):
    """moving * momentum + batch * (1 - momentum) for mean and (biased) variance, in float32."""
    keep, take = np.float32(momentum), np.float32(1.0 - momentum)  # Keras: float32 arithmetic
    mean = _as_f32(moving_mean, "moving_mean", 1)
    c_n = mean.shape[0]
    var = _channel_vector(moving_variance, "moving_variance", c_n)
    new_mean = mean * keep + _channel_vector(batch_mean, "batch_mean", c_n) * take
    new_var = var * keep + _channel_vector(batch_var, "batch_var", c_n) * take
    return new_mean, new_var


def layer_norm_backward(x, gamma, epsilon: float, dy):
    """g = dy gamma: dx = inv (g - mean g - xhat mean(g xhat)) per row; dgamma = sum dy xhat."""
    x = _as_f32(x, "x", 2)
    m_n, k_n = x.shape
    if k_n < 1:
        raise ValueError(f"layer norm needs at least one feature, got shape {x.shape}")
    gamma = _channel_vector(gamma, "gamma", k_n).astype(np.float64)
    dy = _same_shape(dy, x)
    partial = np.empty((_n_blocks(m_n), 2, k_n), dtype=np.float64)
    dx = np.empty_like(x)  # (M, K)
    _parallel(_layer_norm_backward, partial.shape[0], 12.0 * x.size, x, gamma, float(epsilon), dy,
              dx, partial)
    sum_dy, sum_dy_xhat = _reduce(partial)
    return dx, sum_dy_xhat.astype(np.float32), sum_dy.astype(np.float32)
