"""BatchNormalization (inference: moving statistics) and LayerNormalization."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import field_validator

from seqcli.layers.base import Example, Initializer, Layer, require_known
from seqcli.layers.regularizers import Constraint, Regularizer
from seqcli.shapes import Shape, ShapeError, format_shape


def sample_axis(axis: int, input_shape: Shape, layer: Layer) -> int:
    """The per-sample index (no batch axis) of a Keras axis given with the batch axis."""
    rank = len(input_shape)
    full = axis + rank + 1 if axis < 0 else axis
    if not 1 <= full <= rank:
        batch = " (axis 0 is the batch axis)" if full == 0 else ""
        raise ShapeError(f"{layer.type} axis {axis} is out of range for inputs of shape "
                         f"{format_shape(input_shape)}{batch}")
    return full - 1


def sample_axes(layer: Layer, axis: int | list[int], input_shape: Shape) -> list[int]:
    """The per-sample indices of Keras axes (an int or a list, batch axis counted), in the
    order given; ShapeError when two name the same axis."""
    found = [sample_axis(a, input_shape, layer) for a in (axis if isinstance(axis, list)
                                                          else [axis])]
    if len(set(found)) != len(found):
        raise ShapeError(f"{layer.type} axis {axis} names an axis twice for inputs of shape "
                         f"{format_shape(input_shape)}")
    return found


def _check_epsilon(value):
    if value < 0:
        raise ValueError(f"expected a non-negative value. Received: epsilon={value}")
    return value


class BatchNormalization(Layer):
    """`(x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta` along `axis`
    (inference form; the moving statistics are never trainable)."""

    type: Literal["BatchNormalization"] = "BatchNormalization"
    supports_masking = True
    takes_mask = True  # in training only: the moments over the unmasked steps
    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    synchronized: bool = False
    beta_initializer: Initializer = "zeros"
    gamma_initializer: Initializer = "ones"
    moving_mean_initializer: Initializer = "zeros"
    moving_variance_initializer: Initializer = "ones"
    beta_regularizer: Regularizer = None
    gamma_regularizer: Regularizer = None
    beta_constraint: Constraint = None
    gamma_constraint: Constraint = None

    non_trainable_weights: ClassVar[tuple[str, ...]] = ("moving_mean", "moving_variance")
    examples = (
        Example({}, (4, 4, 3)), Example({"axis": 1, "center": False}, (4, 5, 3)),
        Example({"scale": False}, (6,)), Example({"trainable": False}, (4, 3)),  # inference mode
    )
    keras_only_options = {**Layer.keras_only_options, "renorm": False, "renorm_clipping": None}
    keras_ignored_options = frozenset({"renorm_momentum"})  # only meaningful with renorm
    _epsilon = field_validator("epsilon")(classmethod(lambda cls, v: _check_epsilon(v)))

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        axis = sample_axis(self.axis, input_shape, self)
        size = require_known(self, input_shape[axis], f"axis {self.axis}", input_shape)
        names = (["gamma"] if self.scale else []) + (["beta"] if self.center else [])
        return {name: (size,) for name in names + ["moving_mean", "moving_variance"]}

    def output_shape(self, input_shape: Shape) -> Shape:
        sample_axis(self.axis, input_shape, self)
        return input_shape

    def weight_initializers(self) -> dict[str, str]:
        return {"gamma": self.gamma_initializer, "beta": self.beta_initializer,
                "moving_mean": self.moving_mean_initializer,
                "moving_variance": self.moving_variance_initializer}

    def _prepared(self, weights, x):
        """(x as (A, C, B) with the normalised axis in the middle, gamma, beta)."""
        import numpy as np

        axis = sample_axis(self.axis, x.shape[1:], self) + 1
        size = x.shape[axis]
        gamma = weights.get("gamma", np.ones(size, np.float32))
        beta = weights.get("beta", np.zeros(size, np.float32))
        return x.reshape(math.prod(x.shape[:axis]), size, -1), gamma, beta

    def forward(self, weights, x, mask=None):
        from seqcli.kernels.normalization import batch_norm_forward

        x3, gamma, beta = self._prepared(weights, x)
        y = batch_norm_forward(x3, gamma, beta, weights["moving_mean"],
                               weights["moving_variance"], self.epsilon)
        return y.reshape(x.shape)

    def forward_train(self, weights, x, rng, mask=None):
        """A frozen layer runs in inference mode (Keras 3); a trainable one normalises with
        the batch's statistics and moves its moving statistics towards them."""
        from seqcli.kernels.grad_normalization import (
            batch_norm_moving_update,
            batch_norm_train_forward,
        )

        if not self.trainable:
            return self.forward(weights, x), ("inference", x)
        if mask is not None:  # Keras takes the statistics over the unmasked steps only
            from seqcli.errors import ConfigError

            raise ConfigError(f"layer '{self.name}' (BatchNormalization): training it on "
                              "masked steps is not supported; freeze it, or drop the mask "
                              "(mask_zero / Masking) before it")
        x3, gamma, beta = self._prepared(weights, x)
        y, mean, variance, inverse = batch_norm_train_forward(x3, gamma, beta, self.epsilon)
        moving_mean, moving_variance = batch_norm_moving_update(
            weights["moving_mean"], weights["moving_variance"], mean, variance, self.momentum)
        weights["moving_mean"][...] = moving_mean
        weights["moving_variance"][...] = moving_variance
        return y.reshape(x.shape), ("batch", x, mean, inverse)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_normalization import (
            batch_norm_backward_inference,
            batch_norm_train_backward,
        )

        mode, x, *statistics = cache
        x3, gamma, _ = self._prepared(weights, x)
        dy3 = dy.reshape(x3.shape)
        if mode == "inference":  # frozen: the statistics are constants, no weight gradients
            dx, _, _ = batch_norm_backward_inference(
                x3, gamma, weights["moving_mean"], weights["moving_variance"], self.epsilon, dy3)
            return (dx.reshape(x.shape) if input_grad else None), {}
        dx, dgamma, dbeta = batch_norm_train_backward(x3, gamma, *statistics, dy3)
        grads = {}
        if self.scale:
            grads["gamma"] = dgamma
        if self.center:
            grads["beta"] = dbeta
        return dx.reshape(x.shape), grads


