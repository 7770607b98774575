"""Conv1D, Conv2D, DepthwiseConv2D and SeparableConv2D (channels-last, Keras 3 semantics)."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, model_validator

from seqcli.activations import ACTIVATIONS, activation_code
from seqcli.layers.base import (
    Activation,
    Count,
    DataFormat,
    Example,
    Initializer,
    IntTuple,
    Layer,
    Padding,
    post_activation,
    require_known,
    require_rank,
)
from seqcli.layers.regularizers import Constraint, Regularizer
from seqcli.shapes import Shape, ShapeError, conv_output_length, format_shape, paddings


def _check_padding_1d(value):
    if not isinstance(value, str) or value.lower() not in ("valid", "same", "causal"):
        raise ValueError(f"expected 'valid', 'same' or 'causal'. Received: padding={value!r}")
    return value.lower()


class _Windowed(Layer):
    """Shared rules of the layers that slide a window over the spatial axes."""

    rank: ClassVar[int] = 2
    kernel_size: IntTuple(2)
    strides: IntTuple(2) = (1, 1)
    padding: Padding = "valid"
    dilation_rate: IntTuple(2) = (1, 1)
    data_format: DataFormat = "channels_last"

    def _spatial_output(self, input_shape: Shape) -> tuple:
        require_rank(self, input_shape, self.rank + 1,
                     "inputs of shape (steps, channels)" if self.rank == 1
                     else "inputs of shape (height, width, channels)")
        out = tuple(
            conv_output_length(n, k, s, self.padding, d)
            for n, k, s, d in zip(input_shape[:-1], self.kernel_size, self.strides,
                                  self.dilation_rate)
        )
        if any(n is not None and n <= 0 for n in out):
            raise ShapeError(
                f"computed output size would be zero or negative: output_shape="
                f"{format_shape(out + (self._channels_out(input_shape),))} from "
                f"input_shape={format_shape(input_shape)}, kernel_size={self.kernel_size}, "
                f"strides={self.strides}, dilation_rate={self.dilation_rate}, "
                f"padding='{self.padding}'"
            )
        return out

    def _channels_out(self, input_shape: Shape):
        raise NotImplementedError

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._spatial_output(input_shape) + (self._channels_out(input_shape),)

    def _pads(self, spatial) -> tuple:
        return paddings(spatial, self.kernel_size, self.strides, self.padding,
                        self.dilation_rate)

    def _geometry(self, x):
        """(strides, dilation, padding) of the 2-D kernel call for input batch `x`."""
        pads = self._pads(x.shape[1:-1])
        lead = (1,) * (2 - self.rank)
        return (lead + self.strides, lead + self.dilation_rate,
                ((0, 0),) * (2 - self.rank) + pads)

    def _activate_train(self, z):
        from seqcli.kernels.activations import activation_forward

        return activation_forward(z, activation_code(self.fused_activation))

    def _activation_grad(self, z, y, dy):
        from seqcli.kernels.grad_activations import activation_backward

        return activation_backward(z, y, dy, activation_code(self.fused_activation))

    def _as_2d(self, x, weights):
        """Run 1-D layers as 2-D ones with height 1."""
        if self.rank == 2:
            return x, weights
        x2 = x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])
        w2 = {k: (v.reshape((1,) + v.shape) if v.ndim == 3 else v) for k, v in weights.items()}
        return x2, w2


@post_activation
class Conv2D(_Windowed):
    """2-D convolution (cross-correlation): kernel (kh, kw, in/groups, filters), bias (filters)."""

    type: Literal["Conv2D"] = "Conv2D"
    filters: Count
    groups: Count = 1
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
        # every activation fused into the epilogue
        *(Example({"filters": 4, "kernel_size": 3, "padding": "same", "activation": name},
                  (12, 12, 2)) for name in ACTIVATIONS),
        Example({"filters": 16, "kernel_size": 3, "strides": 2}, (12, 12, 4)),  # direct
        Example({"filters": 5, "kernel_size": 2, "use_bias": False}, (6, 6, 3)),
        Example({"filters": 4, "kernel_size": 1}, (5, 5, 16)),  # pointwise: a matmul
        Example({"filters": 4, "kernel_size": 3, "groups": 2, "padding": "same"}, (6, 6, 4)),
        Example({"filters": 6, "kernel_size": 3, "dilation_rate": 2}, (9, 9, 2)),
        # Winograd: 3x3 stride 1, 16+ channels, 16+ output columns
        Example({"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
                (8, 20, 16)),
        Example({"filters": 20, "kernel_size": 3}, (10, 30, 17)),
    )

    @model_validator(mode="after")
    def _strides_with_dilation(self):
        # Keras's rule for Conv1D/Conv2D (its depthwise and separable layers allow both)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        return self

    @model_validator(mode="after")
    def _filters_divisible(self):
        if self.filters % self.groups:
            raise ValueError(
                "the number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={self.groups}, filters={self.filters}"
            )
        return self

    def _input_channels(self, input_shape: Shape) -> int:
        channels = require_known(self, input_shape[-1], "channel dimension", input_shape)
        if channels % self.groups:
            raise ShapeError(
                "the number of input channels must be evenly divisible by the number of "
                f"groups. Received groups={self.groups}, but the input has {channels} channels "
                f"(input_shape={format_shape(input_shape)})"
            )
        return channels

    def _channels_out(self, input_shape: Shape):
        return self.filters

    def output_shape(self, input_shape: Shape) -> Shape:
        shape = super().output_shape(input_shape)
        self._input_channels(input_shape)
        return shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        channels = self._input_channels(input_shape)
        shapes = {"kernel": self.kernel_size + (channels // self.groups, self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def weight_initializers(self) -> dict[str, str]:
        return {"kernel": self.kernel_initializer, "bias": self.bias_initializer}

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        window = math.prod(self.kernel_size) * (input_shape[-1] // self.groups)
        return math.prod(output_shape[:-1]) * self.filters * window

    def forward(self, weights, x):
        return self._conv(weights, x, self.fused_activation)

    def _conv(self, weights, x, activation):
        from seqcli.kernels.small import small_conv2d_forward

        strides, dilation, pads = self._geometry(x)
        x2, w2 = self._as_2d(x, weights)
        args = (x2, w2["kernel"], w2.get("bias"), strides, dilation, pads, self.groups,
                activation_code(activation))
        y = small_conv2d_forward(*args)
        if y is None:
            from seqcli.kernels.conv import conv2d_forward

            y = conv2d_forward(*args)
        return y.reshape(y.shape[0], y.shape[2], y.shape[3]) if self.rank == 1 else y

    def forward_train(self, weights, x, rng):
        z = self._conv(weights, x, "linear")
        y = self._activate_train(z)
        return y, (x, z, y)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_conv import conv2d_backward

        x, z, y = cache
        dz = self._activation_grad(z, y, dy)
        strides, dilation, pads = self._geometry(x)
        x2, w2 = self._as_2d(x, weights)
        dx, dkernel, dbias = conv2d_backward(x2, w2["kernel"], strides, dilation, pads,
                                             self.groups, dz.reshape(
                                                 (dz.shape[0], 1) + dz.shape[1:])
                                             if self.rank == 1 else dz, input_grad=input_grad)
        grads = {"kernel": dkernel.reshape(weights["kernel"].shape)}
        if self.use_bias:
            grads["bias"] = dbias
        return (dx.reshape(x.shape) if dx is not None else None), grads


class Conv1D(Conv2D):
    """1-D convolution over (steps, channels): kernel (k, in/groups, filters), bias (filters)."""

    rank: ClassVar[int] = 1
    type: Literal["Conv1D"] = "Conv1D"
    kernel_size: IntTuple(1)
    strides: IntTuple(1) = (1,)
    padding: Annotated[Literal["valid", "same", "causal"],
                       BeforeValidator(_check_padding_1d)] = "valid"
    dilation_rate: IntTuple(1) = (1,)

    examples = (
        Example({"filters": 3, "kernel_size": 2}, (8, 2)),
        Example({"filters": 4, "kernel_size": 3, "padding": "causal", "dilation_rate": 2},
                (10, 3)),
        Example({"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same",
                 "use_bias": False, "activation": "tanh"}, (9, 2)),
    )


@post_activation
class DepthwiseConv2D(_Windowed):
    """Per-channel 2-D convolution: kernel (kh, kw, in, depth_multiplier), bias (in·dm);
    output channel c·dm + m."""

    type: Literal["DepthwiseConv2D"] = "DepthwiseConv2D"
    depth_multiplier: Count = 1
    activation: Activation = "linear"
    use_bias: bool = True
    depthwise_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    depthwise_regularizer: Regularizer = None
    bias_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None
    depthwise_constraint: Constraint = None
    bias_constraint: Constraint = None

    weight_options = {"depthwise": "kernel", "bias": "bias"}

    examples = (
        Example({"kernel_size": 3, "depth_multiplier": 2}, (12, 12, 2)),
        Example({"kernel_size": 3, "strides": 2, "padding": "same", "use_bias": False,
                 "activation": "relu6"}, (9, 9, 4)),
    )

    def _channels_out(self, input_shape: Shape):
        channels = input_shape[-1] if input_shape else None
        return None if channels is None else channels * self.depth_multiplier

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        channels = require_known(self, input_shape[-1], "channel dimension", input_shape)
        shapes = {"kernel": self.kernel_size + (channels, self.depth_multiplier)}
        if self.use_bias:
            shapes["bias"] = (channels * self.depth_multiplier,)
        return shapes

    def weight_initializers(self) -> dict[str, str]:
        return {"kernel": self.depthwise_initializer, "bias": self.bias_initializer}

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        return math.prod(output_shape) * math.prod(self.kernel_size)

    def forward(self, weights, x):
        return self._depthwise(weights, x, self.fused_activation)

    def _depthwise(self, weights, x, activation):
        from seqcli.kernels.conv import depthwise_conv2d_forward

        return depthwise_conv2d_forward(
            x, weights["kernel"], weights.get("bias"), self.strides, self.dilation_rate,
            self._pads(x.shape[1:-1]), activation_code(activation))

    def forward_train(self, weights, x, rng):
        z = self._depthwise(weights, x, "linear")
        y = self._activate_train(z)
        return y, (x, z, y)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_conv import depthwise_conv2d_backward

        x, z, y = cache
        dz = self._activation_grad(z, y, dy)
        dx, dkernel, dbias = depthwise_conv2d_backward(
            x, weights["kernel"], self.strides, self.dilation_rate, self._pads(x.shape[1:-1]),
            dz, input_grad=input_grad)
        grads = {"kernel": dkernel, "bias": dbias} if self.use_bias else {"kernel": dkernel}
        return dx, grads


@post_activation
class SeparableConv2D(_Windowed):
    """Depthwise then pointwise 2-D convolution: depthwise_kernel (kh, kw, in, dm),
    pointwise_kernel (1, 1, in·dm, filters), bias (filters)."""

    type: Literal["SeparableConv2D"] = "SeparableConv2D"
    filters: Count
    depth_multiplier: Count = 1
    activation: Activation = "linear"
    use_bias: bool = True
    depthwise_initializer: Initializer = "glorot_uniform"
    pointwise_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    depthwise_regularizer: Regularizer = None
    pointwise_regularizer: Regularizer = None
    bias_regularizer: Regularizer = None
    activity_regularizer: Regularizer = None
    depthwise_constraint: Constraint = None
    pointwise_constraint: Constraint = None
    bias_constraint: Constraint = None

    examples = (
        Example({"filters": 4, "kernel_size": 3}, (12, 12, 2)),
        Example({"filters": 8, "kernel_size": 3, "depth_multiplier": 2, "padding": "same",
                 "use_bias": False, "activation": "relu"}, (7, 7, 3)),
    )

    def _channels_out(self, input_shape: Shape):
        return self.filters

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        channels = require_known(self, input_shape[-1], "channel dimension", input_shape)
        middle = channels * self.depth_multiplier
        shapes = {
            "depthwise_kernel": self.kernel_size + (channels, self.depth_multiplier),
            "pointwise_kernel": (1, 1, middle, self.filters),
        }
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def weight_initializers(self) -> dict[str, str]:
        return {"depthwise_kernel": self.depthwise_initializer,
                "pointwise_kernel": self.pointwise_initializer,
                "bias": self.bias_initializer}

    def macs(self, input_shape: Shape, output_shape: Shape) -> int:
        middle = input_shape[-1] * self.depth_multiplier
        positions = math.prod(output_shape[:-1])
        return positions * middle * (math.prod(self.kernel_size) + self.filters)

    def forward(self, weights, x):
        return self._separable(weights, x, self.fused_activation)[1]

    def _separable(self, weights, x, activation):
        """(depthwise output, pointwise output with bias and `activation`)."""
        from seqcli.kernels.conv import conv2d_forward, depthwise_conv2d_forward

        middle = depthwise_conv2d_forward(
            x, weights["depthwise_kernel"], None, self.strides, self.dilation_rate,
            self._pads(x.shape[1:-1]), activation_code("linear"))
        return middle, conv2d_forward(middle, weights["pointwise_kernel"], weights.get("bias"),
                                      (1, 1), (1, 1), ((0, 0), (0, 0)), 1,
                                      activation_code(activation))

    def forward_train(self, weights, x, rng):
        middle, z = self._separable(weights, x, "linear")
        y = self._activate_train(z)
        return y, (x, middle, z, y)

    def backward(self, weights, cache, dy, input_grad=True):
        from seqcli.kernels.grad_conv import conv2d_backward, depthwise_conv2d_backward

        x, middle, z, y = cache
        dz = self._activation_grad(z, y, dy)
        dmiddle, dpointwise, dbias = conv2d_backward(
            middle, weights["pointwise_kernel"], (1, 1), (1, 1), ((0, 0), (0, 0)), 1, dz)
        dx, ddepthwise, _ = depthwise_conv2d_backward(
            x, weights["depthwise_kernel"], self.strides, self.dilation_rate,
            self._pads(x.shape[1:-1]), dmiddle, input_grad=input_grad)
        grads = {"depthwise_kernel": ddepthwise, "pointwise_kernel": dpointwise}
        if self.use_bias:
            grads["bias"] = dbias
        return dx, grads
