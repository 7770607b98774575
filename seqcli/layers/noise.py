"""Layers that act only while training: GaussianNoise, GaussianDropout, AlphaDropout,
SpatialDropout1D/2D/3D, ActivityRegularization (a penalty on the loss), and Identity.
Each is the identity at inference. Their draws come from the `rng` that `fit` seeds with
`--seed`; none has a kernel (numpy's random draws and elementwise products)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import field_validator

from seqcli.activations import SELU_ALPHA, SELU_SCALE
from seqcli.layers.base import DataFormat, Example, Layer, require_rank
from seqcli.layers.core import check_noise_shape, noise_pattern_shape
from seqcli.shapes import Shape


def _unit_interval(value: float, name: str) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"Invalid value received for argument `{name}`. Expected a float "
                         f"value between 0 and 1. Received: {name}={value}")
    return value


def _untrainable_rate(layer: Layer):
    """The error for a rate of 1 in training, where Keras divides by zero."""
    from seqcli.errors import ConfigError

    return ConfigError(f"layer '{layer.name}' ({layer.type}): rate 1 cannot train (Keras "
                       "divides by 1 - rate, which is 0); use a rate below 1")


class GaussianNoise(Layer):
    """Adds zero-mean Gaussian noise of standard deviation `stddev` while training."""

    type: Literal["GaussianNoise"] = "GaussianNoise"
    supports_masking = True
    stddev: float
    seed: int | None = None
    """Keras's seed; `fit` draws from its own `--seed` instead."""

    examples = (Example({"stddev": 0.5}, (3, 4)),)
    keras_build_config = False
    _stddev = field_validator("stddev")(classmethod(lambda cls, v: _unit_interval(v, "stddev")))

    def forward(self, weights, x):
        return x

    def forward_train(self, weights, x, rng):
        """x + N(0, stddev²) noise, drawn anew for every value."""
        import numpy as np

        if self.stddev == 0:
            return x, None
        noise = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(self.stddev)
        return x + noise, None

    def backward(self, weights, cache, dy, input_grad=True):
        return (dy if input_grad else None), {}


class GaussianDropout(Layer):
    """Multiplies by Gaussian noise of mean 1 and variance rate / (1 - rate) while training."""

    type: Literal["GaussianDropout"] = "GaussianDropout"
    supports_masking = True
    rate: float
    seed: int | None = None

    examples = (Example({"rate": 0.3}, (3, 4)),)
    keras_build_config = False
    _rate = field_validator("rate")(classmethod(lambda cls, v: _unit_interval(v, "rate")))

    def forward(self, weights, x):
        return x

    def forward_train(self, weights, x, rng):
        """x · N(1, rate / (1 - rate)), the factors kept for the backward pass."""
        import numpy as np

        if self.rate == 0:
            return x, None
        if self.rate == 1:
            raise _untrainable_rate(self)
        stddev = np.float32(math.sqrt(self.rate / (1.0 - self.rate)))
        factors = rng.standard_normal(x.shape, dtype=np.float32) * stddev + np.float32(1)
        return x * factors, factors

    def backward(self, weights, cache, dy, input_grad=True):
        return ((dy if cache is None else dy * cache) if input_grad else None), {}


class AlphaDropout(Layer):
    """Dropout that keeps a SELU network's mean and variance: dropped values become the SELU
    saturation -αλ, then everything is scaled and shifted back (`a·x + b`) while training."""

    type: Literal["AlphaDropout"] = "AlphaDropout"
    supports_masking = True
    rate: float
    noise_shape: list[int | None] | None = None
    """The shape of the keep/drop pattern, batch axis first (null entries: the input's)."""
    seed: int | None = None

    examples = (Example({"rate": 0.2}, (6,)),
                Example({"rate": 0.5, "noise_shape": [None, 1, 3]}, (4, 3)))
    keras_build_config = False
    _rate = field_validator("rate")(classmethod(lambda cls, v: _unit_interval(v, "rate")))

    def output_shape(self, input_shape: Shape) -> Shape:
        check_noise_shape(self, input_shape)
        return input_shape

    def forward(self, weights, x):
        return x

    def coefficients(self) -> tuple[float, float, float]:
        """(a, b, the dropped value -αλ) of Keras's AlphaDropout at this rate."""
        dropped = -SELU_ALPHA * SELU_SCALE
        a = ((1 - self.rate) * (1 + self.rate * dropped**2)) ** -0.5
        return a, -a * dropped * self.rate, dropped

    def forward_train(self, weights, x, rng):
        """a · (x·keep + (-αλ)·(1 - keep)) + b, keep = uniform >= rate (per noise_shape)."""
        import numpy as np

        if self.rate == 0:
            return x, None
        if self.rate == 1:
            raise _untrainable_rate(self)
        keep = (rng.random(noise_pattern_shape(self.noise_shape, x.shape)) >= self.rate)
        keep = keep.astype(np.float32)
        a, b, dropped = (np.float32(v) for v in self.coefficients())
        y = a * (x * keep + dropped * (np.float32(1) - keep)) + b
        return y.astype(np.float32), keep

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        if not input_grad:
            return None, {}
        if cache is None:
            return dy, {}
        a = np.float32(self.coefficients()[0])
        return np.ascontiguousarray(dy * (cache * a), dtype=np.float32), {}


