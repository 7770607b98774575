"""The optimizers' updates of one weight, in place and in one pass over it: each element's
new state and value computed in float32 in the order Keras 3 computes them (the same
roundings as its element-wise ops, so the same bits). Division follows numpy (error_model
numpy: no zero-division branch, so the loops vectorise)."""

from __future__ import annotations

import numpy as np
from numba import njit

from seqcli.kernels.numba_startup import numba_ready

numba_ready()  # every kernel here runs in numba


# ----------------------------------------------------------------------------- jitted kernels


@njit(cache=True, nogil=True)
def _sgd(variable, gradient, momentum, lr, factor, nesterov):
    # flat float32: w -= g·lr; with momentum m = m·factor - g·lr, then w += m (Nesterov:
    # w += m·factor - g·lr)
    if momentum.size == 0:
        for i in range(variable.size):
            variable[i] -= gradient[i] * lr
    elif nesterov:
        for i in range(variable.size):
            step = gradient[i] * lr
            momentum[i] = momentum[i] * factor - step
            variable[i] += momentum[i] * factor - step
    else:
        for i in range(variable.size):
            momentum[i] = momentum[i] * factor - gradient[i] * lr
            variable[i] += momentum[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _adam(variable, gradient, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    # flat float32: m += (g - m)(1 - β1); v += (g² - v)(1 - β2); w -= m·α / (√v + ε)
    for i in range(variable.size):
        g = gradient[i]
        m[i] += (g - m[i]) * one_minus_beta_1
        v[i] += (g * g - v[i]) * one_minus_beta_2
        variable[i] -= (m[i] * alpha) / (np.sqrt(v[i]) + epsilon)


@njit(cache=True, nogil=True, error_model="numpy")
def _rmsprop(variable, gradient, v, momentum, lr, rho, one_minus_rho, epsilon, factor):
    # flat float32: v = v·ρ + (1 - ρ)·g²; step = lr·g / √(v + ε); with momentum
    # m = m·factor + step, w -= m; else w -= step
    for i in range(variable.size):
        g = gradient[i]
        v[i] = v[i] * rho + one_minus_rho * (g * g)
    if momentum.size == 0:
        for i in range(variable.size):
            variable[i] -= (lr * gradient[i]) / np.sqrt(v[i] + epsilon)
    else:
        for i in range(variable.size):
            momentum[i] = momentum[i] * factor + (lr * gradient[i]) / np.sqrt(v[i] + epsilon)
            variable[i] -= momentum[i]


# ----------------------------------------------------------------------------- public wrappers


def _update(kernel, variable, gradient, states, *settings) -> None:
    """kernel(variable, gradient, *states, *settings) on flat float32 arrays, the variable and
    its states (None: not kept) updated in place, through C-contiguous copies for those that
    are not."""
    gradient = np.ascontiguousarray(gradient, dtype=np.float32)
    arrays = [variable, *(state for state in states if state is not None)]
    for array, name in zip(arrays, ("variable", "state", "state")):
        if array.dtype != np.float32 or array.shape != variable.shape:
            raise ValueError(f"the {name} must be a float32 array of shape {variable.shape}, "
                             f"got {array.dtype} {array.shape}")
    if gradient.shape != variable.shape:
        raise ValueError(f"gradient {gradient.shape} does not match variable {variable.shape}")
    copies = {id(array): np.ascontiguousarray(array) for array in arrays
              if not array.flags.c_contiguous}
    flat = [copies.get(id(array), array).reshape(-1) if array is not None else _NONE
            for array in (variable, *states)]
    kernel(flat[0], gradient.reshape(-1), *flat[1:], *settings)
    for array in arrays:
        if id(array) in copies:
            array[...] = copies[id(array)]


_NONE = np.empty(0, dtype=np.float32)
"""A state an optimizer does not keep (momentum without a momentum setting)."""


def sgd_update(variable, gradient, momentum, learning_rate, factor, nesterov: bool) -> None:
    """w -= lr·g; with `momentum` (None without) m = factor·m - lr·g, then w += m."""
    _update(_sgd, variable, gradient, (momentum,), np.float32(learning_rate),
            np.float32(factor), bool(nesterov))


def adam_update(variable, gradient, m, v, alpha, beta_1, beta_2, epsilon) -> None:
    """m += (g - m)(1 - β1); v += (g² - v)(1 - β2); w -= m·α / (√v + ε), in float32."""
    _update(_adam, variable, gradient, (m, v), np.float32(alpha), np.float32(1 - beta_1),
            np.float32(1 - beta_2), np.float32(epsilon))


def rmsprop_update(variable, gradient, v, momentum, learning_rate, rho, epsilon,
                   factor) -> None:
    """v = ρ·v + (1 - ρ)·g²; w -= lr·g / √(v + ε), through m = factor·m + step with `momentum`."""
    _update(_rmsprop, variable, gradient, (v, momentum), np.float32(learning_rate),
            np.float32(rho), np.float32(1 - rho), np.float32(epsilon), np.float32(factor))
