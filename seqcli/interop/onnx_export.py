"""Export a model file to an ONNX graph that onnxruntime runs with seqcli's outputs.

The graph's input is `input`, shaped (batch, *input_shape) exactly as seqcli's arrays are
(channels last: NHWC, or (batch, steps, channels)); its output is `output`, channels last
too. Inside, a tensor is moved to channels-first (NCHW, NCL) only when a Conv or a pooling
op needs it, and back only when the layout matters (Flatten, Reshape, Dense on rank > 2,
the output), so consecutive channel-first ops share one layout without transpose pairs.
Elementwise ops, normalisation, padding and resizing run in whichever layout they meet.

A model whose first layer is an Embedding takes int64 ids as `input`. A mask (from
Embedding(mask_zero) or Masking) travels beside the tensor as a bool (batch, steps) tensor,
through the layers that pass it on, to the layers that consume it (the recurrent layers, the
masked mean); the sequence layers' lowerings are in `onnx_sequence`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from seqcli import layers as L  # noqa: N812
from seqcli.build import BuiltModel, LayerInfo, build
from seqcli.errors import SeqcliError, UsageError
from seqcli.interop.onnx_graph import (
    EXPORTERS,
    INPUT_NAME,
    OUTPUT_NAME,
    Graph,
    Tensor,
    bound_activation,
    exports,
    lower_activation,
    lower_activation_layer,
    lower_prelu,
    onnx_pads,
    to_first,
)
from seqcli.layers.normalization import sample_axis
from seqcli.shapes import format_shape, paddings

DEFAULT_OPSET = 17
"""Opset of the exported graph unless `--opset` says otherwise (17 has LayerNormalization)."""
MINIMUM_OPSET = 17
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
    ids: bool = False
    """True when the input is int64 ids (the model starts with an Embedding)."""
    weights_note: str | None = None
    """Which weights start from initial values, as `predict` says it; None when files
    provide them all."""

    @property
    def node_count(self) -> int:
        """Number of nodes in the graph."""
        return len(self.model.graph.node)


def export_onnx(model_path: str, output_path: str, weights: str | None = None,
                input_shape=None, *, opset: int | None = None) -> None:
    """Write the ONNX graph of the model file `model_path` to `output_path` (`-`: stdout)."""
    write_onnx(convert_model_file(model_path, weights, input_shape, opset), output_path)


def convert_model_file(model_path: str, weights: str | None = None, input_shape=None,
                opset: int | None = None, *, allow_outside: bool = False,
                base_dir: Path | None = None) -> OnnxExport:
    """Load, build and convert a model file (with `weights`, or its own) to a checked graph;
    a model read from stdin resolves its paths against `base_dir` (default: the working
    directory)."""
    from seqcli.config.load import load_model
    from seqcli.runtime.weights import load_model_weights

    onnx = require_onnx()
    opset = _check_opset(onnx, DEFAULT_OPSET if opset is None else opset)
    loaded = load_model(str(model_path), allow_outside=allow_outside, base_dir=base_dir)
    built = build(loaded, tuple(input_shape) if input_shape is not None else None)
    check_length_free(built)
    model_weights = load_model_weights(loaded, built, weights)
    proto = to_onnx(built, model_weights.arrays, opset)
    return OnnxExport(model=proto, input_shape=tuple(symbolic_dims(built.input_shape)),
                      output_shape=tuple(built.output_shape), opset=opset, ids=built.takes_ids,
                      weights_note=model_weights.initial_values_note(loaded.source))


LENGTH_FREE = (L.Dense, L.Dropout, L.ReLU, L.LeakyReLU, L.ELU, L.Softmax, L.ActivationLayer,
               L.Embedding, L.Masking, L.Rescaling, L.BatchNormalization,
               L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
               L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
               L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.SpatialDropout1D)
"""Layers whose ONNX nodes hold no length of a variable (None) axis."""
WINDOWED = (L.Conv1D, L.Conv2D, L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
            L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)
"""Layers whose padding holds no length unless it is 'same' with strides above 1."""
RECURRENT = (L.SimpleRNN, L.LSTM, L.GRU)
"""Layers whose ONNX op runs over any number of steps unless a mask is compacted."""


def symbolic_dims(shape) -> list:
    """`shape` with its unknown (None) axes named as ONNX symbolic dimensions: `steps`,
    then `steps_2`, `steps_3`..."""
    names, count = [], 0
    for dim in shape:
        if dim is None:
            count += 1
            dim = "steps" if count == 1 else f"steps_{count}"
        names.append(dim)
    return names


def check_length_free(built: BuiltModel) -> None:
    """A UsageError naming the first layer whose graph would need the length of a variable
    (None) input axis: the graph runs on any length, or --input-shape must fix it."""
    masked = False
    for info in built.leaves():
        problem = _length_problem(info, masked) if None in info.input_shape else None
        masked = info.masked
        if problem:
            raise UsageError(
                f"export-onnx cannot make a graph for any length through layer '{info.path}' "
                f"({info.layer.type}): {problem}; pass --input-shape to fix the lengths of "
                f"{format_shape(built.input_shape)}, e.g. --input-shape "
                f"{_example_shape(built.input_shape)}")


def _length_problem(info: LayerInfo, masked: bool) -> str | None:
    """Why `info`'s ONNX nodes would need the length of a None axis of its input (`masked`:
    whether that input carries a mask), or None."""
    layer = info.layer
    if isinstance(layer, LENGTH_FREE):
        return None
    if isinstance(layer, WINDOWED):
        if layer.padding == "same" and any(s != 1 for s in layer.strides):
            return "'same' padding with strides above 1 depends on the length"
        return None
    if isinstance(layer, RECURRENT):
        return "a mask over steps of any length" if masked else None
    return "its ONNX nodes hold the length of a variable axis"


def _example_shape(shape) -> str:
    """`shape` as --input-shape takes it, 100 standing in for each unknown dimension."""
    return ",".join(str(100 if d is None else d) for d in shape)


def check_onnx_output(output_path: str) -> None:
    """Refuse an ONNX file's output that cannot be written (`check_output`), or whose name
    does not end in `.onnx`: binary data, never to a terminal."""
    from seqcli.io.atomic import check_output
    from seqcli.io.formats import check_extension

    check_extension(output_path, (".onnx",), "an ONNX model")
    check_output(output_path, what="a binary ONNX file", option="-o FILE.onnx")


def write_onnx(export: OnnxExport, output_path: str) -> None:
    """Serialise the graph to `output_path` atomically (`-`: stdout, never a terminal)."""
    from seqcli.io.atomic import atomic_output

    check_onnx_output(output_path)
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

    graph = Graph(opset)
    x = Tensor(INPUT_NAME, len(built.input_shape) + 1, channels_first=False,
               ids=built.takes_ids)
    x = _export_layers(graph, built.layers, weights, x)
    x = graph.channels_last(x, "")
    graph.rename_output(x.name, OUTPUT_NAME)
    graph.fold_transposes()

    def value_info(name, shape, element_type=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, element_type, [BATCH_DIM, *shape])

    output_shape = [f"output_{dim}" if isinstance(dim, str) else dim
                    for dim in symbolic_dims(built.output_shape)]

    input_type = TensorProto.INT64 if built.takes_ids else TensorProto.FLOAT
    body = helper.make_graph(
        graph.nodes, built.name,
        [value_info(INPUT_NAME, symbolic_dims(built.input_shape), input_type)],
        [value_info(OUTPUT_NAME, output_shape)],
        initializer=graph.initializers,
        doc_string=f"seqcli model '{built.name}': input and output channels last, batch first"
                   + (" (the input: int64 ids)" if built.takes_ids else ""),
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


# --------------------------------------------------------------------------- layers


def _export_layers(graph: Graph, infos: list[LayerInfo], weights: dict, x: Tensor) -> Tensor:
    for info in infos:
        if info.children:  # a nested Sequential: its layers, named by their paths
            x = _export_layers(graph, info.children, weights, x)
            continue
        y = EXPORTERS[type(info.layer)](graph, info, info.own_weights(weights), x,
                                        info.path + "/")
        # the mask as the model's build traced it: made here, passed on, or gone
        if not info.masked:
            y = replace(y, mask=None)
        elif y.mask is None:
            y = replace(y, mask=x.mask)
        x = y
    return x


@exports(L.Dense)
def _dense(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str) -> Tensor:
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
    return lower_activation(graph, bound_activation(layer, weights), Tensor(y, x.rank, False),
                            prefix)


@exports(L.Conv1D, L.Conv2D)
def _conv(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str) -> Tensor:
    """Conv1D/Conv2D: kernel (k…, in/groups, filters) → (filters, in/groups, k…)."""
    layer = info.layer
    rank = len(layer.kernel_size)
    kernel = np.transpose(weights["kernel"], (rank + 1, rank, *range(rank)))
    return _conv_node(graph, info, x, prefix, kernel, weights.get("bias"), layer.groups,
                      bound_activation(layer, weights))


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """(kh, kw, C, dm) → (C·dm, 1, kh, kw): output channel c·dm + m is group c's m-th filter."""
    kh, kw, channels, multiplier = kernel.shape
    return np.transpose(kernel, (2, 3, 0, 1)).reshape(channels * multiplier, 1, kh, kw)