class _SpatialDropout(Layer):
    """Dropout of whole channels: one keep/drop draw per sample and channel (last axis),
    kept channels scaled by 1 / (1 - rate)."""

    rate: float
    seed: int | None = None

    rank: ClassVar[int] = 0
    keras_build_config = False
    keras_trainable_option = False  # Keras's config for these has no `trainable`
    supports_masking = True
    _rate = field_validator("rate")(classmethod(lambda cls, v: _unit_interval(v, "rate")))

    def output_shape(self, input_shape: Shape) -> Shape:
        spatial = ", ".join(["steps"] if self.rank == 2 else
                            ["dim1", "dim2", "dim3"][:self.rank - 1])
        require_rank(self, input_shape, self.rank, f"inputs of shape ({spatial}, channels)")
        return input_shape

    def forward(self, weights, x):
        return x

    def forward_train(self, weights, x, rng):
        import numpy as np

        if self.rate == 0:
            return x, None
        if self.rate == 1:
            return np.zeros_like(x), np.zeros((len(x),) + (1,) * (x.ndim - 2) + x.shape[-1:],
                                              np.float32)
        shape = (len(x),) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        scale = np.float32(1 / (1 - self.rate))
        mask = (rng.random(shape) >= self.rate).astype(np.float32) * scale
        return x * mask, mask

    def backward(self, weights, cache, dy, input_grad=True):
        return ((dy if cache is None else dy * cache) if input_grad else None), {}


class SpatialDropout1D(_SpatialDropout):
    """Drops whole feature channels of (steps, channels) inputs while training."""

    type: Literal["SpatialDropout1D"] = "SpatialDropout1D"
    rank: ClassVar[int] = 2
    examples = (Example({"rate": 0.5}, (5, 4)),)


class SpatialDropout2D(_SpatialDropout):
    """Drops whole feature maps of (rows, cols, channels) inputs while training."""

    type: Literal["SpatialDropout2D"] = "SpatialDropout2D"
    data_format: DataFormat = "channels_last"
    rank: ClassVar[int] = 3
    examples = (Example({"rate": 0.25}, (3, 3, 4)),)


class SpatialDropout3D(_SpatialDropout):
    """Drops whole feature volumes of (dim1, dim2, dim3, channels) inputs while training."""

    type: Literal["SpatialDropout3D"] = "SpatialDropout3D"
    data_format: DataFormat = "channels_last"
    rank: ClassVar[int] = 4
    examples = (Example({"rate": 0.4}, (2, 2, 3, 3)),)


def _non_negative(value: float, name: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Invalid value for argument {name}: expected a non-negative float. "
                         f"Received: {name}={value}")
    return value


class ActivityRegularization(Layer):
    """The identity, which adds `(l1·Σ|x| + l2·Σx²) / batch size` to the training loss."""

    type: Literal["ActivityRegularization"] = "ActivityRegularization"
    supports_masking = True
    l1: float = 0.0
    l2: float = 0.0

    examples = (Example({"l1": 0.01, "l2": 0.02}, (3, 4)),)
    keras_build_config = False
    _l1 = field_validator("l1")(classmethod(lambda cls, v: _non_negative(v, "l1")))
    _l2 = field_validator("l2")(classmethod(lambda cls, v: _non_negative(v, "l2")))

    def forward(self, weights, x):
        return x

    def has_output_penalty(self) -> bool:
        return bool(self.l1 or self.l2)

    def output_penalty(self, y) -> float:
        """Keras's L1L2 activity regularizer divided by the batch size."""
        import numpy as np

        values = np.asarray(y, np.float64)
        total = 0.0
        if self.l1:
            total += self.l1 * float(np.abs(values).sum())
        if self.l2:
            total += self.l2 * float(np.square(values).sum())
        return total / len(values) if len(values) else 0.0

    def forward_train(self, weights, x, rng):
        return x, x

    def backward(self, weights, cache, dy, input_grad=True):
        """dy plus the penalty's gradient: (l1·sign(x) + 2·l2·x) / batch size."""
        import numpy as np

        if not input_grad:
            return None, {}
        grad = np.zeros(cache.shape, np.float64)
        if self.l1:
            grad += self.l1 * np.sign(cache)
        if self.l2:
            grad += 2 * self.l2 * cache.astype(np.float64)
        return (dy + (grad / len(cache)).astype(np.float32)).astype(np.float32), {}


class Identity(Layer):
    """Returns its input unchanged."""

    type: Literal["Identity"] = "Identity"
    supports_masking = True

    examples = (Example({}, (3, 2)),)
    keras_build_config = False

    def forward(self, weights, x):
        return x
