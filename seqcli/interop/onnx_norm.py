"""ONNX lowerings of Normalization, GroupNormalization and UnitNormalization, and of the
training-only layers (GaussianNoise, GaussianDropout, AlphaDropout, SpatialDropout1D/2D/3D,
ActivityRegularization, Identity), which are the identity at inference."""

from __future__ import annotations

import math

import numpy as np

from seqcli import layers as L  # noqa: N812
from seqcli.build import LayerInfo
from seqcli.errors import SeqcliError
from seqcli.interop.onnx_graph import Graph, Tensor, exports, to_first
from seqcli.layers.normalization import sample_axis


def _stored(x: Tensor, values: np.ndarray) -> np.ndarray:
    """Per-sample `values` (channels-last, broadcastable) with a batch axis, as `x` stores."""
    full = np.asarray(values, np.float32)[None]
    return np.transpose(full, to_first(x.rank)) if x.channels_first else full


@exports(L.Normalization)
def _normalization(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """(x - mean) / max(sqrt(variance), 1e-7), or mean + x · that deviation to invert."""
    layer = info.layer
    mean, variance = layer.statistics(weights, info.input_shape)
    deviation = np.maximum(np.sqrt(variance), np.float32(1e-7))
    mean = graph.constant(prefix + "mean", _stored(x, mean))
    deviation = graph.constant(prefix + "deviation", _stored(x, deviation))
    if layer.invert:
        scaled = graph.op("Mul", [x.name, deviation], prefix + "Mul")
        y = graph.op("Add", [scaled, mean], prefix + "Add")
    else:
        centred = graph.op("Sub", [x.name, mean], prefix + "Sub")
        y = graph.op("Div", [centred, deviation], prefix + "Div")
    return Tensor(y, x.rank, x.channels_first)


@exports(L.GroupNormalization)
def _group_normalization(graph: Graph, info: LayerInfo, weights: dict, x: Tensor,
                         prefix: str):
    """Channels-last values reshaped to (N, P, groups, C / groups, Q), normalised over all
    but the batch and group axes, reshaped back, then gamma and beta per channel."""
    layer = info.layer
    shape = info.input_shape
    axis, channels, groups = layer.channel_groups(shape)
    x = graph.channels_last(x, prefix)
    before, after = shape[:axis], shape[axis + 1:]
    sizes = [math.prod(before) if None not in before else -1,
             math.prod(after) if None not in after else -1]
    if sizes.count(-1) > 1:
        raise SeqcliError(f"layer '{info.path}' (GroupNormalization): ONNX export needs the "
                          "axes on one side of the channels known; give --input-shape")
    grouped_shape = [0, sizes[0], groups, channels // groups, sizes[1]]
    original = graph.op("Shape", [x.name], prefix + "shape")
    grouped = graph.op("Reshape", [x.name, graph.constant(prefix + "grouped_shape",
                                                          grouped_shape, np.int64)],
                       prefix + "grouped")
    mean = graph.reduce("ReduceMean", grouped, [1, 3, 4], prefix + "mean", keepdims=1)
    centred = graph.op("Sub", [grouped, mean], prefix + "centred")
    squared = graph.op("Mul", [centred, centred], prefix + "squared")
    variance = graph.reduce("ReduceMean", squared, [1, 3, 4], prefix + "variance", keepdims=1)
    epsilon = graph.constant(prefix + "epsilon", layer.epsilon)
    deviation = graph.op("Sqrt", [graph.op("Add", [variance, epsilon], prefix + "Add")],
                         prefix + "deviation")
    normalised = graph.op("Div", [centred, deviation], prefix + "normalised")
    y = graph.op("Reshape", [normalised, original], prefix + "ungrouped")
    per_channel = [1] * len(shape)
    per_channel[axis] = channels
    if "gamma" in weights:
        gamma = graph.constant(prefix + "gamma", weights["gamma"].reshape([1, *per_channel]))
        y = graph.op("Mul", [y, gamma], prefix + "scaled")
    if "beta" in weights:
        beta = graph.constant(prefix + "beta", weights["beta"].reshape([1, *per_channel]))
        y = graph.op("Add", [y, beta], prefix + "shifted")
    return Tensor(y, x.rank, False)


@exports(L.UnitNormalization)
def _unit_normalization(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """x · min(1 / sqrt(sum x²), 1e12) over `axis`."""
    layer = info.layer
    axes = sorted(x.axis(sample_axis(a, info.input_shape, layer) + 1)
                  for a in (layer.axis if isinstance(layer.axis, list) else [layer.axis]))
    squares = graph.reduce("ReduceSumSquare", x.name, axes, prefix + "sum_squares", keepdims=1)
    inverse = graph.op("Reciprocal", [graph.op("Sqrt", [squares], prefix + "norm")],
                       prefix + "inverse_norm")
    inverse = graph.op("Min", [inverse, graph.constant(prefix + "limit", 1e12)],
                       prefix + "limited")
    y = graph.op("Mul", [x.name, inverse], prefix + "Mul")
    return Tensor(y, x.rank, x.channels_first)


@exports(L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.SpatialDropout1D,
         L.SpatialDropout2D, L.SpatialDropout3D, L.ActivityRegularization, L.Identity)
def _identity(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """The training-only layers at inference: nothing to compute."""
    return x
