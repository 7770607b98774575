"""ONNX lowerings of the 3-D and transposed convolutions, the 1-D depthwise and separable
convolutions and the 3-D poolings: ONNX's Conv, ConvTranspose, MaxPool, AveragePool and
GlobalMax/AveragePool on channels-first tensors.

A transposed convolution is ONNX's ConvTranspose with explicit pads: Keras's output is the full
scatter ((n-1)·s + k' cells) cut at `crop` cells before; what it keeps past the scatter's end
(valid padding with strides larger than the kernel, or an output_padding) is ONNX's
output_padding."""

from __future__ import annotations

import numpy as np

from seqcli import layers as L  # noqa: N812
from seqcli.build import LayerInfo
from seqcli.interop.onnx_graph import (
    Graph,
    Tensor,
    bound_activation,
    exports,
    lower_activation,
    onnx_pads,
)
from seqcli.layers.conv_more import conv_transpose_length
from seqcli.shapes import effective_kernel, paddings


def _conv(graph: Graph, x: Tensor, prefix: str, kernel: np.ndarray, bias, attributes: dict,
          activation: str, op_type: str = "Conv") -> Tensor:
    """A Conv (or ConvTranspose) node on channels-first x, then `activation`."""
    x = graph.channels_first(x, prefix)
    inputs = [x.name, graph.constant(prefix + "kernel", kernel)]
    if bias is not None:
        inputs.append(graph.constant(prefix + "bias", bias))
    y = graph.op(op_type, inputs, prefix + op_type, **attributes)
    return lower_activation(graph, activation, Tensor(y, x.rank, True), prefix)


def _window(layer, input_shape) -> dict:
    """A convolution's kernel_shape, strides, dilations and (TensorFlow 'same') pads."""
    pads = paddings(input_shape[:-1], layer.kernel_size, layer.strides, layer.padding,
                    layer.dilation_rate)
    return dict(kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                dilations=list(layer.dilation_rate), pads=onnx_pads(pads))


@exports(L.Conv3D)
def _conv3d(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str) -> Tensor:
    """Conv3D: kernel (kd, kh, kw, in/groups, filters) → (filters, in/groups, kd, kh, kw)."""
    layer = info.layer
    kernel = np.transpose(weights["kernel"], (4, 3, 0, 1, 2))
    return _conv(graph, x, prefix, kernel, weights.get("bias"),
                 dict(_window(layer, info.input_shape), group=layer.groups),
                 bound_activation(layer, weights))


@exports(L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
def _conv_transpose(graph: Graph, info: LayerInfo, weights: dict, x: Tensor,
                    prefix: str) -> Tensor:
    """ConvTranspose: kernel (k…, filters, in) → (in, filters, k…)."""
    layer = info.layer
    rank = len(layer.kernel_size)
    kernel = np.transpose(weights["kernel"], (rank + 1, rank, *range(rank)))
    extras = layer.output_padding or (None,) * rank
    before, after, extra = [], [], []
    for n, k, s, e, d in zip(info.input_shape[:-1], layer.kernel_size, layer.strides, extras,
                             layer.dilation_rate):
        out, crop = conv_transpose_length(n, k, s, layer.padding, e, d)
        cut = (n - 1) * s + effective_kernel(k, d) - out - crop  # < 0: kept past the scatter
        before.append(crop)
        after.append(max(cut, 0))
        extra.append(max(-cut, 0))
    attributes = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                      dilations=list(layer.dilation_rate), pads=before + after)
    if any(extra):
        attributes["output_padding"] = extra
    return _conv(graph, x, prefix, kernel, weights.get("bias"), attributes,
                 bound_activation(layer, weights), "ConvTranspose")


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """(k, C, dm) → (C·dm, 1, k): output channel c·dm + m is group c's m-th filter."""
    size, channels, multiplier = kernel.shape
    return np.transpose(kernel, (1, 2, 0)).reshape(channels * multiplier, 1, size)


@exports(L.DepthwiseConv1D)
def _depthwise1d(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """DepthwiseConv1D as a Conv with one group per input channel."""
    layer = info.layer
    return _conv(graph, x, prefix, _depthwise_kernel(weights["kernel"]), weights.get("bias"),
                 dict(_window(layer, info.input_shape), group=info.input_shape[-1]),
                 bound_activation(layer, weights))


@exports(L.SeparableConv1D)
def _separable1d(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """SeparableConv1D: the depthwise Conv, then a size-1 Conv with the bias."""
    layer = info.layer
    middle = _conv(graph, x, prefix + "depthwise/",
                   _depthwise_kernel(weights["depthwise_kernel"]), None,
                   dict(_window(layer, info.input_shape), group=info.input_shape[-1]), "linear")
    pointwise = np.transpose(weights["pointwise_kernel"], (2, 1, 0))  # (filters, C·dm, 1)
    return _conv(graph, middle, prefix + "pointwise/", pointwise, weights.get("bias"),
                 dict(kernel_shape=[1]), bound_activation(layer, weights))
