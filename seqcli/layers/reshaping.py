"""ZeroPadding2D, UpSampling2D, RepeatVector and Permute."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, field_validator

from seqcli.layers.base import (
    MAX_SIZE,
    Count,
    DataFormat,
    Example,
    IntTuple,
    Layer,
    require_rank,
)
from seqcli.shapes import Shape, ShapeError, format_shape


def _check_zero_padding(value):
    """1 → ((1, 1), (1, 1)); [h, w] → ((h, h), (w, w)); [[t, b], [l, r]] as given."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_pair(v):
        return isinstance(v, list) and len(v) == 2 and all(is_int(u) for u in v)

    if is_int(value):
        pads = ((value, value), (value, value))
    elif isinstance(value, list) and len(value) == 2 and all(
            is_int(v) or is_pair(v) for v in value):  # Keras takes [1, [2, 3]] too
        pads = tuple((v, v) if is_int(v) else tuple(v) for v in value)
    else:
        raise ValueError("expected an int, [height, width] or [[top, bottom], [left, right]]. "
                         f"Received: padding={value!r}")
    if any(p < 0 or p > MAX_SIZE for pair in pads for p in pair):
        raise ValueError(f"padding must be between 0 and {MAX_SIZE}. Received: padding={value!r}")
    return pads


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image."""

    type: Literal["ZeroPadding2D"] = "ZeroPadding2D"
    padding: Annotated[tuple, BeforeValidator(_check_zero_padding)] = ((1, 1), (1, 1))
    data_format: DataFormat = "channels_last"

    examples = (Example({}, (3, 4, 2)), Example({"padding": [[0, 1], [2, 3]]}, (3, 4, 2)))

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 3, "inputs of shape (height, width, channels)")
        (top, bottom), (left, right) = self.padding
        height, width, channels = input_shape
        return (None if height is None else height + top + bottom,
                None if width is None else width + left + right, channels)

    def forward(self, weights, x):
        from seqcli.kernels.reshaping import zero_pad2d_forward

        return zero_pad2d_forward(x, self.padding)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_reshaping import zero_pad2d_backward

        return (zero_pad2d_backward(self.padding, dy) if input_grad else None), {}


class UpSampling2D(Layer):
    """Repeats each row `size[0]` times and each column `size[1]` times (nearest), or resizes
    to (height · size[0], width · size[1]) with another interpolation (jax.image.resize, as
    Keras 3's `ops.image.resize` on JAX)."""

    type: Literal["UpSampling2D"] = "UpSampling2D"
    size: IntTuple(2) = (2, 2)
    interpolation: str = "nearest"
    """nearest, bilinear, bicubic, lanczos3 or lanczos5."""
    data_format: DataFormat = "channels_last"

    examples = (Example({}, (3, 4, 2)), Example({"size": [2, 3]}, (3, 4, 2)),
                Example({"size": [2, 3], "interpolation": "bilinear"}, (3, 4, 2)))

    @field_validator("interpolation", mode="before")
    @classmethod
    def _known_interpolation(cls, value):
        from seqcli.layers.shaping import check_interpolation

        if not isinstance(value, str):
            raise ValueError(f"expected a string. Received: interpolation={value!r}")
        return check_interpolation(value.lower())  # Keras lowers it

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 3, "inputs of shape (height, width, channels)")
        height, width, channels = input_shape
        return (None if height is None else height * self.size[0],
                None if width is None else width * self.size[1], channels)

    def resize_plan(self, input_shape: Shape):
        """(rows, cols, None): the resize matrices of a non-nearest interpolation."""
        from seqcli.layers.shaping import resize_matrices

        height, width = int(input_shape[0]), int(input_shape[1])
        return resize_matrices(height, width, height * self.size[0], width * self.size[1],
                               self.interpolation, False, "stretch", 0.0)

    def forward(self, weights, x):
        if self.interpolation != "nearest":
            from seqcli.kernels.resize import separable_resize

            rows, cols, _ = self.resize_plan(x.shape[1:])
            return separable_resize(x, rows, cols)
        from seqcli.kernels.reshaping import upsample2d_nearest_forward

        return upsample2d_nearest_forward(x, self.size)

    def backward(self, weights, cache, dy, input_grad=True):
        if not input_grad:
            return None, {}
        if self.interpolation != "nearest":
            from seqcli.kernels.resize import separable_resize

            rows, cols, _ = self.resize_plan(cache.shape[1:])
            return separable_resize(dy, rows.T, cols.T), {}  # the transposed linear map
        from seqcli.kernels.grad_reshaping import upsample2d_nearest_backward

        return upsample2d_nearest_backward(self.size, dy), {}


class RepeatVector(Layer):
    """Repeats each sample's vector `n` times: (features,) → (n, features)."""

    type: Literal["RepeatVector"] = "RepeatVector"
    n: Count
    """How many times to repeat."""

    examples = (Example({"n": 3}, (4,)),)

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 1, "inputs of shape (features,)")
        return (self.n, input_shape[0])

    def forward(self, weights, x):
        import numpy as np

        return np.ascontiguousarray(np.broadcast_to(x[:, None, :], (len(x), self.n, x.shape[1])))

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        return (np.ascontiguousarray(dy.sum(axis=1, dtype=np.float32)) if input_grad
                else None), {}


class Permute(Layer):
    """Reorders each sample's axes: output axis i is input axis `dims[i]` (counted from 1, the
    batch axis left out)."""

    type: Literal["Permute"] = "Permute"
    dims: list[int]
    """A permutation of 1, …, rank."""

    examples = (Example({"dims": [2, 1]}, (3, 4)), Example({"dims": [3, 1, 2]}, (2, 3, 4)))

    @field_validator("dims")
    @classmethod
    def _permutation(cls, value):
        if not value or sorted(value) != list(range(1, len(value) + 1)):
            raise ValueError("the set of indices in `dims` must be consecutive and start from 1. "
                             f"Received: dims={value}")
        return value

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != len(self.dims):
            raise ShapeError(f"Permute with dims={self.dims} expects inputs with {len(self.dims)} "
                             f"axes besides the batch axis. Received: input_shape="
                             f"{format_shape(input_shape)}")
        return tuple(input_shape[d - 1] for d in self.dims)

    def forward(self, weights, x):
        import numpy as np

        return np.ascontiguousarray(np.transpose(x, (0, *self.dims)))

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        if not input_grad:
            return None, {}
        return np.ascontiguousarray(np.transpose(dy, np.argsort((0, *self.dims)))), {}
