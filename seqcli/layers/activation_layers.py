"""The activation layers: ReLU, LeakyReLU, PReLU, ELU and Softmax (Keras 3's formulas, in
float32). Each may also stand as another layer's `activation` (a mapping with its `type`); one
that an activation name computes the same as is read as that name."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, field_validator, model_validator

from seqcli.layers.base import Example, Initializer, Layer
from seqcli.shapes import Shape, ShapeError, format_shape


def _number(value):
    """An int or float (not a bool), as a float: Keras's configs write 1 or 1.0 alike."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number. Received: {value!r}")
    return float(value)


Number = Annotated[float, BeforeValidator(_number)]


def _not_negative(value, info):
    if value is not None and value < 0:
        raise ValueError(f"{info.field_name} cannot be negative. Received: "
                         f"{info.field_name}={value}")
    return value


def _relu(x, negative_slope: float, max_value: float | None, threshold: float):
    """Keras's `activations.relu(x, negative_slope, max_value, threshold)`, step by step."""
    import numpy as np

    f32 = np.float32
    slope, threshold = f32(negative_slope), f32(threshold)
    if slope != 0 and max_value is None and threshold == 0:  # Keras: leaky_relu
        return np.where(x >= 0, x, slope * x)
    y = np.where(x > threshold, x, f32(0)) if threshold != 0 else np.maximum(x, f32(0))
    if max_value is not None:
        y = np.minimum(y, f32(max_value))
    if slope != 0:
        y = y - slope * np.maximum(threshold - x, f32(0))
    return y.astype(np.float32, copy=False)


def _relu_gradient(x, negative_slope: float, max_value: float | None, threshold: float):
    """d `_relu` / d x, elementwise (at a kink, the value of the flat side, as JAX's)."""
    import numpy as np

    slope, threshold = np.float32(negative_slope), np.float32(threshold)
    if slope != 0 and max_value is None and threshold == 0:
        return np.where(x >= 0, np.float32(1), slope)
    passed = x > threshold
    if max_value is not None:
        passed &= x < np.float32(max_value)
    grad = passed.astype(np.float32)
    if slope != 0:
        grad += slope * (x < threshold)
    return grad


class ReLU(Layer):
    """max(x, 0), capped at `max_value`; below `threshold`, `negative_slope · (x - threshold)`."""

    type: Literal["ReLU"] = "ReLU"
    max_value: Number | None = None
    negative_slope: Number = 0.0
    threshold: Number = 0.0

    supports_masking = True
    activation_layer = True
    keras_build_config = False
    examples = (Example({}, (3, 4)), Example({"max_value": 6}, (3, 4)),
                Example({"max_value": 2.5, "negative_slope": 0.1, "threshold": 0.5}, (3, 4)),
                Example({"negative_slope": 0.3}, (3, 4)))

    @field_validator("max_value", "negative_slope", "threshold")
    @classmethod
    def _not_negative(cls, value, info):
        return _not_negative(value, info)

    def named_activation(self) -> str | None:
        if self.negative_slope == 0 and self.threshold == 0:
            return {None: "relu", 6.0: "relu6"}.get(self.max_value)
        return None

    def forward(self, weights, x):
        return _relu(x, self.negative_slope, self.max_value, self.threshold)

    def forward_train(self, weights, x, rng):
        return self.forward(weights, x), x

    def backward(self, weights, cache, dy, input_grad=True):
        if not input_grad:
            return None, {}
        return dy * _relu_gradient(cache, self.negative_slope, self.max_value,
                                   self.threshold), {}


class LeakyReLU(Layer):
    """x for x ≥ 0, `negative_slope · x` below (default 0.3; the `leaky_relu` activation
    function's is 0.2). Keras 2's `alpha` is read as `negative_slope`."""

    type: Literal["LeakyReLU"] = "LeakyReLU"
    negative_slope: Number = 0.3

    supports_masking = True
    activation_layer = True
    keras_build_config = False
    examples = (Example({}, (3, 4)), Example({"negative_slope": 0.2}, (2, 3, 4)))

    @model_validator(mode="before")
    @classmethod
    def _keras2_alpha(cls, data):
        if isinstance(data, dict) and "alpha" in data and "negative_slope" not in data:
            data = {("negative_slope" if key == "alpha" else key): value
                    for key, value in data.items()}
        return data

    @field_validator("negative_slope")
    @classmethod
    def _not_negative(cls, value, info):
        return _not_negative(value, info)

    def named_activation(self) -> str | None:
        return "leaky_relu" if self.negative_slope == 0.2 else None

    def forward(self, weights, x):
        return _relu(x, self.negative_slope, None, 0.0)

    def forward_train(self, weights, x, rng):
        return self.forward(weights, x), x

    def backward(self, weights, cache, dy, input_grad=True):
        if not input_grad:
            return None, {}
        return dy * _relu_gradient(cache, self.negative_slope, None, 0.0), {}


class ELU(Layer):
    """x for x > 0, `alpha · (exp(x) - 1)` otherwise."""

    type: Literal["ELU"] = "ELU"
    alpha: Number = 1.0

    supports_masking = True
    activation_layer = True
    keras_build_config = False
    examples = (Example({}, (3, 4)), Example({"alpha": 0.5}, (3, 4)))

    def named_activation(self) -> str | None:
        return "elu" if self.alpha == 1.0 else None

    def forward(self, weights, x):
        import numpy as np

        negative = np.float32(self.alpha) * np.expm1(np.minimum(x, np.float32(0)))
        return np.where(x > 0, x, negative).astype(np.float32, copy=False)

    def forward_train(self, weights, x, rng):
        return self.forward(weights, x), x

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        if not input_grad:
            return None, {}
        x = cache
        slope = np.float32(self.alpha) * np.exp(np.minimum(x, np.float32(0)))
        return (dy * np.where(x > 0, np.float32(1), slope)).astype(np.float32), {}


