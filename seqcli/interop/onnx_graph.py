"""The graph under construction for `export-onnx`: tensors with their layout and mask, unique
names, nodes and constants, the registry of layer lowerings, and Keras's activations as ONNX
ops. `onnx_export` (the layers of the core) and `onnx_sequence` (the sequence layers) add
their lowerings to `EXPORTERS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from seqcli.activations import SELU_ALPHA, SELU_SCALE
from seqcli.build import LayerInfo
from seqcli.errors import SeqcliError

INPUT_NAME = "input"
OUTPUT_NAME = "output"

# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph: its name, rank (with the batch axis) and physical layout."""

    name: str
    rank: int
    channels_first: bool
    """True: stored (batch, channels, *spatial); False: as seqcli's (batch, *spatial, channels)."""
    mask: str | None = None
    """The bool (batch, steps) tensor of its mask, when it carries one."""
    ids: bool = False
    """True for the graph's int64 ids (the input of an Embedding-first model)."""

    def axis(self, logical: int) -> int:
        """Where the logical (channels-last, batch-first) axis `logical` is stored."""
        return to_first(self.rank).index(logical) if self.channels_first else logical

    def physical(self, values: list) -> list:
        """Per-axis `values` given in logical order, rearranged into storage order."""
        return [values[a] for a in to_first(self.rank)] if self.channels_first else list(values)


def onnx_pads(pads) -> list[int]:
    """((before, after), …) per spatial axis → ONNX's [before…, after…]."""
    return [before for before, _ in pads] + [after for _, after in pads]


def _inputs(node) -> list[str]:
    """The names a node reads, those of the graphs in its attributes (a Scan's body) too."""
    names = list(node.input)
    for attribute in node.attribute:
        if attribute.HasField("g"):
            names += [name for inner in attribute.g.node for name in _inputs(inner)]
    return names


def to_first(rank: int) -> list[int]:
    """Transpose permutation channels-last → channels-first: (0, rank-1, 1, …, rank-2)."""
    return [0, rank - 1, *range(1, rank - 1)]


def to_last(rank: int) -> list[int]:
    """Transpose permutation channels-first → channels-last: (0, 2, …, rank-1, 1)."""
    return [0, *range(2, rank), 1]


class Graph:
    """Nodes and initialisers under construction, with unique names."""

    def __init__(self, opset: int, outer: Graph | None = None):
        from onnx import helper, numpy_helper

        self.opset = opset
        self.nodes: list = []
        self._helper, self._numpy_helper = helper, numpy_helper
        # a body graph (Scan's) keeps its constants in the outer graph and shares its names
        self.initializers: list = [] if outer is None else outer.initializers
        self._taken: set[str] = {INPUT_NAME, OUTPUT_NAME} if outer is None else outer._taken

    def body(self) -> Graph:
        """A graph for a Scan body: its own nodes; constants and names shared with this one."""
        return Graph(self.opset, self)

    def name(self, name: str) -> str:
        """`name`, or `name_1`, `name_2`, … if it is taken: a new value's name."""
        return self._unique(name)

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

    def ops(self, op_type: str, inputs: list[str], name: str, outputs: list[str],
            **attributes) -> list[str]:
        """Add a node with several outputs, named `name_<label>` for each of `outputs` (an
        empty label leaves that output out); returns their names."""
        name = self._unique(name)
        names = [self._unique(f"{name}_{label}") if label else "" for label in outputs]
        self.nodes.append(self._helper.make_node(op_type, inputs, names, name=name,
                                                 **attributes))
        return names

    def rename_output(self, old: str, new: str) -> None:
        """Make the node producing `old` produce `new` (or add an Identity for a graph input)."""
        for node in self.nodes:
            if old in node.output:
                node.output[list(node.output).index(old)] = new
                return
        self.nodes.append(self._helper.make_node("Identity", [old], [new], name=new))

    def fold_transposes(self) -> None:
        """Make a Transpose of a Transpose one Transpose (an Identity when they cancel), then
        drop the nodes whose outputs nothing reads: layouts chosen layer by layer (channels
        first for a Conv, time major for a recurrent op) meet without a pair of Transposes."""
        producer = {out: node for node in self.nodes for out in node.output}
        for node in self.nodes:
            if node.op_type != "Transpose":
                continue
            perm = list(node.attribute[0].ints)
            inner = producer.get(node.input[0])
            while inner is not None and inner.op_type == "Transpose":
                inner_perm = list(inner.attribute[0].ints)
                perm = [inner_perm[axis] for axis in perm]
                node.input[0] = inner.input[0]
                inner = producer.get(node.input[0])
            del node.attribute[:]
            if perm == sorted(perm):
                node.op_type = "Identity"
            else:
                node.attribute.append(self._helper.make_attribute("perm", perm))
        while True:
            read = {OUTPUT_NAME} | {name for node in self.nodes for name in _inputs(node)}
            kept = [node for node in self.nodes if any(out in read for out in node.output)]
            if len(kept) == len(self.nodes):
                return
            self.nodes[:] = kept

    def channels_first(self, x: Tensor, prefix: str) -> Tensor:
        """`x` stored channels-first (a Transpose only if it is not already)."""
        if x.channels_first or x.rank <= 2:
            return replace(x, channels_first=True)
        name = self.op("Transpose", [x.name], prefix + "to_channels_first",
                       perm=to_first(x.rank))
        return replace(x, name=name, channels_first=True)

    def channels_last(self, x: Tensor, prefix: str) -> Tensor:
        """`x` stored channels-last, as seqcli's arrays (a Transpose only if needed)."""
        if not x.channels_first or x.rank <= 2:
            return replace(x, channels_first=False)
        name = self.op("Transpose", [x.name], prefix + "to_channels_last",
                       perm=to_last(x.rank))
        return replace(x, name=name, channels_first=False)

    def reduce(self, op_type: str, x: str, axes: list[int], name: str, keepdims: int) -> str:
        """ReduceMean/ReduceMax over `axes` (an input from opset 18, an attribute before)."""
        if self.opset >= 18:
            axes_name = self.constant(name + "_axes", axes, np.int64)
            return self.op(op_type, [x, axes_name], name, keepdims=keepdims)
        return self.op(op_type, [x], name, axes=axes, keepdims=keepdims)


