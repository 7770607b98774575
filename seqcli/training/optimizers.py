"""Keras 3's SGD, Adam and RMSprop update rules, with Keras's default hyperparameters.

An optimizer updates float32 weights in place from their gradients, keeping its own state
per weight key (momenta, velocities) and its step count, as Keras's `update_step` does; each
update is one pass over the weight (seqcli.kernels.updates), with Keras's float32 roundings.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_LEARNING_RATES = {"sgd": 0.01, "adam": 0.001, "rmsprop": 0.001}


class Optimizer:
    """Base: `apply(weights, gradients)` updates every key of `gradients` in place."""

    def __init__(self, learning_rate: float):
        if not (math.isfinite(learning_rate) and learning_rate >= 0):
            raise ValueError(f"the learning rate must be a finite number, at least 0. "
                             f"Received: learning_rate={learning_rate}")
        self.learning_rate = learning_rate
        self.iterations = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def _slots(self, key: str, like: np.ndarray, *names: str) -> list[np.ndarray]:
        slots = self.state.setdefault(key, {})
        for name in names:
            if name not in slots:
                slots[name] = np.zeros(like.shape, dtype=np.float32)
        return [slots[name] for name in names]

    def apply(self, weights: dict[str, np.ndarray], gradients: dict[str, np.ndarray]) -> None:
        """One step over every (key, gradient) pair; then the step count advances."""
        for key, gradient in gradients.items():
            self.update(key, weights[key], gradient.astype(np.float32, copy=False))
        self.iterations += 1

    def update(self, key: str, variable: np.ndarray, gradient: np.ndarray) -> None:
        """Update one variable in place."""
        raise NotImplementedError


class SGD(Optimizer):
    """w -= lr·g; with momentum m = momentum·m - lr·g, then w += m (Nesterov:
    w += momentum·m - lr·g)."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False):
        super().__init__(learning_rate)
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be between 0 and 1. Received: momentum={momentum}")
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, key, variable, gradient):
        from seqcli.kernels.updates import sgd_update

        m = self._slots(key, variable, "momentum")[0] if self.momentum else None
        sgd_update(variable, gradient, m, self.learning_rate, self.momentum, self.nesterov)


class Adam(Optimizer):
    """m += (g - m)(1 - β1); v += (g² - v)(1 - β2);
    w -= lr·√(1 - β2^t)/(1 - β1^t) · m / (√v + ε)."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def update(self, key, variable, gradient):
        from seqcli.kernels.updates import adam_update

        m, v = self._slots(key, variable, "momentum", "velocity")
        step = np.float32(self.iterations + 1)
        one = np.float32(1)
        # in float32, as Keras computes it
        alpha = (np.float32(self.learning_rate) * np.sqrt(one - np.float32(self.beta_2) ** step)
                 / (one - np.float32(self.beta_1) ** step))
        adam_update(variable, gradient, m, v, alpha, self.beta_1, self.beta_2, self.epsilon)


class RMSprop(Optimizer):
    """v = ρ·v + (1 - ρ)·g²; step = lr·g / √(v + ε); with momentum
    m = momentum·m + step, w -= m; else w -= step."""

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7):
        super().__init__(learning_rate)
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be between 0 and 1. Received: momentum={momentum}")
        self.rho, self.momentum, self.epsilon = rho, momentum, epsilon

    def update(self, key, variable, gradient):
        from seqcli.kernels.updates import rmsprop_update

        (v,) = self._slots(key, variable, "velocity")
        m = self._slots(key, variable, "momentum")[0] if self.momentum > 0 else None
        rmsprop_update(variable, gradient, v, m, self.learning_rate, self.rho, self.epsilon,
                       self.momentum)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def get_optimizer(name: str, learning_rate: float | None = None, momentum: float = 0.0,
                  nesterov: bool = False) -> Optimizer:
    """An optimizer by Keras name with Keras's defaults; momentum applies to sgd and rmsprop."""
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{name}'. Known: {', '.join(OPTIMIZERS)}")
    rate = DEFAULT_LEARNING_RATES[key] if learning_rate is None else learning_rate
    if key == "sgd":
        return SGD(rate, momentum, nesterov)
    if nesterov:
        raise ValueError("--nesterov applies to sgd only")
    if key == "rmsprop":
        return RMSprop(rate, momentum=momentum)
    if momentum:
        raise ValueError("adam has no momentum setting (its beta_1 plays that role)")
    return Adam(rate)
