"""Dense, Activation, Dropout, Flatten, Reshape and Rescaling."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import field_validator

from seqcli.activations import ACTIVATIONS, activation_code
from seqcli.layers.base import (
    MAX_SIZE,
    Activation,
    Count,
    DataFormat,
    Example,
    Initializer,
    Layer,
    post_activation,
    require_known,
)
from seqcli.layers.regularizers import Constraint, Regularizer
from seqcli.shapes import Shape, ShapeError, format_shape, num_elements


@post_activation
class Dense(Layer):
    """`activation(x @ kernel + bias)` on the last axis of an input of any rank."""

    type: Literal["Dense"] = "Dense"
    supports_masking = True
    units: Count
    activation: Activation = "linear"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer = None
    bias_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None
    kernel_constraint: Constraint = None
    bias_constraint: Constraint = None

    examples = (
        Example({"units": 3}, (4,)),
        Example({"units": 3, "use_bias": False, "activation": "relu"}, (2, 4)),
        # big enough for the threaded BLAS path (above the kernels' small-work threshold)
        Example({"units": 256, "activation": "relu"}, (256,), batch=256),
        Example({"units": 64, "activation": "softmax"}, (256,), batch=256),
    )

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1:
            raise ShapeError(f"Dense needs at least one feature axis. "
                             f"Received: input_shape={format_shape(input_shape)}")
        return input_shape[:-1] + (self.units,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        features = require_known(self, input_shape[-1], "last dimension", input_shape)
        shapes = {"kernel": (features, self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def weight_initializers(self) -> dict[str, str]:
        return {"kernel": self.kernel_initializer, "bias": self.bias_initializer}

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        return (num_elements(input_shape) or 0) * self.units

    def forward(self, weights, x):
        from seqcli.kernels.small import small_dense_forward

        flat = x.reshape(-1, x.shape[-1])
        code = activation_code(self.fused_activation)
        y = small_dense_forward(flat, weights["kernel"], weights.get("bias"), code)
        if y is None:
            from seqcli.kernels.dense import dense_forward

            y = dense_forward(flat, weights["kernel"], weights.get("bias"), code)
        return y.reshape(x.shape[:-1] + (self.units,))

    def bound_forward(self, weights):
        from seqcli.kernels.small import dense_rows

        if not isinstance(self.activation, str):  # an activation layer runs after
            return super().bound_forward(weights)
        rows = dense_rows(weights["kernel"], weights.get("bias"),
                          activation_code(self.activation))
        if rows is None:
            return super().bound_forward(weights)
        units = self.units

        def forward(x):
            return rows(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1] + (units,))

        return forward

    def forward_train(self, weights, x, rng):
        from seqcli.kernels.activations import activation_forward
        from seqcli.kernels.dense import dense_forward

        flat = x.reshape(-1, x.shape[-1])
        z = dense_forward(flat, weights["kernel"], weights.get("bias"), activation_code("linear"))
        y = activation_forward(z, activation_code(self.fused_activation))
        return y.reshape(x.shape[:-1] + (self.units,)), (x.shape, flat, z, y)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_dense import dense_backward

        shape, flat, z, y = cache
        dx, dkernel, dbias = dense_backward(flat, weights["kernel"], z, y,
                                            dy.reshape(-1, self.units),
                                            activation_code(self.fused_activation),
                                            input_grad=input_grad)
        grads = {"kernel": dkernel, "bias": dbias} if self.use_bias else {"kernel": dkernel}
        return (dx.reshape(shape) if dx is not None else None), grads


@post_activation
class ActivationLayer(Layer):
    """Applies an activation function by name."""

    type: Literal["Activation"] = "Activation"
    supports_masking = True
    activation: Activation

    examples = tuple(Example({"activation": name}, (3, 5)) for name in ACTIVATIONS)
    keras_build_config = False

    def forward(self, weights, x):
        from seqcli.kernels.small import small_activation_forward

        code = activation_code(self.fused_activation)
        y = small_activation_forward(x, code)
        if y is None:
            from seqcli.kernels.activations import activation_forward

            y = activation_forward(x, code)
        return y

    def forward_train(self, weights, x, rng):
        from seqcli.kernels.activations import activation_forward

        y = activation_forward(x, activation_code(self.fused_activation))
        return y, (x, y)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_activations import activation_backward

        x, y = cache
        return activation_backward(x, y, dy, activation_code(self.fused_activation)), {}


def check_noise_shape(layer: Layer, input_shape: Shape) -> None:
    """ShapeError unless the layer's `noise_shape` (Keras's: batch axis first) broadcasts
    against the input (Dropout, AlphaDropout)."""
    if layer.noise_shape is None:
        return
    full = (None, *input_shape)
    fits = len(layer.noise_shape) == len(full) and all(
        noise is None or noise == 1 or (size is not None and noise == size)
        for noise, size in zip(layer.noise_shape, full))
    if not fits:
        raise ShapeError(
            "noise_shape needs one entry per axis of the input, batch axis first, each null, 1 "
            f"or the size of that axis (null or 1 for the batch axis). Received: noise_shape="
            f"{layer.noise_shape} for inputs of shape {format_shape(input_shape)} in "
            f"{layer.type}")


def noise_pattern_shape(noise_shape, shape: tuple) -> tuple:
    """The shape of a batch's keep/drop pattern: `shape`, or `noise_shape` with its null
    entries taken from `shape`."""
    if noise_shape is None:
        return shape
    return tuple(d if n is None else n for n, d in zip(noise_shape, shape))


class Dropout(Layer):
    """Randomly zeroes inputs while training; the identity at inference."""

    type: Literal["Dropout"] = "Dropout"
    supports_masking = True
    rate: float
    noise_shape: list[int | None] | None = None
    seed: int | None = None

    examples = (Example({"rate": 0.5}, (6,)), Example({"rate": 0.25, "noise_shape": [None, 1, 3]},
                                                      (4, 3)))
    keras_build_config = False

    @field_validator("rate")
    @classmethod
    def _rate(cls, value):
        if not 0 <= value <= 1:
            raise ValueError(f"expected a float between 0 and 1. Received: rate={value}")
        return value

    def output_shape(self, input_shape: Shape) -> Shape:
        check_noise_shape(self, input_shape)
        return input_shape

    def forward(self, weights, x):
        return x

    def forward_train(self, weights, x, rng):
        """Inverted dropout: keep each value with probability 1 - rate, scaled by 1/(1 - rate)."""
        import numpy as np

        if self.rate == 0:
            return x, None
        if self.rate == 1:
            return np.zeros_like(x), np.zeros_like(x)
        shape = noise_pattern_shape(self.noise_shape, x.shape)
        scale = np.float32(1 / (1 - self.rate))
        mask = (rng.random(shape) >= self.rate).astype(np.float32) * scale
        return x * mask, mask

    def backward(self, weights, cache, dy, input_grad=True):
        return (dy if cache is None else dy * cache) if input_grad else None, {}


class Flatten(Layer):
    """Flattens each sample to one axis."""

    type: Literal["Flatten"] = "Flatten"
    data_format: DataFormat = "channels_last"

    examples = (Example({}, (3, 4, 2)),)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (num_elements(input_shape),)

    def forward(self, weights, x):
        return x.reshape(x.shape[0], -1)


class Reshape(Layer):
    """Reshapes each sample to `target_shape`; one entry may be -1."""

    type: Literal["Reshape"] = "Reshape"
    target_shape: list[int]

    examples = (Example({"target_shape": [3, -1]}, (12,)),)
    keras_build_config = False

    @field_validator("target_shape")
    @classmethod
    def _target(cls, value):
        if value.count(-1) > 1:
            raise ValueError(f"at most one -1 is allowed. Received: target_shape={value}")
        if any(v == 0 or v < -1 or v > MAX_SIZE for v in value):
            raise ValueError(f"dimensions must be positive (at most {MAX_SIZE}) or -1. "
                             f"Received: target_shape={value}")
        return value

    def output_shape(self, input_shape: Shape) -> Shape:
        size = num_elements(input_shape)
        target = tuple(self.target_shape)
        known = math.prod(v for v in target if v != -1)
        if -1 in target:
            if size is None:
                return tuple(None if v == -1 else v for v in target)
            if size % known:
                raise ShapeError(self._mismatch(input_shape))
            return tuple(size // known if v == -1 else v for v in target)
        if size is not None and size != known:
            raise ShapeError(self._mismatch(input_shape))
        return target

    def _mismatch(self, input_shape: Shape) -> str:
        return (f"total size of the new array must be unchanged: "
                f"input_shape={format_shape(input_shape, batch=False)}, "
                f"target_shape={tuple(self.target_shape)}")

    def forward(self, weights, x):
        return x.reshape((x.shape[0],) + tuple(self.target_shape))


class Rescaling(Layer):
    """`x * scale + offset`."""

    type: Literal["Rescaling"] = "Rescaling"
    supports_masking = True
    scale: float
    offset: float = 0.0

    examples = (Example({"scale": 0.5, "offset": 1.0}, (3, 4)),)

    def forward(self, weights, x):
        from seqcli.kernels.reshaping import rescale_forward

        return rescale_forward(x, self.scale, self.offset)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_reshaping import rescale_backward

        return (rescale_backward(self.scale, dy) if input_grad else None), {}
