"""Keras's weight initialisers, with Keras's fan rules, deterministic for a seed."""

from __future__ import annotations

import math
import zlib

import numpy as np

# Keras's truncated normal keeps values within two standard deviations; this constant
# (the standard deviation of a unit normal truncated to [-2, 2]) restores the variance.
_TRUNCATED_STDDEV = 0.87962566103423978


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras's fans: (in, out) for a matrix; (k·in, k·out) for kernels with receptive field k."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng: np.random.Generator, shape, stddev: float) -> np.ndarray:
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return values * stddev


def initial_value(name, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A float32 array of `shape` drawn by the Keras initialiser `name`; a tuple of names
    draws equal parts of the last axis, one each (an LSTM's bias with unit_forget_bias)."""
    if isinstance(name, tuple):
        size = shape[-1] // len(name)
        return np.concatenate([initial_value(part, shape[:-1] + (size,), rng)
                               for part in name], axis=-1)
    if name == "zeros":
        return np.zeros(shape, np.float32)
    if name == "ones":
        return np.ones(shape, np.float32)
    if name == "random_uniform":
        return rng.uniform(-0.05, 0.05, shape).astype(np.float32)
    if name == "random_normal":
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)
    if name == "truncated_normal":
        return _truncated_normal(rng, shape, 0.05).astype(np.float32)
    if name == "orthogonal":
        return _orthogonal(rng, shape)
    fan_in, fan_out = compute_fans(shape)
    family, distribution = name.rsplit("_", 1)
    # VarianceScaling: scale / n with n the fan the family averages over
    scale, fan = {"glorot": (1.0, (fan_in + fan_out) / 2), "he": (2.0, fan_in),
                  "lecun": (1.0, fan_in)}[family]
    variance = scale / max(1.0, fan)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        values = rng.uniform(-limit, limit, shape)
    else:
        values = _truncated_normal(rng, shape, math.sqrt(variance) / _TRUNCATED_STDDEV)
    return values.astype(np.float32)


def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Keras's Orthogonal (gain 1): the Q of a normal matrix's QR, signs fixed by R's
    diagonal, transposed when there are fewer rows than columns."""
    rows, cols = math.prod(shape[:-1]), shape[-1]
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(np.float32)


def initial_weights(specs: dict[str, tuple[tuple[int, ...], str]], seed: int) -> dict:
    """Initial values for {key: (shape, initializer)}; each key draws from its own stream
    seeded by (seed, key), so one layer's weights do not depend on the others."""
    weights = {}
    for key, (shape, initializer) in specs.items():
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        weights[key] = initial_value(initializer, shape, rng)
    return weights