class LayerNormalization(Layer):
    """Per sample: `(x - mean) / sqrt(var + epsilon) * gamma + beta` over `axis`."""

    type: Literal["LayerNormalization"] = "LayerNormalization"
    supports_masking = True
    axis: int | list[int] = -1
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: Initializer = "zeros"
    gamma_initializer: Initializer = "ones"

    examples = (
        Example({}, (5,)), Example({"axis": [1, 2]}, (2, 3, 4)),
        Example({"axis": [-1, 1], "scale": False}, (2, 3, 4)),
        Example({"axis": 1, "center": False}, (3, 4)),
    )
    keras_only_options = {**Layer.keras_only_options, "rms_scaling": False}

    _epsilon = field_validator("epsilon")(classmethod(lambda cls, v: _check_epsilon(v)))

    @field_validator("axis")
    @classmethod
    def _axes(cls, value):
        axes = value if isinstance(value, list) else [value]
        if not axes or len(set(axes)) != len(axes):
            raise ValueError(f"expected distinct axes. Received: axis={value}")
        return value

    def _axes_of(self, input_shape: Shape) -> list[int]:
        return sample_axes(self, self.axis, input_shape)

    def output_shape(self, input_shape: Shape) -> Shape:
        self._axes_of(input_shape)
        return input_shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        # Keras sorts the axes as written (so [-1, 1] gives (last, first) dimensions); the
        # values are applied in the flat order of the sorted axes either way
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        self._axes_of(input_shape)
        shape = tuple(require_known(self, input_shape[sample_axis(a, input_shape, self)],
                                    f"axis {a}", input_shape) for a in sorted(axes))
        names = (["gamma"] if self.scale else []) + (["beta"] if self.center else [])
        return {name: shape for name in names}

    def weight_initializers(self) -> dict[str, str]:
        return {"gamma": self.gamma_initializer, "beta": self.beta_initializer}

    def keras_options(self) -> dict:
        options = super().keras_options()
        if isinstance(options["axis"], int):
            options["axis"] = [options["axis"]]  # as a built Keras LayerNormalization has it
        return options

    @classmethod
    def from_keras_option(cls, key: str, value):
        if key == "axis" and isinstance(value, list) and len(value) == 1:
            return value[0]  # Keras stores axis -1 as [-1] once built
        return value

    def keras_weight_shape(self, input_shape: Shape, name: str, shape: Shape) -> Shape:
        """Keras sorts axes written out of order: the shape over the sorted axes, a reshape
        of seqcli's (both apply the values in increasing-axis order)."""
        if not isinstance(self.axis, list):
            return shape
        full = (None, *input_shape)
        return tuple(full[axis] for axis in sorted(self.axis))

    def _rows(self, weights, x):
        """(x as rows (M, K) over the normalised axes, the axis order used, gamma, beta)."""
        import numpy as np

        axes = [a + 1 for a in self._axes_of(x.shape[1:])]
        ordered = sorted(axes)
        order = [a for a in range(x.ndim) if a not in axes] + ordered
        moved = np.ascontiguousarray(np.transpose(x, order))
        size = math.prod(x.shape[a] for a in ordered)
        # Keras reshapes gamma/beta to the broadcast shape, i.e. into sorted-axis order.
        gamma = weights["gamma"].reshape(-1) if "gamma" in weights else np.ones(size, np.float32)
        beta = weights["beta"].reshape(-1) if "beta" in weights else np.zeros(size, np.float32)
        return moved.reshape(-1, size), (order, moved.shape), gamma, beta

    @staticmethod
    def _unrows(rows, layout):
        import numpy as np

        order, moved_shape = layout
        return np.ascontiguousarray(np.transpose(rows.reshape(moved_shape), np.argsort(order)))

    def forward(self, weights, x):
        from seqcli.kernels.normalization import layer_norm_forward

        rows, layout, gamma, beta = self._rows(weights, x)
        return self._unrows(layer_norm_forward(rows, gamma, beta, self.epsilon), layout)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_normalization import layer_norm_backward

        rows, layout, gamma, _ = self._rows(weights, cache)
        dy_rows, _, _, _ = self._rows(weights, dy)
        dx, dgamma, dbeta = layer_norm_backward(rows, gamma, self.epsilon, dy_rows)
        grads = {}
        if self.scale:
            grads["gamma"] = dgamma.reshape(weights["gamma"].shape)
        if self.center:
            grads["beta"] = dbeta.reshape(weights["beta"].shape)
        return (self._unrows(dx, layout) if input_grad else None), grads
