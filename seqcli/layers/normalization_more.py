"""Normalization (fixed or adapted mean and variance), GroupNormalization and
UnitNormalization."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, field_validator, model_validator

from seqcli.errors import quoted
from seqcli.layers.base import Example, Initializer, Layer, require_known
from seqcli.layers.normalization import sample_axes, sample_axis
from seqcli.shapes import Shape, ShapeError, format_shape


def _check_statistic(value, info):
    """A number or a rectangular nested list of numbers (as floats), or None."""
    def plain(item):
        if isinstance(item, bool) or not isinstance(item, (int, float, list)):
            raise ValueError(f"expected a number or a list of numbers. Received: "
                             f"{info.field_name}={value!r}")
        if isinstance(item, list):
            return [plain(v) for v in item]
        if not math.isfinite(item):
            raise ValueError(f"expected finite numbers. Received: {info.field_name}={value!r}")
        return float(item)

    if value is None:
        return None
    result = plain(value)
    _statistic_shape(result, info.field_name)
    return result


def _statistic_shape(value, name: str) -> tuple[int, ...]:
    """The shape of a number (()) or rectangular nested list; ValueError if ragged."""
    if not isinstance(value, list):
        return ()
    if not value:
        raise ValueError(f"expected a non-empty list. Received: {name}={quoted(value)}")
    shapes = {_statistic_shape(item, name) for item in value}
    if len(shapes) != 1:
        raise ValueError(f"expected a rectangular (non-ragged) list. Received: "
                         f"{name}={quoted(value)}")
    return (len(value), *shapes.pop())


Statistic = Annotated[Any, BeforeValidator(_check_statistic)]


def _axes_list(axis) -> list[int]:
    if axis is None:
        return []
    return list(axis) if isinstance(axis, list) else [axis]


class Normalization(Layer):
    """`(x - mean) / max(sqrt(variance), 1e-7)` with a mean and variance per index of `axis`
    (given, or adapted: then the weights `mean`, `variance`, `count`, never trainable);
    `invert` applies the inverse, `mean + x * max(sqrt(variance), 1e-7)`."""

    type: Literal["Normalization"] = "Normalization"
    supports_masking = True
    axis: int | list[int] | None = -1
    """The axes that keep their own mean and variance (null: one scalar for everything)."""
    mean: Statistic = None
    """The mean (a number or a list broadcast to the kept axes); null: adapted weights."""
    variance: Statistic = None
    """The variance, given with `mean`."""
    invert: bool = False
    """Turn normalised values back into the original scale."""

    non_trainable_weights: ClassVar[tuple[str, ...]] = ("mean", "variance", "count")
    keras_integer_weights: ClassVar[frozenset[str]] = frozenset({"count"})
    examples = (
        Example({}, (4,)),  # adapted: the mean and variance are weights
        Example({"axis": [1, 3], "invert": True}, (2, 3, 4)),
        Example({"axis": None, "mean": 2.0, "variance": 4.0}, (3, 2)),
        Example({"axis": [-2, -1], "mean": [1.0, -1.0, 0.5], "variance": [4.0, 1.0, 0.0]},
                (2, 5, 3)),
    )

    @field_validator("axis")
    @classmethod
    def _distinct(cls, value):
        axes = _axes_list(value)
        if len(set(axes)) != len(axes):
            raise ValueError(f"expected distinct axes. Received: axis={value}")
        return value

    @model_validator(mode="after")
    def _statistics_together(self):
        if (self.mean is None) != (self.variance is None):
            raise ValueError("When setting values directly, both `mean` and `variance` must be "
                             f"set. Received: mean={quoted(self.mean)} and "
                             f"variance={quoted(self.variance)}")
        if self.mean is not None:
            mean_shape = _statistic_shape(self.mean, "mean")
            variance_shape = _statistic_shape(self.variance, "variance")
            if mean_shape != variance_shape:
                raise ValueError("When setting values directly, `mean` and `variance` must "
                                 f"have the same shape. Received: mean shape {mean_shape} and "
                                 f"variance shape {variance_shape}")
            if len(mean_shape) > len(_axes_list(self.axis)):
                raise ValueError(f"The rank of `mean` must be less than or equal to the number "
                                 f"of axes ({len(_axes_list(self.axis))}). Received: mean "
                                 f"shape {mean_shape} for axis={self.axis}")
            if any(v < 0 for v in _flat(self.variance)):
                raise ValueError(f"a variance cannot be negative. Received: "
                                 f"variance={quoted(self.variance)}")
        return self

    def _kept(self, input_shape: Shape) -> list[int]:
        """The kept per-sample axes, sorted (Keras's `_keep_axis`, less the batch axis)."""
        return sorted(sample_axis(a, input_shape, self) for a in _axes_list(self.axis))

    def _statistics_shape(self, input_shape: Shape) -> Shape:
        """The shape of the adapted mean and variance: the kept axes' sizes."""
        return tuple(require_known(self, input_shape[a], f"axis {a + 1}", input_shape)
                     for a in self._kept(input_shape))

    def _given_shape(self, input_shape: Shape) -> list[int]:
        """The given mean's dimensions placed on the kept axes from the right (Keras's
        expanded shape, per sample); ShapeError where they do not broadcast."""
        kept = self._kept(input_shape)
        mean_shape = _statistic_shape(self.mean, "mean")
        expanded = [1] * len(input_shape)
        for i in range(1, len(mean_shape) + 1):
            axis, size = kept[-i], mean_shape[-i]
            if size != 1 and size != input_shape[axis]:
                raise ShapeError(f"Normalization: mean of shape {mean_shape} does not broadcast "
                                 f"to the kept axes {self.axis} of inputs of shape "
                                 f"{format_shape(input_shape)}")
            expanded[axis] = size
        return expanded

    def output_shape(self, input_shape: Shape) -> Shape:
        if self.mean is None:
            self._statistics_shape(input_shape)
        else:
            for axis in self._kept(input_shape):
                require_known(self, input_shape[axis], f"axis {axis + 1}", input_shape)
            self._given_shape(input_shape)
        return input_shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        if self.mean is not None:
            return {}  # given values are constants of the layer, not weights
        shape = self._statistics_shape(input_shape)
        return {"mean": shape, "variance": shape, "count": ()}

    def weight_initializers(self) -> dict[str, str]:
        return {"mean": "zeros", "variance": "ones", "count": "zeros"}

    def keras_options(self) -> dict:
        options = super().keras_options()
        options["axis"] = _axes_list(self.axis)  # Keras keeps a tuple: [] for None
        return options

    @classmethod
    def from_keras_option(cls, key: str, value):
        if key == "axis" and isinstance(value, list) and len(value) <= 1:
            return value[0] if value else None
        return value

    def statistics(self, weights: dict, sample_shape: Shape):
        """(mean, variance) as float32 arrays that broadcast against a sample (per-sample
        rank; 1 on the reduced axes)."""
        import numpy as np

        if self.mean is None:
            broadcast = [1] * len(sample_shape)
            for axis in self._kept(sample_shape):
                broadcast[axis] = sample_shape[axis]
            mean = np.asarray(weights["mean"], np.float32).reshape(broadcast)
            variance = np.asarray(weights["variance"], np.float32).reshape(broadcast)
        else:
            expanded = self._given_shape(sample_shape)
            mean = np.asarray(self.mean, np.float32).reshape(expanded)
            variance = np.asarray(self.variance, np.float32).reshape(expanded)
        return mean, variance

    def forward(self, weights, x):
        import numpy as np

        from seqcli.kernels.normalization_more import normalization_forward

        mean, variance = (np.broadcast_to(v, x.shape[1:]).reshape(-1)
                          for v in self.statistics(weights, x.shape[1:]))
        y = normalization_forward(x.reshape(len(x), -1), mean, variance, self.invert)
        return y.reshape(x.shape)

    def backward(self, weights, cache, dy, input_grad=True):
        """The statistics are constants: dx = dy / deviation (dy * deviation inverted)."""
        import numpy as np

        if not input_grad:
            return None, {}
        _, variance = self.statistics(weights, dy.shape[1:])
        deviation = np.maximum(np.sqrt(variance), np.float32(1e-7))
        dx = dy * deviation if self.invert else dy / deviation
        return np.ascontiguousarray(dx, dtype=np.float32), {}


def _flat(value):
    if isinstance(value, list):
        for item in value:
            yield from _flat(item)
    else:
        yield value


class GroupNormalization(Layer):
    """Per sample, the channels of `axis` in `groups` groups: `(x - mean) / sqrt(var +
    epsilon) * gamma + beta`, mean and variance over each group's channels and positions."""

    type: Literal["GroupNormalization"] = "GroupNormalization"
    supports_masking = True
    groups: int = 32
    """How many groups the channels split into; -1: one per channel (instance norm)."""
    axis: int = -1
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: Initializer = "zeros"
    gamma_initializer: Initializer = "ones"

    examples = (
        Example({"groups": 2}, (3, 3, 4)),
        Example({"groups": -1, "axis": 1, "center": False}, (3, 2)),
        Example({"groups": 1, "scale": False}, (5,)),
        Example({"groups": 4, "axis": -2}, (3, 8, 2), batch=3),
    )

    @field_validator("groups")
    @classmethod
    def _groups(cls, value):
        if value <= 0 and value != -1:
            raise ValueError("Received an invalid value for argument `groups`, expected a "
                             "positive integer (or `-1` for instance normalization). "
                             f"Received: groups={value}")
        return value

    @field_validator("epsilon")
    @classmethod
    def _epsilon(cls, value):
        if value < 0:
            raise ValueError(f"expected a non-negative value. Received: epsilon={value}")
        return value

    def channel_groups(self, input_shape: Shape) -> tuple[int, int, int]:
        """(per-sample axis, channels, groups) for inputs of `input_shape`."""
        axis = sample_axis(self.axis, input_shape, self)
        channels = require_known(self, input_shape[axis], f"axis {self.axis}", input_shape)
        groups = channels if self.groups == -1 else self.groups
        if channels < groups:
            raise ShapeError(f"Number of groups ({groups}) cannot be more than the number of "
                             f"channels ({channels}). Received: input_shape="
                             f"{format_shape(input_shape)}")
        if channels % groups:
            raise ShapeError(f"Number of groups ({groups}) must be a multiple of the number of "
                             f"channels ({channels}). Received: input_shape="
                             f"{format_shape(input_shape)}")
        return axis, channels, groups

    def output_shape(self, input_shape: Shape) -> Shape:
        self.channel_groups(input_shape)
        return input_shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        _, channels, _ = self.channel_groups(input_shape)
        names = (["gamma"] if self.scale else []) + (["beta"] if self.center else [])
        return {name: (channels,) for name in names}

    def weight_initializers(self) -> dict[str, str]:
        return {"gamma": self.gamma_initializer, "beta": self.beta_initializer}

    def _prepared(self, weights, x):
        """(x as (N, P, C, Q) with the channels on axis 2, gamma, beta, groups)."""
        import numpy as np

        axis, channels, groups = self.channel_groups(x.shape[1:])
        before = math.prod(x.shape[1:axis + 1])
        x4 = x.reshape(len(x), before, channels, -1)
        gamma = weights.get("gamma", np.ones(channels, np.float32))
        beta = weights.get("beta", np.zeros(channels, np.float32))
        return x4, gamma, beta, groups

    def forward(self, weights, x):
        from seqcli.kernels.normalization_more import group_norm_forward

        x4, gamma, beta, groups = self._prepared(weights, x)
        return group_norm_forward(x4, gamma, beta, groups, self.epsilon).reshape(x.shape)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_normalization_more import group_norm_backward

        x4, gamma, _, groups = self._prepared(weights, cache)
        dx, dgamma, dbeta = group_norm_backward(x4, gamma, groups, self.epsilon,
                                                dy.reshape(x4.shape))
        grads = {}
        if self.scale:
            grads["gamma"] = dgamma
        if self.center:
            grads["beta"] = dbeta
        return (dx.reshape(cache.shape) if input_grad else None), grads


class UnitNormalization(Layer):
    """`x / ||x||` over `axis` (the L2 norm; its inverse at most 1e12, Keras's epsilon)."""

    type: Literal["UnitNormalization"] = "UnitNormalization"
    supports_masking = True
    axis: int | list[int] = -1

    examples = (Example({}, (5,)), Example({"axis": [1, 2]}, (3, 2, 4)),
                Example({"axis": 1}, (3, 4)))
    keras_build_config = False

    @field_validator("axis")
    @classmethod
    def _distinct(cls, value):
        axes = _axes_list(value)
        if not axes or len(set(axes)) != len(axes):
            raise ValueError(f"expected distinct axes. Received: axis={value}")
        return value

    def _axes(self, input_shape: Shape) -> list[int]:
        return sorted(sample_axes(self, self.axis, input_shape))

    def output_shape(self, input_shape: Shape) -> Shape:
        self._axes(input_shape)
        return input_shape

    def _order(self, x) -> list[int]:
        """The axes of `x` with the normalised ones moved last."""
        axes = [a + 1 for a in self._axes(x.shape[1:])]
        return [a for a in range(x.ndim) if a not in axes] + axes

    def _rows(self, x, order):
        """(x as rows (M, K) over the normalised axes, the moved shape)."""
        import numpy as np

        moved = np.ascontiguousarray(np.transpose(x, order))
        kept = x.ndim - len(self._axes(x.shape[1:]))  # the leading axes, batch included
        return moved.reshape(math.prod(moved.shape[:kept]), -1), moved.shape

    @staticmethod
    def _unrows(rows, moved_shape, order):
        import numpy as np

        return np.ascontiguousarray(np.transpose(rows.reshape(moved_shape), np.argsort(order)))

    def forward(self, weights, x):
        from seqcli.kernels.normalization_more import unit_norm_forward

        order = self._order(x)
        rows, moved_shape = self._rows(x, order)
        return self._unrows(unit_norm_forward(rows), moved_shape, order)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_normalization_more import unit_norm_backward

        if not input_grad:
            return None, {}
        order = self._order(cache)
        rows, moved_shape = self._rows(cache, order)
        dy_rows, _ = self._rows(dy, order)
        return self._unrows(unit_norm_backward(rows, dy_rows), moved_shape, order), {}
