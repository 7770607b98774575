"""Max and average pooling, windowed (1D/2D) and global (1D/2D)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from seqcli.layers.base import DataFormat, Example, IntTuple, Layer, Padding, require_rank
from seqcli.shapes import Shape, ShapeError, conv_output_length, format_shape, paddings


class _Pooling(Layer):
    """A window of `pool_size` moved by `strides` (default: the pool size)."""

    rank: ClassVar[int] = 2
    mode: ClassVar[str] = "max"
    pool_size: IntTuple(2) = (2, 2)
    strides: IntTuple(2) | None = None
    padding: Padding = "valid"
    data_format: DataFormat = "channels_last"

    keras_build_config = False

    @model_validator(mode="after")
    def _default_strides(self):
        if self.strides is None:
            self.strides = self.pool_size
        return self

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, self.rank + 1,
                     "inputs of shape (steps, channels)" if self.rank == 1
                     else "inputs of shape (height, width, channels)")
        out = tuple(conv_output_length(n, k, s, self.padding)
                    for n, k, s in zip(input_shape[:-1], self.pool_size, self.strides))
        if any(n is not None and n <= 0 for n in out):
            raise ShapeError(
                f"computed output size would be zero or negative: the pooling window "
                f"pool_size={self.pool_size} does not fit input_shape="
                f"{format_shape(input_shape)} with padding='{self.padding}'"
            )
        return out + (input_shape[-1],)

    def _geometry(self, x):
        """(input as 4-D, pool, strides, padding) of the 2-D kernel call for batch `x`."""
        pads = paddings(x.shape[1:-1], self.pool_size, self.strides, self.padding,
                        (1,) * self.rank)
        if self.rank == 2:
            return x, self.pool_size, self.strides, pads
        return (x.reshape(x.shape[0], 1, x.shape[1], x.shape[2]), (1,) + self.pool_size,
                (1,) + self.strides, ((0, 0),) + pads)

    def forward(self, weights, x):
        from seqcli.kernels.small import small_pool2d_forward

        geometry = self._geometry(x)
        y = small_pool2d_forward(*geometry, self.mode)
        if y is None:
            from seqcli.kernels.pooling import avg_pool2d_forward, max_pool2d_forward

            kernel = max_pool2d_forward if self.mode == "max" else avg_pool2d_forward
            y = kernel(*geometry)
        return self._unflatten(y)

    def _unflatten(self, y):
        """The 2-D kernel's (N, 1, OW, C) output as (N, OW, C) for 1-D pooling."""
        return y.reshape(y.shape[0], y.shape[2], y.shape[3]) if self.rank == 1 else y

    def forward_train(self, weights, x, rng):
        """The forward; the cache is (x, each window's argmax as max pooling routes dy)."""
        if self.mode != "max":
            return self.forward(weights, x), (x, None)
        from seqcli.kernels.pooling import max_pool2d_forward

        y, argmax = max_pool2d_forward(*self._geometry(x), argmax=True)
        return self._unflatten(y), (x, argmax)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_pooling import avg_pool2d_backward, max_pool2d_backward

        if not input_grad:
            return None, {}
        x, argmax = cache
        x4, pool, strides, pads = self._geometry(x)
        dy4 = dy.reshape((dy.shape[0], 1) + dy.shape[1:]) if self.rank == 1 else dy
        if self.mode == "max":
            dx = max_pool2d_backward(x4, pool, strides, pads, dy4, argmax)
        else:
            dx = avg_pool2d_backward(x4.shape, pool, strides, pads, dy4)
        return dx.reshape(x.shape), {}


class MaxPooling2D(_Pooling):
    """The maximum over each window; padded cells are ignored."""

    type: Literal["MaxPooling2D"] = "MaxPooling2D"

    examples = (Example({}, (6, 6, 3)), Example({"pool_size": 3, "strides": 2, "padding": "same"},
                                                (7, 6, 2)))


class AveragePooling2D(_Pooling):
    """The mean over each window's real (unpadded) cells."""

    mode: ClassVar[str] = "average"
    type: Literal["AveragePooling2D"] = "AveragePooling2D"

    examples = (Example({}, (6, 6, 3)), Example({"pool_size": 3, "strides": 2, "padding": "same"},
                                                (7, 6, 2)))


class MaxPooling1D(_Pooling):
    """The maximum over each window of steps; padded cells are ignored."""

    rank: ClassVar[int] = 1
    type: Literal["MaxPooling1D"] = "MaxPooling1D"
    pool_size: IntTuple(1) = (2,)
    strides: IntTuple(1) | None = None

    examples = (Example({}, (8, 2)), Example({"pool_size": 3, "strides": 2, "padding": "same"},
                                             (9, 3)))


