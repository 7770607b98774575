"""MaxPooling3D, AveragePooling3D, GlobalMaxPooling3D and GlobalAveragePooling3D.

A 3-D window is separable: the max (or the mean over real cells, whose count is the product of
the per-axis counts) over (depth, height, width) is the max (mean) over depth of the max (mean)
over (height, width). So the 2-D pooling kernels run twice: on each depth slice, then along
depth. The gradient routes the same way, to the first maximum in (depth, height, width) order,
as jax.grad of Keras's pooling does."""

from __future__ import annotations

from typing import ClassVar, Literal

from seqcli.layers.base import Example, IntTuple, require_rank
from seqcli.layers.pooling import _GlobalPooling, _Pooling
from seqcli.shapes import Shape, paddings

_SPATIAL = "inputs of shape (depth, height, width, channels)"


class _Pooling3D(_Pooling):
    """A (depth, height, width) window of `pool_size` moved by `strides`."""

    rank: ClassVar[int] = 3
    pool_size: IntTuple(3) = (2, 2, 2)
    strides: IntTuple(3) | None = None

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 4, _SPATIAL)
        return super().output_shape(input_shape)

    def _stages(self, shape):
        """The two 2-D poolings: (pool, strides, padding) over (H, W) of the (N·D, H, W, C)
        slices, then over depth of (N, D, 1, OH·OW·C)."""
        pads = paddings(shape[1:-1], self.pool_size, self.strides, self.padding, (1, 1, 1))
        return ((self.pool_size[1:], self.strides[1:], pads[1:]),
                ((self.pool_size[0], 1), (self.strides[0], 1), (pads[0], (0, 0))))

    def _kernels(self):
        if self.mode == "max":
            from seqcli.kernels.pooling import max_pool2d_forward

            return max_pool2d_forward
        from seqcli.kernels.pooling import avg_pool2d_forward

        return avg_pool2d_forward

    def _run(self, x):
        """(output, the depth slices pooled over height and width as (N, D, 1, OH·OW·C))."""
        n, d, h, w, c = x.shape
        plane, depth = self._stages(x.shape)
        kernel = self._kernels()
        mid = kernel(x.reshape(n * d, h, w, c), *plane)
        mid = mid.reshape(n, d, 1, -1)
        y = kernel(mid, *depth)
        return y.reshape((n,) + self.output_shape(x.shape[1:])), mid

    def forward(self, weights, x):
        return self._run(x)[0]

    def forward_train(self, weights, x, rng):
        y, mid = self._run(x)
        return y, (x, mid)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_pooling import avg_pool2d_backward, max_pool2d_backward

        if not input_grad:
            return None, {}
        x, mid = cache
        n, d, h, w, c = x.shape
        plane, depth = self._stages(x.shape)
        dy4 = dy.reshape(n, dy.shape[1], 1, -1)
        planes = x.reshape(n * d, h, w, c)
        if self.mode == "max":
            dmid = max_pool2d_backward(mid, *depth, dy4)
            dx = max_pool2d_backward(planes, *plane, dmid.reshape(n * d, *dy.shape[2:]))
        else:
            dmid = avg_pool2d_backward(mid.shape, *depth, dy4)
            dx = avg_pool2d_backward(planes.shape, *plane, dmid.reshape(n * d, *dy.shape[2:]))
        return dx.reshape(x.shape), {}


class MaxPooling3D(_Pooling3D):
    """The maximum over each (depth, height, width) window; padded cells are ignored."""

    type: Literal["MaxPooling3D"] = "MaxPooling3D"

    examples = (Example({}, (4, 4, 5, 2)),
                Example({"pool_size": [3, 2, 3], "strides": [2, 1, 2], "padding": "same"},
                        (5, 4, 5, 3)))


class AveragePooling3D(_Pooling3D):
    """The mean over each window's real (unpadded) cells."""

    mode: ClassVar[str] = "average"
    type: Literal["AveragePooling3D"] = "AveragePooling3D"
    pool_size: IntTuple(3)  # required: Keras 3's AveragePooling3D has no default

    examples = (Example({"pool_size": 2}, (4, 4, 5, 2)),
                Example({"pool_size": 3, "strides": 2, "padding": "same"}, (5, 4, 5, 3)))


class _GlobalPooling3D(_GlobalPooling):
    rank: ClassVar[int] = 3

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, 4, _SPATIAL)
        return super().output_shape(input_shape)


class GlobalMaxPooling3D(_GlobalPooling3D):
    """The maximum over depth, height and width."""

    type: Literal["GlobalMaxPooling3D"] = "GlobalMaxPooling3D"

    examples = (Example({}, (3, 4, 2, 3)), Example({"keepdims": True}, (3, 4, 2, 3)))


class GlobalAveragePooling3D(_GlobalPooling3D):
    """The mean over depth, height and width."""

    mode: ClassVar[str] = "average"
    type: Literal["GlobalAveragePooling3D"] = "GlobalAveragePooling3D"

    examples = (Example({}, (3, 4, 2, 3)), Example({"keepdims": True}, (3, 4, 2, 3)))
