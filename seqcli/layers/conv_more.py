"""Conv3D, Conv1DTranspose, Conv2DTranspose, Conv3DTranspose, DepthwiseConv1D and
SeparableConv1D (channels-last, Keras 3 semantics).

A transposed convolution is the input gradient of a convolution with the same kernel: it runs
as `conv_transpose_forward` (GEMM + col2im), and trains with the convolution's own kernels
(its input gradient is a convolution of dy, its kernel gradient that convolution's kernel
gradient with x as the upstream gradient). 1-D and 2-D layers run as 3-D (transposed) or 2-D
(depthwise, separable) ones with leading axes of size 1."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import model_validator

from seqcli.activations import activation_code
from seqcli.layers.base import (
    Activation,
    Count,
    Example,
    Initializer,
    IntTuple,
    post_activation,
    require_known,
    require_rank,
)
from seqcli.layers.conv import Conv2D, DepthwiseConv2D, SeparableConv2D, _Windowed
from seqcli.layers.regularizers import Constraint, Regularizer
from seqcli.shapes import Shape, ShapeError, effective_kernel, format_shape, paddings

_SPATIAL = {1: "inputs of shape (steps, channels)",
            2: "inputs of shape (height, width, channels)",
            3: "inputs of shape (depth, height, width, channels)"}


def conv_transpose_length(length, kernel: int, stride: int, padding: str,
                          output_padding: int | None, dilation: int = 1):
    """(output length, cells cropped before) of a transposed convolution along one axis, as
    Keras 3 (its JAX backend's padding): valid: (n-1)·s + k' + op, op defaulting to
    max(k', s) - k'; same: n·s, or (n-1)·s + k' % 2 + op when op is given (k' the dilated
    kernel). The output is the full scatter (length (n-1)·s + k') cut at `crop` cells."""
    k = effective_kernel(kernel, dilation)
    if padding == "valid":
        extra = max(k, stride) - k if output_padding is None else output_padding
        before = k - 1
        out = None if length is None else (length - 1) * stride + k + extra
    else:
        if output_padding is None:
            total = stride + k - 2
            out = None if length is None else length * stride
        else:
            total = k + k % 2 - 2 + output_padding
            out = None if length is None else (length - 1) * stride + k % 2 + output_padding
        before = min(total // 2 + total % 2, k - 1)
    return out, k - 1 - before


def _lead(values: tuple, fill, rank: int) -> tuple:
    """`values` of a rank-`rank` layer as three axes: leading axes of size `fill`."""
    return (fill,) * (3 - rank) + tuple(values)


# ----------------------------------------------------------------------------- Conv3D


@post_activation
class Conv3D(Conv2D):
    """3-D convolution over (depth, height, width, channels): kernel (kd, kh, kw, in/groups,
    filters), bias (filters)."""

    rank: ClassVar[int] = 3
    type: Literal["Conv3D"] = "Conv3D"
    kernel_size: IntTuple(3)
    strides: IntTuple(3) = (1, 1, 1)
    dilation_rate: IntTuple(3) = (1, 1, 1)

    examples = (
        Example({"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
                (4, 5, 6, 2)),
        Example({"filters": 6, "kernel_size": [2, 3, 2], "strides": [1, 2, 2], "groups": 2,
                 "use_bias": False}, (5, 7, 6, 4)),
        Example({"filters": 3, "kernel_size": 2, "dilation_rate": [2, 1, 2],
                 "activation": "softmax"}, (5, 4, 5, 3)),
    )

    def _spatial_output(self, input_shape: Shape) -> tuple:
        require_rank(self, input_shape, 4, _SPATIAL[3])
        return super()._spatial_output(input_shape)

    def _pads3(self, x):
        return paddings(x.shape[1:-1], self.kernel_size, self.strides, self.padding,
                        self.dilation_rate)

    def _conv(self, weights, x, activation):
        from seqcli.kernels.conv3d import conv3d_forward

        return conv3d_forward(x, weights["kernel"], weights.get("bias"), self.strides,
                              self.dilation_rate, self._pads3(x), self.groups,
                              activation_code(activation))

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_conv3d import conv3d_backward

        x, z, y = cache
        dz = self._activation_grad(z, y, dy)
        dx, dkernel, dbias = conv3d_backward(x, weights["kernel"], self.strides,
                                             self.dilation_rate, self._pads3(x), self.groups,
                                             dz, input_grad=input_grad)
        grads = {"kernel": dkernel}
        if self.use_bias:
            grads["bias"] = dbias
        return dx, grads


# ----------------------------------------------------------------------------- transposed


@post_activation
class _ConvTranspose(_Windowed):
    """Transposed convolution: kernel (k…, filters, in), bias (filters)."""

    filters: Count
    output_padding: IntTuple(2, minimum=0) | None = None
    activation: Activation = "linear"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer = None
    bias_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None
    kernel_constraint: Constraint = None
    bias_constraint: Constraint = None

    @model_validator(mode="after")
    def _keras_rules(self):
        if self.output_padding is not None:
            for axis, (extra, stride) in enumerate(zip(self.output_padding, self.strides)):
                if extra >= stride:
                    raise ValueError(
                        "`output_padding` must be strictly less than `strides` for all "
                        f"dimensions. At dimension {axis}, `output_padding` is {extra} but "
                        f"`strides` is {stride}. Received: output_padding="
                        f"{self.output_padding}, strides={self.strides}"
                    )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        return self

    def _lengths(self, spatial) -> list[tuple]:
        """(output length, crop before) per spatial axis."""
        extras = self.output_padding or (None,) * self.rank
        return [conv_transpose_length(n, k, s, self.padding, e, d)
                for n, k, s, e, d in zip(spatial, self.kernel_size, self.strides, extras,
                                         self.dilation_rate)]

    def output_shape(self, input_shape: Shape) -> Shape:
        require_rank(self, input_shape, self.rank + 1, _SPATIAL[self.rank])
        out = tuple(length for length, _ in self._lengths(input_shape[:-1]))
        if any(n is not None and n <= 0 for n in out):
            raise ShapeError(
                f"computed output size would be zero or negative: output_shape="
                f"{format_shape(out + (self.filters,))} from input_shape="
                f"{format_shape(input_shape)}, kernel_size={self.kernel_size}, "
                f"strides={self.strides}, output_padding={self.output_padding}, "
                f"padding='{self.padding}'"
            )
        return out + (self.filters,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        channels = require_known(self, input_shape[-1], "channel dimension", input_shape)
        shapes = {"kernel": self.kernel_size + (self.filters, channels)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def weight_initializers(self) -> dict[str, str]:
        return {"kernel": self.kernel_initializer, "bias": self.bias_initializer}

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        return (math.prod(input_shape) * math.prod(self.kernel_size) * self.filters)

    # -- execution: every rank as 3-D, (N, D, H, W, C)

    def _as_3d(self, x):
        return x.reshape((x.shape[0],) + _lead(x.shape[1:-1], 1, self.rank) + (x.shape[-1],))

    def _kernel_3d(self, kernel):
        return kernel.reshape(_lead(kernel.shape[:-2], 1, self.rank) + kernel.shape[-2:])

    def forward(self, weights, x):
        return self._transpose(weights, x, self.fused_activation)

    def _transpose(self, weights, x, activation):
        from seqcli.kernels.conv_transpose import conv_transpose_forward

        lengths = self._lengths(x.shape[1:-1])
        y = conv_transpose_forward(
            self._as_3d(x), self._kernel_3d(weights["kernel"]), weights.get("bias"),
            _lead(self.strides, 1, self.rank), _lead(self.dilation_rate, 1, self.rank),
            _lead([crop for _, crop in lengths], 0, self.rank),
            _lead([length for length, _ in lengths], 1, self.rank),
            activation_code(activation))
        return y.reshape((x.shape[0],) + tuple(n for n, _ in lengths) + (self.filters,))

    def forward_train(self, weights, x, rng):
        z = self._transpose(weights, x, "linear")
        y = self._activate_train(z)
        return y, (x, z, y)

    def _adjoint(self, x, dz):
        """dz cut to the cells a window reads, and the paddings of the convolution (dz in,
        x's grid out) whose input gradient this layer computes."""
        pads, keep = [], []
        for n, (out, crop), k, s, d in zip(x.shape[1:-1], self._lengths(x.shape[1:-1]),
                                          self.kernel_size, self.strides, self.dilation_rate):
            after = (n - 1) * s + effective_kernel(k, d) - out - crop
            keep.append(out + min(after, 0))  # cells past every window hold only the bias
            pads.append((crop, max(after, 0)))
        dz = dz[(slice(None), *(slice(0, n) for n in keep))]
        return dz, tuple(pads)

    def backward(self, weights, cache, dy, input_grad=True):
        import numpy as np

        x, z, y = cache
        dz = self._activation_grad(z, y, dy)
        dbias = dz.reshape(-1, self.filters).sum(axis=0, dtype=np.float64).astype(np.float32)
        dz_used, pads = self._adjoint(x, dz)
        kernel = weights["kernel"]
        if self.rank == 3:
            from seqcli.kernels.conv3d import conv3d_forward
            from seqcli.kernels.grad_conv3d import conv3d_backward

            forward, backward = conv3d_forward, conv3d_backward
            dz4, x4, kernel4 = dz_used, x, kernel
            strides, dilation = self.strides, self.dilation_rate
        else:
            from seqcli.kernels.conv import conv2d_forward
            from seqcli.kernels.grad_conv import conv2d_backward

            forward, backward = conv2d_forward, conv2d_backward
            lead = (1,) * (2 - self.rank)

            def four(a):
                return a.reshape((a.shape[0],) + lead + a.shape[1:])

            dz4, x4 = four(dz_used), four(x)
            kernel4 = kernel.reshape(lead + kernel.shape)
            strides, dilation = lead + self.strides, lead + self.dilation_rate
            pads = ((0, 0),) * (2 - self.rank) + pads
        # <dy, T(x; k)> = <C(dy; k), x>: T's input gradient is C of dy, its kernel gradient
        # C's kernel gradient at input dy with upstream gradient x
        _, dkernel, _ = backward(dz4, kernel4, strides, dilation, pads, 1, x4, input_grad=False)
        dx = None
        if input_grad:
            dx = forward(dz4, kernel4, None, strides, dilation, pads, 1,
                         activation_code("linear")).reshape(x.shape)
        grads = {"kernel": dkernel.reshape(kernel.shape)}
        if self.use_bias:
            grads["bias"] = dbias
        return dx, grads


class Conv2DTranspose(_ConvTranspose):
    """Transposed 2-D convolution: kernel (kh, kw, filters, in), bias (filters)."""

    type: Literal["Conv2DTranspose"] = "Conv2DTranspose"

    examples = (
        Example({"filters": 4, "kernel_size": 4, "strides": 2, "padding": "same",
                 "activation": "leaky_relu"}, (5, 5, 3)),
        Example({"filters": 3, "kernel_size": 3, "strides": [2, 3], "output_padding": [1, 0],
                 "use_bias": False, "activation": "tanh"}, (4, 3, 2), batch=3),
        Example({"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
                (5, 4, 3)),
        Example({"filters": 2, "kernel_size": 1, "strides": 3}, (3, 3, 2)),
    )


class Conv1DTranspose(_ConvTranspose):
    """Transposed 1-D convolution: kernel (k, filters, in), bias (filters)."""

    rank: ClassVar[int] = 1
    type: Literal["Conv1DTranspose"] = "Conv1DTranspose"
    kernel_size: IntTuple(1)
    strides: IntTuple(1) = (1,)
    dilation_rate: IntTuple(1) = (1,)
    output_padding: IntTuple(1, minimum=0) | None = None

    examples = (
        Example({"filters": 3, "kernel_size": 7, "strides": 2, "padding": "same",
                 "activation": "relu"}, (6, 4)),
        Example({"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 1},
                (5, 2)),
    )


class Conv3DTranspose(_ConvTranspose):
    """Transposed 3-D convolution: kernel (kd, kh, kw, filters, in), bias (filters)."""

    rank: ClassVar[int] = 3
    type: Literal["Conv3DTranspose"] = "Conv3DTranspose"
    kernel_size: IntTuple(3)
    strides: IntTuple(3) = (1, 1, 1)
    dilation_rate: IntTuple(3) = (1, 1, 1)
    output_padding: IntTuple(3, minimum=0) | None = None

    examples = (
        Example({"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same",
                 "activation": "sigmoid"}, (3, 4, 3, 2)),
        Example({"filters": 2, "kernel_size": [2, 3, 2], "strides": [1, 2, 2],
                 "output_padding": [0, 1, 0]}, (3, 3, 2, 3)),
    )


# ----------------------------------------------------------------------------- 1-D depthwise


class _AsTwoD:
    """A 1-D layer run by its 2-D twin on a height-1 image (the kernels are the 2-D ones)."""

    def _twin(self):
        # the 2-D twin applies the activation its kernels fuse; an activation layer runs after
        # this layer (post_activation), on the 1-D output its weights are shaped for
        settings = self.model_dump(exclude={"type", "name", "input_shape", "dtype"})
        settings["activation"] = self.fused_activation
        for key in ("kernel_size", "strides", "dilation_rate"):
            settings[key] = (1,) + tuple(settings[key])
        return self.twin_class.model_validate(settings)

    @staticmethod
    def _image(x):
        return x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])

    @staticmethod
    def _weights_2d(weights):
        return {k: (v.reshape((1,) + v.shape) if v.ndim == 3 else v) for k, v in weights.items()}

    def forward(self, weights, x):
        y = self._twin().forward(self._weights_2d(weights), self._image(x))
        return y.reshape(y.shape[0], y.shape[2], y.shape[3])

    def forward_train(self, weights, x, rng):
        y, cache = self._twin().forward_train(self._weights_2d(weights), self._image(x), rng)
        return y.reshape(y.shape[0], y.shape[2], y.shape[3]), cache

    def backward(self, weights, cache, dy, input_grad=True):
        dx, grads = self._twin().backward(self._weights_2d(weights), cache, self._image(dy),
                                          input_grad)
        grads = {k: g.reshape(weights[k].shape) for k, g in grads.items()}
        return (None if dx is None else dx.reshape(dx.shape[0], dx.shape[2], dx.shape[3])), grads


@post_activation
class DepthwiseConv1D(_AsTwoD, DepthwiseConv2D):
    """Per-channel 1-D convolution: kernel (k, in, depth_multiplier), bias (in·dm); output
    channel c·dm + m."""

    rank: ClassVar[int] = 1
    twin_class: ClassVar[type] = DepthwiseConv2D
    type: Literal["DepthwiseConv1D"] = "DepthwiseConv1D"
    kernel_size: IntTuple(1)
    strides: IntTuple(1) = (1,)
    dilation_rate: IntTuple(1) = (1,)

    examples = (
        Example({"kernel_size": 3, "depth_multiplier": 2}, (9, 3)),
        Example({"kernel_size": 3, "strides": 2, "dilation_rate": 2, "padding": "same",
                 "use_bias": False, "activation": "relu"}, (11, 2)),
    )


@post_activation
class SeparableConv1D(_AsTwoD, SeparableConv2D):
    """Depthwise then pointwise 1-D convolution: depthwise_kernel (k, in, dm),
    pointwise_kernel (1, in·dm, filters), bias (filters)."""

    rank: ClassVar[int] = 1
    twin_class: ClassVar[type] = SeparableConv2D
    type: Literal["SeparableConv1D"] = "SeparableConv1D"
    kernel_size: IntTuple(1)
    strides: IntTuple(1) = (1,)
    dilation_rate: IntTuple(1) = (1,)

    examples = (
        Example({"filters": 4, "kernel_size": 3}, (9, 2)),
        Example({"filters": 3, "kernel_size": 2, "depth_multiplier": 2, "strides": 2,
                 "padding": "same", "use_bias": False, "activation": "tanh"}, (8, 3)),
    )

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = super().param_shapes(input_shape)
        shapes["pointwise_kernel"] = shapes["pointwise_kernel"][1:]
        return shapes