class AveragePooling1D(_Pooling):
    """The mean over each window's real (unpadded) steps."""

    rank: ClassVar[int] = 1
    mode: ClassVar[str] = "average"
    type: Literal["AveragePooling1D"] = "AveragePooling1D"
    pool_size: IntTuple(1) = (2,)
    strides: IntTuple(1) | None = None

    examples = (Example({}, (8, 2)), Example({"pool_size": 3, "strides": 2, "padding": "same"},
                                             (9, 3)))


class _GlobalPooling(Layer):
    """Reduces all spatial axes, keeping the channels (and the axes, with keepdims)."""

    rank: ClassVar[int] = 2
    mode: ClassVar[str] = "max"
    keepdims: bool = False
    data_format: DataFormat = "channels_last"

    keras_build_config = False

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, self.rank + 1,
                     "inputs of shape (steps, channels)" if self.rank == 1
                     else "inputs of shape (height, width, channels)")
        if self.keepdims:
            return (1,) * self.rank + (input_shape[-1],)
        return (input_shape[-1],)

    def forward(self, weights, x):
        from seqcli.kernels.small import small_global_pool_forward

        x3 = x.reshape(x.shape[0], -1, x.shape[-1])
        y = small_global_pool_forward(x3, self.mode)
        if y is None:
            from seqcli.kernels.pooling import global_avg_pool_forward, global_max_pool_forward

            kernel = global_max_pool_forward if self.mode == "max" else global_avg_pool_forward
            y = kernel(x3)
        return y.reshape((x.shape[0],) + self.output_shape(x.shape[1:]))

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_pooling import global_avg_pool_backward, global_max_pool_backward

        if not input_grad:
            return None, {}
        x3 = cache.reshape(cache.shape[0], -1, cache.shape[-1])
        dy2 = dy.reshape(dy.shape[0], dy.shape[-1])
        if self.mode == "max":
            dx = global_max_pool_backward(x3, dy2)
        else:
            dx = global_avg_pool_backward(x3.shape, dy2)
        return dx.reshape(cache.shape), {}


class GlobalMaxPooling2D(_GlobalPooling):
    """The maximum over height and width."""

    type: Literal["GlobalMaxPooling2D"] = "GlobalMaxPooling2D"

    examples = (Example({}, (4, 5, 3)), Example({"keepdims": True}, (4, 5, 3)))


class GlobalAveragePooling2D(_GlobalPooling):
    """The mean over height and width."""

    mode: ClassVar[str] = "average"
    type: Literal["GlobalAveragePooling2D"] = "GlobalAveragePooling2D"

    examples = (Example({}, (4, 5, 3)), Example({"keepdims": True}, (4, 5, 3)))


class GlobalMaxPooling1D(_GlobalPooling):
    """The maximum over steps."""

    rank: ClassVar[int] = 1
    type: Literal["GlobalMaxPooling1D"] = "GlobalMaxPooling1D"

    examples = (Example({}, (7, 3)), Example({"keepdims": True}, (7, 3)))


class GlobalAveragePooling1D(_GlobalPooling):
    """The mean over steps."""

    rank: ClassVar[int] = 1
    mode: ClassVar[str] = "average"
    type: Literal["GlobalAveragePooling1D"] = "GlobalAveragePooling1D"
    supports_masking = True
    takes_mask = True

    examples = (Example({}, (7, 3)), Example({"keepdims": True}, (7, 3)))

    def output_masked(self, input_masked: bool) -> bool:
        return False

    def compute_mask(self, x, mask):
        return None

    def forward(self, weights, x, mask=None):
        """The mean over the steps the mask keeps (Keras: 0/0 is NaN for a fully masked
        sample)."""
        if mask is None:
            return super().forward(weights, x)
        import numpy as np

        keep = mask[:, :, None].astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(keep > 0, x, 0).sum(axis=1) / keep.sum(axis=1)
        y = y.astype(np.float32)
        return y[:, None, :] if self.keepdims else y

    def forward_train(self, weights, x, rng, mask=None):
        return self.forward(weights, x, mask), (x, mask)

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        x, mask = cache
        if mask is None:
            return super().backward(weights, x, dy, input_grad)
        if not input_grad:
            return None, {}
        keep = mask[:, :, None].astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            dx = keep * (dy.reshape(len(x), 1, -1) / keep.sum(axis=1, keepdims=True))
        return dx.astype(np.float32), {}