def _check_axis(value):
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)) or (
            isinstance(value, (list, tuple)) and (not value or not all(
                isinstance(a, int) and not isinstance(a, bool) for a in value))):
        raise ValueError(f"expected an axis (an int) or a list of axes. Received: axis={value!r}")
    return value if isinstance(value, int) else list(value)


class Softmax(Layer):
    """exp(x) / sum(exp(x)) over `axis` (an int or a list of axes; the batch axis is 0)."""

    type: Literal["Softmax"] = "Softmax"
    axis: Annotated[int | list[int], BeforeValidator(_check_axis)] = -1

    activation_layer = True
    keras_build_config = False
    examples = (Example({}, (3, 4)), Example({"axis": 1}, (3, 4)),
                Example({"axis": [1, 2]}, (2, 3, 4)))

    def named_activation(self) -> str | None:
        return "softmax" if self.axis in (-1, [-1]) else None

    def _axes(self, rank: int) -> tuple[int, ...]:
        """The axes of a batch of `rank` dimensions (batch first) the softmax runs over."""
        axes = [self.axis] if isinstance(self.axis, int) else self.axis
        resolved = tuple(sorted({a + rank if a < 0 else a for a in axes}))
        if any(not 1 <= a < rank for a in resolved) or len(resolved) != len(axes):
            raise ShapeError(f"axis must name distinct axes of the sample, from 1 to "
                             f"{rank - 1} or -1 to -{rank - 1} (not the batch axis 0). "
                             f"Received: axis={self.axis!r} for inputs of rank {rank}")
        return resolved

    def output_shape(self, input_shape: Shape) -> Shape:
        if not input_shape:
            raise ShapeError(f"Softmax needs inputs with at least one axis besides the batch. "
                             f"Received: input_shape={format_shape(input_shape)}")
        self._axes(len(input_shape) + 1)
        return input_shape

    def forward(self, weights, x):
        import numpy as np

        axes = self._axes(x.ndim)
        if len(axes) == 1:  # Keras: softmax(x, axis)
            e = np.exp(x - x.max(axis=axes, keepdims=True))
            return (e / e.sum(axis=axes, keepdims=True)).astype(np.float32, copy=False)
        # several axes, Keras: exp(x - logsumexp(x, axes))
        top = x.max(axis=axes, keepdims=True)
        log_total = top + np.log(np.exp(x - top).sum(axis=axes, keepdims=True))
        return np.exp(x - log_total).astype(np.float32, copy=False)

    def forward_train(self, weights, x, rng):
        y = self.forward(weights, x)
        return y, y

    def backward(self, weights, cache, dy, input_grad=True):
        if not input_grad:
            return None, {}
        y = cache
        axes = self._axes(y.ndim)
        return (y * (dy - (dy * y).sum(axis=axes, keepdims=True))).astype(y.dtype), {}


def _check_shared_axes(value):
    if value is None:
        return None
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in values):
        raise ValueError(f"expected axes counted from 1 (the batch axis is 0). Received: "
                         f"shared_axes={value!r}")
    return list(values)


class PReLU(Layer):
    """x for x ≥ 0, `alpha · x` below, with `alpha` a weight per value of the sample (shared
    along `shared_axes`, counted from 1)."""

    type: Literal["PReLU"] = "PReLU"
    alpha_initializer: Initializer = "zeros"
    shared_axes: Annotated[list[int] | None, BeforeValidator(_check_shared_axes)] = None

    supports_masking = True
    activation_layer = True
    examples = (Example({}, (3, 4)), Example({"shared_axes": [1, 2]}, (3, 4, 2)))

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shape = list(input_shape)
        for axis in self.shared_axes or ():
            if axis > len(shape):
                raise ShapeError(f"shared_axes counts the sample's axes from 1 to "
                                 f"{len(shape)}. Received: shared_axes={self.shared_axes} for "
                                 f"input_shape={format_shape(input_shape)}")
            shape[axis - 1] = 1
        if any(d is None for d in shape):
            raise ShapeError(f"every axis of the input that alpha does not share must be "
                             f"known. Received: input_shape={format_shape(input_shape)}, "
                             f"shared_axes={self.shared_axes}")
        return {"alpha": tuple(shape)}

    def weight_initializers(self) -> dict[str, str]:
        return {"alpha": self.alpha_initializer}

    def forward(self, weights, x):
        import numpy as np

        zero = np.float32(0)
        return (np.maximum(x, zero) - weights["alpha"] * np.maximum(-x, zero)).astype(
            np.float32, copy=False)

    def forward_train(self, weights, x, rng):
        return self.forward(weights, x), x

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        x = cache
        alpha = weights["alpha"]
        negative = np.minimum(x, np.float32(0))
        summed = tuple(i for i in range(x.ndim) if i == 0 or alpha.shape[i - 1] == 1)
        dalpha = (dy * negative).sum(axis=summed, dtype=np.float64).reshape(alpha.shape)
        dx = None
        if input_grad:
            dx = (dy * np.where(x > 0, np.float32(1), np.where(x < 0, alpha, np.float32(0))))
            dx = dx.astype(np.float32, copy=False)
        return dx, {"alpha": dalpha.astype(np.float32)}