# --------------------------------------------------------------------------- layers

Exporter = Callable[["Graph", LayerInfo, dict, "Tensor", str], "Tensor"]
EXPORTERS: dict[type, Exporter] = {}
"""Layer class → the function that adds its nodes to the graph: `(graph, info, weights by
name, input tensor, name prefix) → output tensor`. Every layer class has one but the nested
Sequential, which is exported as its layers. A layer that makes a mask returns it on its output
tensor; one that consumes a mask reads it from its input's; `_export_layers` passes it on."""


def exports(*classes: type):
    """Register the decorated function as the ONNX lowering of the layer `classes`."""
    def register(function: Exporter) -> Exporter:
        for cls in classes:
            if cls in EXPORTERS:
                raise TypeError(f"{cls.__name__} has two ONNX exporters")
            EXPORTERS[cls] = function
        return function

    return register


# --------------------------------------------------------------------------- activations

_ONE_OP = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
           "softsign": "Softsign", "exponential": "Exp", "hard_silu": "HardSwish"}
"""Activations that are one ONNX op with its default attributes (HardSwish: x·relu6(x+3)/6)."""


@dataclass(frozen=True)
class BoundActivation:
    """An activation layer with weights (a PReLU) as a layer's `activation`, with them."""

    layer: object
    weights: dict


def bound_activation(layer, weights: dict):
    """`layer.activation` as `lower_activation` takes it: a name, an activation layer, or
    (one with weights, a PReLU) that layer with its weights out of the layer's `weights`."""
    from seqcli.layers.base import activation_weights

    after = layer.activation
    if isinstance(after, str) or not activation_weights(layer, weights):
        return after
    return BoundActivation(after, activation_weights(layer, weights))


def lower_activation(graph: Graph, name, x: Tensor, prefix: str) -> Tensor:
    """The Keras 3 activation `name`; softmax and log_softmax over the logical last axis. An
    activation layer in its place (LeakyReLU(0.1); a PReLU with its weights, from
    `bound_activation`) is lowered as that layer."""
    def op(op_type: str, inputs: list[str], **attributes) -> str:
        return graph.op(op_type, inputs, prefix + op_type, **attributes)

    def constant(label: str, value) -> str:
        return graph.constant(prefix + label, value)

    if isinstance(name, BoundActivation):
        return lower_prelu(graph, name.weights["alpha"], x, prefix + name.layer.type + "/")
    if not isinstance(name, str):
        return lower_activation_layer(graph, name, x, prefix + name.type + "/")
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
    return Tensor(y, x.rank, x.channels_first)


def lower_activation_layer(graph: Graph, layer, x: Tensor, prefix: str) -> Tensor:
    """ReLU, LeakyReLU, ELU or Softmax (the activation layers without weights), in whichever
    layout `x` is stored: Keras's formulas op by op."""
    def op(op_type: str, inputs: list[str], label: str = "", **attributes) -> str:
        return graph.op(op_type, inputs, prefix + (label or op_type), **attributes)

    def constant(label: str, value) -> str:
        return graph.constant(prefix + label, value)

    v = x.name
    if layer.type == "ELU":  # alpha·(exp(x) - 1) below 0
        y = op("Elu", [v], alpha=float(layer.alpha))
    elif layer.type == "Softmax":
        axes = [x.axis(axis) for axis in layer._axes(x.rank)]
        if len(axes) == 1:
            y = op("Softmax", [v], axis=axes[0])
        else:  # exp(x - logsumexp(x, axes))
            total = graph.reduce("ReduceLogSumExp", v, axes, prefix + "logsumexp", keepdims=1) \
                if graph.opset >= 18 else op("ReduceLogSumExp", [v], "logsumexp", axes=axes,
                                             keepdims=1)
            y = op("Exp", [op("Sub", [v, total])])
    else:
        slope = float(layer.negative_slope)
        max_value = getattr(layer, "max_value", None)
        threshold = float(getattr(layer, "threshold", 0.0))
        if slope != 0 and max_value is None and threshold == 0:
            y = op("LeakyRelu", [v], alpha=slope)
        else:  # Keras's relu: threshold, then the cap, then the negative part
            zero = constant("zero", 0.0)
            if threshold != 0:
                above = op("Greater", [v, constant("threshold", threshold)], "above")
                y = op("Where", [above, v, zero])
            else:
                y = op("Relu", [v])
            if max_value is not None:
                y = op("Min", [y, constant("max_value", float(max_value))])
            if slope != 0:
                below = op("Relu", [op("Sub", [constant("threshold_value", threshold), v])],
                           "below")
                y = op("Sub", [y, op("Mul", [below, constant("negative_slope", slope)])])
    return Tensor(y, x.rank, x.channels_first)


def lower_prelu(graph: Graph, alpha: np.ndarray, x: Tensor, prefix: str) -> Tensor:
    """PRelu with `alpha` (per sample; its shared axes of size 1) broadcast against the tensor
    as stored."""
    alpha = alpha.reshape((1, *alpha.shape))
    if x.channels_first:
        alpha = np.transpose(alpha, to_first(x.rank))
    y = graph.op("PRelu", [x.name, graph.constant(prefix + "alpha", alpha)], prefix + "PRelu")
    return Tensor(y, x.rank, x.channels_first)