@exports(L.DepthwiseConv2D)
def _depthwise(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """DepthwiseConv2D as a Conv with one group per input channel."""
    layer = info.layer
    return _conv_node(graph, info, x, prefix, _depthwise_kernel(weights["kernel"]),
                      weights.get("bias"), info.input_shape[-1],
                      bound_activation(layer, weights))


@exports(L.SeparableConv2D)
def _separable(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
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
    return lower_activation(graph, bound_activation(layer, weights),
                            Tensor(y, middle.rank, True), prefix)


def _conv_node(graph: Graph, info: LayerInfo, x: Tensor, prefix: str, kernel: np.ndarray,
               bias, groups: int, activation: str) -> Tensor:
    """A Conv with explicit (TensorFlow 'same' / causal: asymmetric) pads, then `activation`."""
    layer = info.layer
    x = graph.channels_first(x, prefix)
    pads = paddings(_lengths(info.input_shape[:-1]), layer.kernel_size, layer.strides,
                    layer.padding, layer.dilation_rate)
    inputs = [x.name, graph.constant(prefix + "kernel", kernel)]
    if bias is not None:
        inputs.append(graph.constant(prefix + "bias", bias))
    y = graph.op("Conv", inputs, prefix + "Conv", kernel_shape=list(layer.kernel_size),
                 strides=list(layer.strides), dilations=list(layer.dilation_rate),
                 pads=onnx_pads(pads), group=int(groups))
    return lower_activation(graph, activation, Tensor(y, x.rank, True), prefix)


def _lengths(spatial: tuple) -> tuple:
    """Spatial lengths for `paddings`, a variable (None) one as 1: only 'same' padding with
    strides above 1 reads them, which `check_length_free` refuses over a None axis."""
    return tuple(1 if n is None else n for n in spatial)


@exports(L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D,
         L.AveragePooling2D, L.AveragePooling3D)
def _pooling(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """MaxPool (pads never win) or AveragePool over real cells only (count_include_pad=0)."""
    layer = info.layer
    x = graph.channels_first(x, prefix)
    pads = paddings(_lengths(info.input_shape[:-1]), layer.pool_size, layer.strides,
                    layer.padding, (1,) * len(layer.pool_size))
    attributes = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                      pads=onnx_pads(pads))
    if layer.mode == "max":
        y = graph.op("MaxPool", [x.name], prefix + "MaxPool", **attributes)
    else:
        y = graph.op("AveragePool", [x.name], prefix + "AveragePool", count_include_pad=0,
                     **attributes)
    return Tensor(y, x.rank, True)


@exports(L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
         L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)
def _global_pooling(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Max or mean over the spatial axes, in the layout the tensor has (keepdims kept)."""
    layer = info.layer
    if x.mask is not None:  # GlobalAveragePooling1D: the mean over the unmasked steps
        return _masked_mean(graph, graph.channels_last(x, prefix), layer.keepdims, prefix)
    if x.channels_first:  # (N, C, *spatial) → (N, C, 1, …)
        op_type = "GlobalMaxPool" if layer.mode == "max" else "GlobalAveragePool"
        y = graph.op(op_type, [x.name], prefix + op_type)
        if layer.keepdims:
            return Tensor(y, x.rank, True)
        return Tensor(graph.op("Flatten", [y], prefix + "Flatten", axis=1), 2, False)
    op_type = "ReduceMax" if layer.mode == "max" else "ReduceMean"
    y = graph.reduce(op_type, x.name, list(range(1, x.rank - 1)), prefix + op_type,
                     keepdims=int(layer.keepdims))
    return Tensor(y, x.rank if layer.keepdims else 2, False)


def _masked_mean(graph: Graph, x: Tensor, keepdims: bool, prefix: str) -> Tensor:
    """sum(x over kept steps) / (kept steps), (N, T, C) → (N, C): 0/0 is NaN, as in Keras."""
    from onnx import TensorProto

    steps = graph.constant(prefix + "steps_axis", [1], np.int64)
    keep = graph.op("Unsqueeze", [x.mask, graph.constant(prefix + "feature_axis", [2],
                                                         np.int64)], prefix + "keep")
    kept = graph.op("Where", [keep, x.name, graph.constant(prefix + "zero", 0.0)],
                    prefix + "kept")
    total = graph.op("ReduceSum", [kept, steps], prefix + "total", keepdims=int(keepdims))
    count = graph.op("ReduceSum", [graph.op("Cast", [keep], prefix + "keep_float",
                                            to=TensorProto.FLOAT), steps],
                     prefix + "count", keepdims=int(keepdims))
    y = graph.op("Div", [total, count], prefix + "mean")
    return Tensor(y, 3 if keepdims else 2, False)


@exports(L.Flatten)
def _flatten(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Flatten in channels-last (seqcli's, Keras's) element order."""
    x = graph.channels_last(x, prefix)
    return Tensor(graph.op("Flatten", [x.name], prefix + "Flatten", axis=1), 2, False)


@exports(L.Reshape)
def _reshape(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Reshape in channels-last element order; 0 keeps the (dynamic) batch size."""
    x = graph.channels_last(x, prefix)
    shape = graph.constant(prefix + "shape", [0, *info.output_shape], np.int64)
    y = graph.op("Reshape", [x.name, shape], prefix + "Reshape")
    return Tensor(y, len(info.output_shape) + 1, False)


@exports(L.Dropout)
def _identity(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Dropout at inference: nothing to compute."""
    return x


@exports(L.ReLU, L.LeakyReLU, L.ELU, L.Softmax)
def _activation_layers(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """ReLU, LeakyReLU, ELU, Softmax: Keras's formulas, in the layout the tensor has."""
    return lower_activation_layer(graph, info.layer, x, prefix)


@exports(L.PReLU)
def _prelu(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """PRelu with alpha (its shared axes of size 1) broadcast against the tensor as stored."""
    return lower_prelu(graph, weights["alpha"], x, prefix)


@exports(L.ActivationLayer)
def _activation_layer(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """The Activation layer."""
    return lower_activation(graph, bound_activation(info.layer, weights), x, prefix)


def _broadcast(x: Tensor, input_shape: tuple, logical_axes: list[int],
               values: np.ndarray) -> np.ndarray:
    """`values` of the axes `logical_axes` (read flat in sorted-axis order, as Keras reshapes
    gamma and beta) shaped to broadcast against `x` as stored."""
    shape = [1] * x.rank
    for axis in logical_axes:
        shape[axis] = input_shape[axis - 1]
    full = np.reshape(values, shape)
    return np.transpose(full, to_first(x.rank)) if x.channels_first else full


@exports(L.BatchNormalization)
def _batch_normalization(graph: Graph, info: LayerInfo, weights: dict, x: Tensor,
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
    return Tensor(y, x.rank, x.channels_first)


@exports(L.LayerNormalization)
def _layer_normalization(graph: Graph, info: LayerInfo, weights: dict, x: Tensor,
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
        return Tensor(y, x.rank, x.channels_first)
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
    return Tensor(y, x.rank, x.channels_first)


@exports(L.Rescaling)
def _rescaling(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """x · scale + offset."""
    layer = info.layer
    y = x.name
    if layer.scale != 1:
        y = graph.op("Mul", [y, graph.constant(prefix + "scale", layer.scale)], prefix + "Mul")
    if layer.offset != 0:
        y = graph.op("Add", [y, graph.constant(prefix + "offset", layer.offset)], prefix + "Add")
    return Tensor(y, x.rank, x.channels_first)


@exports(L.ZeroPadding2D)
def _zero_padding(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Pad with zeros: [[top, bottom], [left, right]] on height and width."""
    (top, bottom), (left, right) = info.layer.padding
    pads = x.physical([0, top, left, 0]) + x.physical([0, bottom, right, 0])
    y = graph.op("Pad", [x.name, graph.constant(prefix + "pads", pads, np.int64)],
                 prefix + "Pad", mode="constant")
    return Tensor(y, x.rank, x.channels_first)


@exports(L.UpSampling2D)
def _upsampling(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Nearest-neighbour Resize by whole factors: out[i] = in[floor(i / size)]; another
    interpolation is a separable linear map (`onnx_shape`)."""
    if info.layer.interpolation != "nearest":
        from seqcli.interop.onnx_shape import separable_resize

        return separable_resize(graph, info, x, prefix)
    height, width = info.layer.size
    scales = graph.constant(prefix + "scales", x.physical([1, height, width, 1]))
    y = graph.op("Resize", [x.name, "", scales], prefix + "Resize", mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return Tensor(y, x.rank, x.channels_first)


@exports(L.RepeatVector)
def _repeat_vector(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """(N, F) → (N, 1, F) → tiled n times along the new axis."""
    axes = graph.constant(prefix + "axes", [1], np.int64)
    y = graph.op("Unsqueeze", [x.name, axes], prefix + "Unsqueeze")
    repeats = graph.constant(prefix + "repeats", [1, info.layer.n, 1], np.int64)
    return Tensor(graph.op("Tile", [y, repeats], prefix + "Tile"), 3, False)


@exports(L.Permute)
def _permute(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Transpose of the logical (channels-last) axes, batch first."""
    x = graph.channels_last(x, prefix)
    y = graph.op("Transpose", [x.name], prefix + "Transpose", perm=[0, *info.layer.dims])
    return Tensor(y, x.rank, False)


# The other layer families' lowerings register themselves when imported (on onnx_graph).
from seqcli.interop import (  # noqa: E402, F401
    onnx_augment,
    onnx_conv,
    onnx_norm,
    onnx_sequence,
    onnx_shape,
)
