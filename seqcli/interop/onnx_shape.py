"""ONNX lowerings of the shape layers: Cropping1D/2D/3D (Slice), ZeroPadding1D/3D (Pad),
UpSampling1D/3D (nearest Resize by whole factors), and Resizing, CenterCrop and the
non-nearest UpSampling2D as what they are, a separable linear map: two MatMuls with the
layer's constant (out, in) matrices on the channels-first tensor (rows · x · colsᵀ), plus the
constant that padding with `fill_value` adds."""

from __future__ import annotations

import numpy as np

from seqcli import layers as L  # noqa: N812
from seqcli.build import LayerInfo
from seqcli.errors import SeqcliError
from seqcli.interop.onnx_graph import Graph, Tensor, exports

_INT64_MAX = 2**63 - 1


def _int64(graph: Graph, label: str, values) -> str:
    return graph.constant(label, values, np.int64)


def _amounts(layer) -> tuple:
    """Per spatial axis (before, after) of a cropping or padding layer."""
    amounts = layer.cropping if hasattr(layer, "cropping") else layer.padding
    return (amounts,) if isinstance(amounts[0], int) else amounts


@exports(L.Cropping1D, L.Cropping2D, L.Cropping3D)
def _cropping(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Slice each spatial axis from `before` to `-after` (to the end when after is 0)."""
    amounts = _amounts(info.layer)
    axes = [x.axis(1 + i) for i in range(len(amounts))]
    starts = [before for before, _ in amounts]
    ends = [-after if after else _INT64_MAX for _, after in amounts]
    y = graph.op("Slice", [x.name, _int64(graph, prefix + "starts", starts),
                           _int64(graph, prefix + "ends", ends),
                           _int64(graph, prefix + "axes", axes)], prefix + "Slice")
    return Tensor(y, x.rank, x.channels_first)


@exports(L.ZeroPadding1D, L.ZeroPadding3D)
def _zero_padding(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Pad each spatial axis with zeros: (before, after) per axis."""
    amounts = _amounts(info.layer)
    before = x.physical([0, *(b for b, _ in amounts), 0])
    after = x.physical([0, *(a for _, a in amounts), 0])
    y = graph.op("Pad", [x.name, _int64(graph, prefix + "pads", before + after)],
                 prefix + "Pad", mode="constant")
    return Tensor(y, x.rank, x.channels_first)


@exports(L.UpSampling1D, L.UpSampling3D)
def _upsampling(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Nearest-neighbour Resize by whole factors: out[i] = in[floor(i / size)]."""
    size = info.layer.size
    factors = [size] if isinstance(size, int) else list(size)
    scales = graph.constant(prefix + "scales", x.physical([1, *factors, 1]))
    y = graph.op("Resize", [x.name, "", scales], prefix + "Resize", mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return Tensor(y, x.rank, x.channels_first)


def separable_resize(graph: Graph, info: LayerInfo, x: Tensor, prefix: str) -> Tensor:
    """rows · x · colsᵀ (+ constant) per image and channel, with the layer's `resize_plan`."""
    height, width = info.input_shape[0], info.input_shape[1]
    if height is None or width is None:
        raise SeqcliError(f"export-onnx needs the height and width of the input to "
                          f"{info.layer.type} '{info.path}' (its resize matrices depend on "
                          f"them): give the model an input shape")
    rows, cols, constant = info.layer.resize_plan(info.input_shape)
    x = graph.channels_first(x, prefix)  # (N, C, H, W)
    y = graph.op("MatMul", [graph.constant(prefix + "rows", rows), x.name], prefix + "rows_MatMul")
    y = graph.op("MatMul", [y, graph.constant(prefix + "cols", np.ascontiguousarray(cols.T))],
                 prefix + "cols_MatMul")
    if constant is not None:
        y = graph.op("Add", [y, graph.constant(prefix + "fill", constant)], prefix + "fill_Add")
    return Tensor(y, x.rank, True)


@exports(L.Resizing, L.CenterCrop, L.RandomCrop)
def _resize(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Two MatMuls with the constant resize matrices (exactly Keras's jax.image.resize)."""
    return separable_resize(graph, info, x, prefix)
