"""Export a model file to an ONNX graph that onnxruntime runs with seqcli's outputs.

The graph's input is `input`, shaped (batch, *input_shape) exactly as seqcli's arrays are
(channels last: NHWC, or (batch, steps, channels)); its output is `output`, channels last
too. Inside, a tensor is moved to channels-first (NCHW, NCL) only when a Conv or a pooling
op needs it, and back only when the layout matters (Flatten, Reshape, Dense on rank > 2,
the output), so consecutive channel-first ops share one layout without transpose pairs.
Elementwise ops, normalisation, padding and resizing run in whichever layout they meet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from seqcli import layers as L  # noqa: N812
from seqcli.activations import SELU_ALPHA, SELU_SCALE
from seqcli.build import BuiltModel, LayerInfo, build
from seqcli.errors import SeqcliError, UsageError
from seqcli.layers.normalization import sample_axis
from seqcli.shapes import format_shape, paddings

DEFAULT_OPSET = 17
"""Opset of the exported graph unless `--opset` says otherwise (17 has LayerNormalization)."""
MINIMUM_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM = "batch"
_PROTOBUF_LIMIT = 2**31 - 1  # one protobuf message (the whole .onnx file) must stay below 2 GiB

MISSING_ONNX = ("export-onnx needs the 'onnx' package, which is not installed: "
                "pip install 'seqcli[onnx]'")



def require_onnx():
    """The `onnx` module, or a SeqcliError (exit 1) saying how to install it."""
    try:
        import onnx
        from onnx import checker, helper, numpy_helper  # noqa: F401
    except ImportError as exc:
        raise SeqcliError(MISSING_ONNX) from exc
    return onnx


@dataclass
class OnnxExport:
    """An exported graph and what it was made from."""

    model: object
    """The `onnx.ModelProto`."""
    input_shape: tuple
    """Per-sample input shape (the graph's input is (batch, *input_shape))."""
    output_shape: tuple
    """Per-sample output shape."""
    opset: int
    initialised: list[str] = field(default_factory=list)
    """Weight keys drawn from the initialisers (the model has no weights file)."""
    seed: int = 0
    source: str = ""
    """The model file as users named it (`<stdin>` for `-`)."""

    @property
    def node_count(self) -> int:
        """Number of nodes in the graph."""
        return len(self.model.graph.node)


def export_onnx(model_path: str, output_path: str, weights: str | None = None,
                input_shape=None, *, opset: int | None = None) -> None:
    """Write the ONNX graph of the model file `model_path` to `output_path` (`-`: stdout)."""
    write_onnx(convert_model_file(model_path, weights, input_shape, opset), output_path)


def convert_model_file(model_path: str, weights: str | None = None, input_shape=None,
                opset: int | None = None, *, allow_outside: bool = False) -> OnnxExport:
    """Load, build and convert a model file (with `weights`, or its own) to a checked graph."""
    from seqcli.config.load import load_model
    from seqcli.runtime.weights import load_model_weights

    onnx = require_onnx()
    opset = _check_opset(onnx, DEFAULT_OPSET if opset is None else opset)
    loaded = load_model(str(model_path), allow_outside=allow_outside)
    built = build(loaded, tuple(input_shape) if input_shape is not None else None)
    if any(d is None for d in built.input_shape):
        raise UsageError(
            f"export-onnx needs every input dimension but the batch known; model "
            f"'{built.name}' has input shape {format_shape(built.input_shape)}: pass "
            "--input-shape, e.g. --input-shape 28,28,1")
    model_weights = load_model_weights(loaded, built, weights)
    proto = to_onnx(built, model_weights.arrays, opset)
    return OnnxExport(model=proto, input_shape=tuple(built.input_shape),
                      output_shape=tuple(built.output_shape), opset=opset,
                      initialised=list(model_weights.initialised), seed=model_weights.seed,
                      source=loaded.source)


def refuse_terminal(output_path: str) -> None:
    """UsageError when `output_path` is `-` and stdout is a terminal (binary data)."""
    from seqcli.io.atomic import refuse_terminal as refuse

    refuse(output_path, "a binary ONNX file", "-o FILE.onnx")


def write_onnx(export: OnnxExport, output_path: str) -> None:
    """Serialise the graph to `output_path` atomically (`-`: stdout, never a terminal)."""
    from seqcli.io.atomic import atomic_output

    refuse_terminal(output_path)
    data = export.model.SerializeToString()
    with atomic_output(output_path) as out:
        out.write(data)


def _check_opset(onnx, opset: int) -> int:
    newest = onnx.defs.onnx_opset_version()
    if not MINIMUM_OPSET <= opset <= newest:
        raise UsageError(f"--opset must be between {MINIMUM_OPSET} and {newest} (the newest this "
                         f"onnx {onnx.__version__} knows). Received: --opset {opset}")
    return opset


def to_onnx(built: BuiltModel, weights: dict[str, np.ndarray], opset: int = DEFAULT_OPSET):
    """The checked `onnx.ModelProto` of a built model with its weights by key."""
    onnx = require_onnx()
    from onnx import TensorProto, helper

    from seqcli import __version__

    graph = _Graph(opset)
    x = _Tensor(INPUT_NAME, len(built.input_shape) + 1, channels_first=False)
    x = _export_layers(graph, built.layers, weights, x)
    x = graph.channels_last(x, "")
    graph.rename_output(x.name, OUTPUT_NAME)

    def value_info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH_DIM, *shape])

    body = helper.make_graph(
        graph.nodes, built.name,
        [value_info(INPUT_NAME, built.input_shape)],
        [value_info(OUTPUT_NAME, built.output_shape)],
        initializer=graph.initializers,
        doc_string=f"seqcli model '{built.name}': input and output channels last, batch first",
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(body, opset_imports=opsets, producer_name="seqcli",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    if model.ByteSize() > _PROTOBUF_LIMIT:
        raise SeqcliError(f"the ONNX graph of '{built.name}' would exceed protobuf's 2 GiB limit "
                          f"({model.ByteSize():,} bytes); export-onnx cannot write it")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise SeqcliError(f"internal error: the exported graph fails onnx's checker: "
                          f"{str(exc).splitlines()[0]}") from exc
    return model


# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class _Tensor:
    """A tensor of the graph: its name, rank (with the batch axis) and physical layout."""

    name: str
    rank: int
    channels_first: bool
    """True: stored (batch, channels, *spatial); False: as seqcli's (batch, *spatial, channels)."""

    def axis(self, logical: int) -> int:
        """Where the logical (channels-last, batch-first) axis `logical` is stored."""
        return _to_first(self.rank).index(logical) if self.channels_first else logical

    def physical(self, values: list) -> list:
        """Per-axis `values` given in logical order, rearranged into storage order."""
        return [values[a] for a in _to_first(self.rank)] if self.channels_first else list(values)


def _to_first(rank: int) -> list[int]:
    """Transpose permutation channels-last → channels-first: (0, rank-1, 1, …, rank-2)."""
    return [0, rank - 1, *range(1, rank - 1)]


def _to_last(rank: int) -> list[int]:
    """Transpose permutation channels-first → channels-last: (0, 2, …, rank-1, 1)."""
    return [0, *range(2, rank), 1]


class _Graph:
    """Nodes and initialisers under construction, with unique names."""

    def __init__(self, opset: int):
        from onnx import helper, numpy_helper

        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._helper, self._numpy_helper = helper, numpy_helper
        self._taken: set[str] = {INPUT_NAME, OUTPUT_NAME}

    def _unique(self, name: str) -> str:
        candidate, count = name, 0
        while candidate in self._taken:
            count += 1
            candidate = f"{name}_{count}"
        self._taken.add(candidate)
        return candidate

    def constant(self, name: str, value, dtype=np.float32) -> str:
        """An initialiser holding `value` (float32 unless `dtype` says); returns its name."""
        name = self._unique(name)
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(self._numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attributes) -> str:
        """Add a node (named `name`, also the name of its one output); returns the output."""
        name = self._unique(name)
        self.nodes.append(self._helper.make_node(op_type, inputs, [name], name=name,
                                                 **attributes))
        return name

    def rename_output(self, old: str, new: str) -> None:
        """Make the node producing `old` produce `new` (or add an Identity for a graph input)."""
        for node in self.nodes:
            if old in node.output:
                node.output[list(node.output).index(old)] = new
                return
        self.nodes.append(self._helper.make_node("Identity", [old], [new], name=new))

    def channels_first(self, x: _Tensor, prefix: str) -> _Tensor:
        """`x` stored channels-first (a Transpose only if it is not already)."""
        if x.channels_first or x.rank <= 2:
            return _Tensor(x.name, x.rank, True)
        name = self.op("Transpose", [x.name], prefix + "to_channels_first",
                       perm=_to_first(x.rank))
        return _Tensor(name, x.rank, True)

    def channels_last(self, x: _Tensor, prefix: str) -> _Tensor:
        """`x` stored channels-last, as seqcli's arrays (a Transpose only if needed)."""
        if not x.channels_first or x.rank <= 2:
            return _Tensor(x.name, x.rank, False)
        name = self.op("Transpose", [x.name], prefix + "to_channels_last",
                       perm=_to_last(x.rank))
        return _Tensor(name, x.rank, False)

    def reduce(self, op_type: str, x: str, axes: list[int], name: str, keepdims: int) -> str:
        """ReduceMean/ReduceMax over `axes` (an input from opset 18, an attribute before)."""
        if self.opset >= 18:
            axes_name = self.constant(name + "_axes", axes, np.int64)
            return self.op(op_type, [x, axes_name], name, keepdims=keepdims)
        return self.op(op_type, [x], name, axes=axes, keepdims=keepdims)


# --------------------------------------------------------------------------- layers

Exporter = Callable[["_Graph", LayerInfo, dict, "_Tensor", str], "_Tensor"]
EXPORTERS: dict[type, Exporter] = {}
"""Layer class → the function that adds its nodes to the graph: `(graph, info, weights by
name, input tensor, name prefix) → output tensor`. Every layer class has one but the nested
Sequential, which is exported as its layers."""


def exports(*classes: type):
    """Register the decorated function as the ONNX lowering of the layer `classes`."""
    def register(function: Exporter) -> Exporter:
        for cls in classes:
            if cls in EXPORTERS:
                raise TypeError(f"{cls.__name__} has two ONNX exporters")
            EXPORTERS[cls] = function
        return function

    return register



def _export_layers(graph: _Graph, infos: list[LayerInfo], weights: dict, x: _Tensor) -> _Tensor:
    for info in infos:
        if info.children:  # a nested Sequential: its layers, named by their paths
            x = _export_layers(graph, info.children, weights, x)
            continue
        x = EXPORTERS[type(info.layer)](graph, info, info.own_weights(weights), x,
                                        info.path + "/")
    return x


@exports(L.Dense)
def _dense(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str) -> _Tensor:
    """x @ kernel + bias on the last axis: Gemm on rank 2, MatMul (+ Add) above."""
    layer = info.layer
    x = graph.channels_last(x, prefix)
    kernel = graph.constant(prefix + "kernel", weights["kernel"])
    if x.rank == 2 and layer.use_bias:
        y = graph.op("Gemm", [x.name, kernel, graph.constant(prefix + "bias", weights["bias"])],
                     prefix + "Gemm")
    else:
        y = graph.op("MatMul", [x.name, kernel], prefix + "MatMul")
        if layer.use_bias:
            y = graph.op("Add", [y, graph.constant(prefix + "bias", weights["bias"])],
                         prefix + "BiasAdd")
    return _activation(graph, layer.activation, _Tensor(y, x.rank, False), prefix)


def _onnx_pads(pads) -> list[int]:
    """((before, after), …) per spatial axis → ONNX's [before…, after…]."""
    return [before for before, _ in pads] + [after for _, after in pads]


@exports(L.Conv1D, L.Conv2D)
def _conv(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str) -> _Tensor:
    """Conv1D/Conv2D: kernel (k…, in/groups, filters) → (filters, in/groups, k…)."""
    layer = info.layer
    rank = len(layer.kernel_size)
    kernel = np.transpose(weights["kernel"], (rank + 1, rank, *range(rank)))
    return _conv_node(graph, info, x, prefix, kernel, weights.get("bias"), layer.groups,
                      layer.activation)


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """(kh, kw, C, dm) → (C·dm, 1, kh, kw): output channel c·dm + m is group c's m-th filter."""
    kh, kw, channels, multiplier = kernel.shape
    return np.transpose(kernel, (2, 3, 0, 1)).reshape(channels * multiplier, 1, kh, kw)


@exports(L.DepthwiseConv2D)
def _depthwise(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """DepthwiseConv2D as a Conv with one group per input channel."""
    layer = info.layer
    return _conv_node(graph, info, x, prefix, _depthwise_kernel(weights["kernel"]),
                      weights.get("bias"), info.input_shape[-1], layer.activation)


@exports(L.SeparableConv2D)
def _separable(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """SeparableConv2D: the depthwise Conv, then a 1×1 Conv with the bias."""
    layer = info.layer
    middle = _conv_node(graph, info, x, prefix + "depthwise/",
                        _depthwise_kernel(weights["depthwise_kernel"]), None,
                        info.input_shape[-1], "linear")
    pointwise = np.transpose(weights["pointwise_kernel"], (3, 2, 0, 1))
    inputs = [middle.name, graph.constant(prefix + "pointwise_kernel", pointwise)]
    if "bias" in weights:
        inputs.append(graph.constant(prefix + "bias", weights["bias"]))
    y = graph.op("Conv", inputs, prefix + "pointwise/Conv", kernel_shape=[1, 1])
    return _activation(graph, layer.activation, _Tensor(y, middle.rank, True), prefix)


def _conv_node(graph: _Graph, info: LayerInfo, x: _Tensor, prefix: str, kernel: np.ndarray,
               bias, groups: int, activation: str) -> _Tensor:
    """A Conv with explicit (TensorFlow 'same' / causal: asymmetric) pads, then `activation`."""
    layer = info.layer
    x = graph.channels_first(x, prefix)
    pads = paddings(info.input_shape[:-1], layer.kernel_size, layer.strides, layer.padding,
                    layer.dilation_rate)
    inputs = [x.name, graph.constant(prefix + "kernel", kernel)]
    if bias is not None:
        inputs.append(graph.constant(prefix + "bias", bias))
    y = graph.op("Conv", inputs, prefix + "Conv", kernel_shape=list(layer.kernel_size),
                 strides=list(layer.strides), dilations=list(layer.dilation_rate),
                 pads=_onnx_pads(pads), group=int(groups))
    return _activation(graph, activation, _Tensor(y, x.rank, True), prefix)


@exports(L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D, L.AveragePooling2D)
def _pooling(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """MaxPool (pads never win) or AveragePool over real cells only (count_include_pad=0)."""
    layer = info.layer
    x = graph.channels_first(x, prefix)
    pads = paddings(info.input_shape[:-1], layer.pool_size, layer.strides, layer.padding,
                    (1,) * len(layer.pool_size))
    attributes = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                      pads=_onnx_pads(pads))
    if layer.mode == "max":
        y = graph.op("MaxPool", [x.name], prefix + "MaxPool", **attributes)
    else:
        y = graph.op("AveragePool", [x.name], prefix + "AveragePool", count_include_pad=0,
                     **attributes)
    return _Tensor(y, x.rank, True)


@exports(L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalAveragePooling1D,
         L.GlobalAveragePooling2D)
def _global_pooling(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """Max or mean over the spatial axes, in the layout the tensor has (keepdims kept)."""
    layer = info.layer
    if x.channels_first:  # (N, C, *spatial) → (N, C, 1, …)
        op_type = "GlobalMaxPool" if layer.mode == "max" else "GlobalAveragePool"
        y = graph.op(op_type, [x.name], prefix + op_type)
        if layer.keepdims:
            return _Tensor(y, x.rank, True)
        return _Tensor(graph.op("Flatten", [y], prefix + "Flatten", axis=1), 2, False)
    op_type = "ReduceMax" if layer.mode == "max" else "ReduceMean"
    y = graph.reduce(op_type, x.name, list(range(1, x.rank - 1)), prefix + op_type,
                     keepdims=int(layer.keepdims))
    return _Tensor(y, x.rank if layer.keepdims else 2, False)


@exports(L.Flatten)
def _flatten(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """Flatten in channels-last (seqcli's, Keras's) element order."""
    x = graph.channels_last(x, prefix)
    return _Tensor(graph.op("Flatten", [x.name], prefix + "Flatten", axis=1), 2, False)


@exports(L.Reshape)
def _reshape(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """Reshape in channels-last element order; 0 keeps the (dynamic) batch size."""
    x = graph.channels_last(x, prefix)
    shape = graph.constant(prefix + "shape", [0, *info.output_shape], np.int64)
    y = graph.op("Reshape", [x.name, shape], prefix + "Reshape")
    return _Tensor(y, len(info.output_shape) + 1, False)


@exports(L.Dropout)
def _identity(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """Dropout at inference: nothing to compute."""
    return x


@exports(L.ActivationLayer)
def _activation_layer(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """The Activation layer."""
    return _activation(graph, info.layer.activation, x, prefix)


def _broadcast(x: _Tensor, input_shape: tuple, logical_axes: list[int],
               values: np.ndarray) -> np.ndarray:
    """`values` of the axes `logical_axes` (read flat in sorted-axis order, as Keras reshapes
    gamma and beta) shaped to broadcast against `x` as stored."""
    shape = [1] * x.rank
    for axis in logical_axes:
        shape[axis] = input_shape[axis - 1]
    full = np.reshape(values, shape)
    return np.transpose(full, _to_first(x.rank)) if x.channels_first else full


@exports(L.BatchNormalization)
def _batch_normalization(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor,
                         prefix: str):
    """Inference form folded as Keras computes it: x·inv + (beta - moving_mean·inv),
    inv = gamma / sqrt(moving_variance + epsilon)."""
    layer = info.layer
    axis = sample_axis(layer.axis, info.input_shape, layer) + 1
    inverse = 1.0 / np.sqrt(weights["moving_variance"].astype(np.float64) + layer.epsilon)
    if "gamma" in weights:
        inverse = inverse * weights["gamma"]
    shift = -weights["moving_mean"] * inverse + weights.get("beta", 0.0)
    scale = graph.constant(prefix + "scale", _broadcast(x, info.input_shape, [axis], inverse))
    shift = graph.constant(prefix + "shift", _broadcast(x, info.input_shape, [axis], shift))
    y = graph.op("Add", [graph.op("Mul", [x.name, scale], prefix + "Mul"), shift], prefix + "Add")
    return _Tensor(y, x.rank, x.channels_first)


@exports(L.LayerNormalization)
def _layer_normalization(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor,
                         prefix: str):
    """(x - mean) / sqrt(variance + epsilon) · gamma + beta over `axis`: the
    LayerNormalization op when those axes are stored last, else ReduceMean-based."""
    layer = info.layer
    axes = sorted(a + 1 for a in layer._axes_of(info.input_shape))
    stored = sorted(x.axis(a) for a in axes)
    size = int(np.prod([info.input_shape[a - 1] for a in axes]))
    gamma = _broadcast(x, info.input_shape, axes,
                       weights.get("gamma", np.ones(size, np.float32)))
    beta = _broadcast(x, info.input_shape, axes, weights["beta"]) if "beta" in weights else None
    if stored == list(range(x.rank - len(stored), x.rank)):
        first = stored[0]
        inputs = [x.name, graph.constant(prefix + "gamma", gamma.reshape(gamma.shape[first:]))]
        if beta is not None:
            inputs.append(graph.constant(prefix + "beta", beta.reshape(beta.shape[first:])))
        y = graph.op("LayerNormalization", inputs, prefix + "LayerNormalization", axis=first,
                     epsilon=float(layer.epsilon))
        return _Tensor(y, x.rank, x.channels_first)
    mean = graph.reduce("ReduceMean", x.name, stored, prefix + "mean", keepdims=1)
    centred = graph.op("Sub", [x.name, mean], prefix + "centred")
    squared = graph.op("Mul", [centred, centred], prefix + "squared")
    variance = graph.reduce("ReduceMean", squared, stored, prefix + "variance", keepdims=1)
    epsilon = graph.constant(prefix + "epsilon", layer.epsilon)
    deviation = graph.op("Sqrt", [graph.op("Add", [variance, epsilon], prefix + "Add")],
                         prefix + "deviation")
    y = graph.op("Div", [centred, deviation], prefix + "normalised")
    if "gamma" in weights:
        y = graph.op("Mul", [y, graph.constant(prefix + "gamma", gamma)], prefix + "scaled")
    if beta is not None:
        y = graph.op("Add", [y, graph.constant(prefix + "beta", beta)], prefix + "shifted")
    return _Tensor(y, x.rank, x.channels_first)


@exports(L.Rescaling)
def _rescaling(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """x · scale + offset."""
    layer = info.layer
    y = x.name
    if layer.scale != 1:
        y = graph.op("Mul", [y, graph.constant(prefix + "scale", layer.scale)], prefix + "Mul")
    if layer.offset != 0:
        y = graph.op("Add", [y, graph.constant(prefix + "offset", layer.offset)], prefix + "Add")
    return _Tensor(y, x.rank, x.channels_first)


@exports(L.ZeroPadding2D)
def _zero_padding(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """Pad with zeros: [[top, bottom], [left, right]] on height and width."""
    (top, bottom), (left, right) = info.layer.padding
    pads = x.physical([0, top, left, 0]) + x.physical([0, bottom, right, 0])
    y = graph.op("Pad", [x.name, graph.constant(prefix + "pads", pads, np.int64)],
                 prefix + "Pad", mode="constant")
    return _Tensor(y, x.rank, x.channels_first)


@exports(L.UpSampling2D)
def _upsampling(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """Nearest-neighbour Resize by whole factors: out[i] = in[floor(i / size)]."""
    height, width = info.layer.size
    scales = graph.constant(prefix + "scales", x.physical([1, height, width, 1]))
    y = graph.op("Resize", [x.name, "", scales], prefix + "Resize", mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return _Tensor(y, x.rank, x.channels_first)


@exports(L.RepeatVector)
def _repeat_vector(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """(N, F) → (N, 1, F) → tiled n times along the new axis."""
    axes = graph.constant(prefix + "axes", [1], np.int64)
    y = graph.op("Unsqueeze", [x.name, axes], prefix + "Unsqueeze")
    repeats = graph.constant(prefix + "repeats", [1, info.layer.n, 1], np.int64)
    return _Tensor(graph.op("Tile", [y, repeats], prefix + "Tile"), 3, False)


@exports(L.Permute)
def _permute(graph: _Graph, info: LayerInfo, weights: dict, x: _Tensor, prefix: str):
    """Transpose of the logical (channels-last) axes, batch first."""
    x = graph.channels_last(x, prefix)
    y = graph.op("Transpose", [x.name], prefix + "Transpose", perm=[0, *info.layer.dims])
    return _Tensor(y, x.rank, False)


# --------------------------------------------------------------------------- activations

_ONE_OP = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
           "softsign": "Softsign", "exponential": "Exp", "hard_silu": "HardSwish"}
"""Activations that are one ONNX op with its default attributes (HardSwish: x·relu6(x+3)/6)."""


def _activation(graph: _Graph, name: str, x: _Tensor, prefix: str) -> _Tensor:
    """The Keras 3 activation `name`; softmax and log_softmax over the logical last axis."""
    def op(op_type: str, inputs: list[str], **attributes) -> str:
        return graph.op(op_type, inputs, prefix + op_type, **attributes)

    def constant(label: str, value) -> str:
        return graph.constant(prefix + label, value)

    v = x.name
    if name == "linear":
        return x
    if name in _ONE_OP:
        y = op(_ONE_OP[name], [v])
    elif name == "relu6":
        y = op("Clip", [v, constant("zero", 0.0), constant("six", 6.0)])
    elif name == "hard_sigmoid":  # relu6(x + 3) / 6 = clip(x/6 + 1/2, 0, 1)
        y = op("HardSigmoid", [v], alpha=1.0 / 6.0, beta=0.5)
    elif name in ("softmax", "log_softmax"):
        y = op("Softmax" if name == "softmax" else "LogSoftmax", [v], axis=x.axis(x.rank - 1))
    elif name == "elu":
        y = op("Elu", [v], alpha=1.0)
    elif name == "selu":
        y = op("Selu", [v], alpha=SELU_ALPHA, gamma=SELU_SCALE)
    elif name == "leaky_relu":
        y = op("LeakyRelu", [v], alpha=0.2)
    elif name == "gelu":  # exact: x/2 · (1 + erf(x/√2))
        if graph.opset >= 20:
            y = op("Gelu", [v])
        else:
            erf = op("Erf", [op("Mul", [v, constant("inverse_sqrt2", 1 / np.sqrt(2))])])
            y = op("Mul", [op("Mul", [v, op("Add", [erf, constant("one", 1.0)])]),
                           constant("half", 0.5)])
    elif name == "silu":  # x · sigmoid(x)
        y = op("Mul", [v, op("Sigmoid", [v])])
    elif name == "mish":  # x · tanh(softplus(x))
        y = op("Mul", [v, op("Tanh", [op("Softplus", [v])])])
    else:  # pragma: no cover (every canonical activation is handled above)
        raise SeqcliError(f"internal error: no ONNX form for activation '{name}'")
    return _Tensor(y, x.rank, x.channels_first)

