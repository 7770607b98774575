"""ONNX lowerings of the sequence layers: Embedding, Masking, SimpleRNN, LSTM, GRU,
Bidirectional and TimeDistributed.

A recurrent layer becomes ONNX's own RNN, LSTM or GRU op (onnxruntime runs those as fused
kernels) when ONNX has its activations, and a Scan over the steps whose body is the cell's
arithmetic otherwise (gelu, selu, silu, …). The ops take time-major input: the steps are
transposed to the front, and go_backwards is a reversed input (Keras returns the sequence in
that processing order too).

A mask becomes sequence lengths: each sample's unmasked steps are gathered to the front, in
order (the top T of mask·T + (T-1-t)), the op runs that many of them, and with
return_sequences the output at step t is gathered back from the number of unmasked steps up to
t (Keras keeps the last output at a masked step, 0 before the first one, or 0 at every masked
step with zero_output_for_mask). A Scan applies the mask in its body instead.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from seqcli import layers as L  # noqa: N812
from seqcli.build import LayerInfo
from seqcli.interop.onnx_graph import EXPORTERS, Graph, Tensor, exports, lower_activation
from seqcli.layers.base import sublayer_weights

_INT64_MIN = -(2**63)

# Keras activation → (ONNX's name in the recurrent ops, alpha, beta); alpha and beta are given
# for every activation that takes them, so each reads its own (onnxruntime hands them out in
# order to the activations that take them).
_RECURRENT_ACTIVATIONS = {
    "linear": ("Affine", 1.0, 0.0),
    "relu": ("Relu", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "tanh": ("Tanh", None, None),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),  # relu6(x + 3) / 6
    "elu": ("Elu", 1.0, None),
    "softplus": ("Softplus", None, None),
    "softsign": ("Softsign", None, None),
    "leaky_relu": ("LeakyRelu", 0.2, None),
}

# Keras's gate order → ONNX's: LSTM i, f, c, o → i, o, f, c; GRU z, r, h and SimpleRNN as is
_GATE_ORDER = {"SimpleRNN": (0,), "LSTM": (0, 3, 1, 2), "GRU": (0, 1, 2)}
_OP_TYPE = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def _int64(graph: Graph, label: str, values) -> str:
    return graph.constant(label, values, np.int64)


def _reverse_steps(graph: Graph, name: str, prefix: str) -> str:
    """`name` with its step axis (1) reversed."""
    inputs = [name, _int64(graph, prefix + "reverse_starts", [-1]),
              _int64(graph, prefix + "reverse_ends", [_INT64_MIN]),
              _int64(graph, prefix + "reverse_axes", [1]),
              _int64(graph, prefix + "reverse_steps", [-1])]
    return graph.op("Slice", inputs, prefix + "reversed")


# --------------------------------------------------------------------------- Embedding, Masking


@exports(L.Embedding)
def _embedding(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Gather the rows of `embeddings`; a negative id is sent out of range, so that it fails
    as a too-large one does instead of counting from the end. mask_zero: the ids that are
    not 0."""
    layer = info.layer
    ids = x.name
    if not x.ids:  # an earlier layer's float output: Keras casts it to int (towards zero)
        ids = graph.op("Cast", [ids], prefix + "ids", to=TensorProto.INT64)
    negative = graph.op("Less", [ids, _int64(graph, prefix + "zero_id", 0)], prefix + "negative")
    ids = graph.op("Where", [negative, _int64(graph, prefix + "input_dim", layer.input_dim),
                             ids], prefix + "checked_ids")
    y = graph.op("Gather", [graph.constant(prefix + "embeddings", weights["embeddings"]), ids],
                 prefix + "Gather", axis=0)
    mask = None
    if layer.mask_zero:  # on the ids as given, as Keras's compute_mask
        zero = graph.constant(prefix + "padding_id", 0, np.int64 if x.ids else np.float32)
        mask = graph.op("Not", [graph.op("Equal", [x.name, zero], prefix + "is_padding")],
                        prefix + "mask")
    return Tensor(y, x.rank + 1, False, mask=mask)


@exports(L.Masking)
def _masking(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """mask = any(x != mask_value) over the features; the masked steps become zeros."""
    x = graph.channels_last(x, prefix)
    differs = graph.op("Not", [graph.op("Equal", [x.name, graph.constant(
        prefix + "mask_value", info.layer.mask_value)], prefix + "equal")], prefix + "differs")
    any_differs = graph.reduce("ReduceMax", graph.op("Cast", [differs], prefix + "differs_float",
                                                     to=TensorProto.FLOAT),
                               [x.rank - 1], prefix + "any_differs", keepdims=1)
    keep = graph.op("Cast", [any_differs], prefix + "keep", to=TensorProto.BOOL)
    y = graph.op("Where", [keep, x.name, graph.constant(prefix + "zero", 0.0)], prefix + "Where")
    mask = graph.op("Squeeze", [keep, _int64(graph, prefix + "feature_axis", [x.rank - 1])],
                    prefix + "mask")
    return Tensor(y, x.rank, False, mask=mask)


# --------------------------------------------------------------------------- recurrent layers


@exports(L.SimpleRNN, L.LSTM, L.GRU)
def _recurrent_layer(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """SimpleRNN, LSTM, GRU: (N, T, F) → (N, T, u) with return_sequences, else (N, u)."""
    x = graph.channels_last(x, prefix)
    y = recurrent(graph, info.layer, weights, x.name, x.mask, info.input_shape[0], prefix)
    return Tensor(y, 3 if info.layer.return_sequences else 2, False)


def recurrent(graph: Graph, layer, weights: dict, x: str, mask: str | None, steps: int,
              prefix: str) -> str:
    """The output of recurrent `layer` for x (N, T, F) and its mask (N, T) or None: the ONNX
    op when ONNX has the layer's activations, else a Scan."""
    if layer.go_backwards:
        x = _reverse_steps(graph, x, prefix + "input_")
        if mask is not None:
            mask = _reverse_steps(graph, mask, prefix + "mask_")
    activations = [layer.activation] + ([] if layer.type == "SimpleRNN"
                                        else [layer.recurrent_activation])
    if not all(name in _RECURRENT_ACTIVATIONS for name in activations):
        return _scan(graph, layer, weights, x, mask, steps, prefix)
    return _onnx_op(graph, layer, weights, x, mask, steps, prefix)


def _onnx_weights(layer, weights: dict):
    """(W (1, G·u, F), R (1, G·u, u), B (1, 2·G·u) or None) in ONNX's gate order."""
    order, units = _GATE_ORDER[layer.type], layer.units

    def gates(matrix):  # (…, G·u) Keras order → ONNX order
        return np.concatenate([matrix[..., g * units:(g + 1) * units] for g in order], axis=-1)

    kernel = gates(weights["kernel"]).T[None]
    recurrent_kernel = gates(weights["recurrent_kernel"]).T[None]
    bias = weights.get("bias")
    if bias is None:
        return kernel, recurrent_kernel, None
    if bias.ndim == 2:  # GRU reset_after: input and recurrent biases
        input_bias, recurrent_bias = gates(bias[0]), gates(bias[1])
    else:
        input_bias, recurrent_bias = gates(bias), np.zeros_like(bias)
    return kernel, recurrent_kernel, np.concatenate([input_bias, recurrent_bias])[None]


def _activation_attributes(names: list[str]) -> dict:
    functions, alphas, betas = [], [], []
    for name in names:
        function, alpha, beta = _RECURRENT_ACTIVATIONS[name]
        functions.append(function)
        alphas += [] if alpha is None else [alpha]
        betas += [] if beta is None else [beta]
    attributes = {"activations": functions}
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    return attributes


def _onnx_op(graph: Graph, layer, weights: dict, x: str, mask: str | None, steps: int,
             prefix: str) -> str:
    """The layer as ONNX's RNN/LSTM/GRU op; a mask as sequence lengths (see the module)."""
    kernel, recurrent_kernel, bias = _onnx_weights(layer, weights)
    if layer.type == "SimpleRNN":
        names = [layer.activation]
    elif layer.type == "LSTM":  # f (gates), g (cell input), h (cell output)
        names = [layer.recurrent_activation, layer.activation, layer.activation]
    else:  # GRU: f (gates), g (candidate)
        names = [layer.recurrent_activation, layer.activation]
    attributes = _activation_attributes(names)
    if layer.type == "GRU":
        attributes["linear_before_reset"] = int(layer.reset_after)

    lengths = ""
    if mask is not None:
        counted = graph.op("Cast", [mask], prefix + "mask_int", to=TensorProto.INT64)
        key = graph.op("Add", [graph.op("Mul", [counted, _int64(graph, prefix + "steps",
                                                                steps)], prefix + "key_mask"),
                               _int64(graph, prefix + "key_order",
                                      np.arange(steps - 1, -1, -1))], prefix + "key")
        _, order = graph.ops("TopK", [key, _int64(graph, prefix + "k", [steps])],
                             prefix + "unmasked_first", ["values", "indices"], axis=1,
                             largest=1, sorted=1)
        x = _gather_steps(graph, x, order, prefix + "compact_")
        total = graph.op("ReduceSum", [counted, _int64(graph, prefix + "steps_axis", [1])],
                         prefix + "unmasked", keepdims=0)
        lengths = graph.op("Cast", [total], prefix + "sequence_lens", to=TensorProto.INT32)

    inputs = [graph.op("Transpose", [x], prefix + "time_major", perm=[1, 0, 2]),
              graph.constant(prefix + "W", kernel), graph.constant(prefix + "R", recurrent_kernel),
              graph.constant(prefix + "B", bias) if bias is not None else "", lengths]
    sequence, last = graph.ops(
        _OP_TYPE[layer.type], inputs, prefix + _OP_TYPE[layer.type],
        ["Y" if layer.return_sequences else "", "Y_h"], hidden_size=layer.units, **attributes)

    if not layer.return_sequences:
        y = graph.op("Squeeze", [last, _int64(graph, prefix + "direction_axis", [0])],
                     prefix + "last")
        if mask is not None and layer.zero_output_for_mask:  # a masked last step outputs 0
            last_kept = graph.op("Gather", [mask, _int64(graph, prefix + "last_step", [steps - 1])],
                                 prefix + "last_kept", axis=1)
            y = graph.op("Where", [last_kept, y, graph.constant(prefix + "zero", 0.0)],
                         prefix + "last_or_zero")
        return y
    y = graph.op("Squeeze", [sequence, _int64(graph, prefix + "direction_axis", [1])],
                 prefix + "steps_out")
    y = graph.op("Transpose", [y], prefix + "batch_major", perm=[1, 0, 2])
    if mask is None:
        return y
    # step t outputs the compacted output number (unmasked steps up to t) - 1
    seen = graph.op("CumSum", [counted, _int64(graph, prefix + "cumsum_axis", 1)],
                    prefix + "seen")
    position = graph.op("Max", [graph.op("Sub", [seen, _int64(graph, prefix + "one", 1)],
                                         prefix + "seen_less_one"),
                                _int64(graph, prefix + "first", 0)], prefix + "position")
    y = _gather_steps(graph, y, position, prefix + "expand_")
    if layer.zero_output_for_mask:
        kept = mask
    else:  # the kept output, 0 before the first unmasked step
        kept = graph.op("Greater", [seen, _int64(graph, prefix + "none_seen", 0)],
                        prefix + "any_seen")
    kept = graph.op("Unsqueeze", [kept, _int64(graph, prefix + "units_axis", [2])],
                    prefix + "kept")
    return graph.op("Where", [kept, y, graph.constant(prefix + "zero", 0.0)],
                    prefix + "masked_out")


def _gather_steps(graph: Graph, x: str, order: str, prefix: str) -> str:
    """x (N, T, C) with its steps taken in `order` (N, T) of step indices, per sample."""
    index = graph.op("Unsqueeze", [order, _int64(graph, prefix + "axis", [2])], prefix + "index")
    index = graph.op("Expand", [index, graph.op("Shape", [x], prefix + "shape")],
                     prefix + "indices")
    return graph.op("GatherElements", [x, index], prefix + "GatherElements", axis=1)


def _scan(graph: Graph, layer, weights: dict, x: str, mask: str | None, steps: int,
          prefix: str) -> str:
    """The layer as a Scan over the steps of xproj = x @ kernel + input bias, the cell's
    arithmetic (seqcli.layers.recurrent's, Keras's) in its body."""
    from onnx import helper

    units = layer.units
    bias = weights.get("bias")
    input_bias = bias[0] if bias is not None and bias.ndim == 2 else bias
    projected = graph.op("MatMul", [x, graph.constant(prefix + "kernel", weights["kernel"])],
                         prefix + "MatMul")
    if input_bias is not None:
        projected = graph.op("Add", [projected, graph.constant(prefix + "input_bias",
                                                               input_bias)], prefix + "BiasAdd")
    batch = graph.op("Slice", [graph.op("Shape", [x], prefix + "shape"),
                               _int64(graph, prefix + "batch_start", [0]),
                               _int64(graph, prefix + "batch_end", [1])], prefix + "batch")
    state_shape = graph.op("Concat", [batch, _int64(graph, prefix + "units", [units])],
                           prefix + "state_shape", axis=0)
    zeros = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    initial = graph.op("ConstantOfShape", [state_shape], prefix + "initial_state", value=zeros)

    body = graph.body()
    state_names = ["h"] + (["c"] if layer.type == "LSTM" else [])
    states = {name: body.name(prefix + f"step/{name}_previous") for name in state_names}
    xt = body.name(prefix + "step/xproj")
    kept = body.name(prefix + "step/kept") if mask is not None else None
    new = _cell(body, layer, weights, states, xt, prefix + "step/")
    outputs = {}
    for name in state_names:
        outputs[name] = (new[name] if kept is None else
                         body.op("Where", [kept, new[name], states[name]],
                                 prefix + f"step/{name}_kept"))
    if kept is not None and layer.zero_output_for_mask:
        emitted = body.op("Where", [kept, new["h"], body.constant(prefix + "step/zero", 0.0)],
                          prefix + "step/output")
    else:
        emitted = body.op("Identity", [outputs["h"]], prefix + "step/output")

    def value(name, element_type=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, element_type, None)

    body_inputs = [value(states[name]) for name in state_names] + [value(xt)]
    scan_inputs = [projected]
    if kept is not None:
        body_inputs.append(value(kept, TensorProto.BOOL))
        scan_inputs.append(graph.op("Unsqueeze", [mask, _int64(graph, prefix + "mask_axis",
                                                               [2])], prefix + "mask_steps"))
    body_graph = helper.make_graph(
        body.nodes, prefix + "step", body_inputs,
        [value(outputs[name]) for name in state_names] + [value(emitted)])
    results = graph.ops("Scan", [initial] * len(state_names) + scan_inputs, prefix + "Scan",
                        [*state_names, "y"], body=body_graph,
                        num_scan_inputs=len(scan_inputs), scan_input_axes=[1] * len(scan_inputs),
                        scan_output_axes=[1])
    sequence, last_h = results[-1], results[0]
    if layer.return_sequences:
        return sequence
    if kept is not None and layer.zero_output_for_mask:  # the last step's output
        return graph.op("Squeeze", [graph.op("Gather", [sequence, _int64(
            graph, prefix + "last_step", [steps - 1])], prefix + "last_step_out", axis=1),
            _int64(graph, prefix + "step_axis", [1])], prefix + "last")
    return last_h


def _cell(body: Graph, layer, weights: dict, states: dict, xt: str, prefix: str) -> dict:
    """One step of the cell in `body`: the new states by name (h, and c for an LSTM)."""
    units = layer.units
    h = states["h"]

    def act(name: str, value: str, label: str) -> str:
        return lower_activation(body, name, Tensor(value, 2, False), prefix + label + "/").name

    def split(value: str, parts: int, label: str) -> list[str]:
        sizes = body.constant(prefix + label + "_sizes", [units] * parts, np.int64)
        return body.ops("Split", [value, sizes], prefix + label,
                        [f"part{i}" for i in range(parts)], axis=1)

    def matmul(a: str, matrix: np.ndarray, label: str) -> str:
        return body.op("MatMul", [a, body.constant(prefix + label, matrix)],
                       prefix + label + "_product")

    def add(a: str, b: str, label: str) -> str:
        return body.op("Add", [a, b], prefix + label)

    def mul(a: str, b: str, label: str) -> str:
        return body.op("Mul", [a, b], prefix + label)

    recurrent_kernel = weights["recurrent_kernel"]
    if layer.type == "SimpleRNN":
        z = add(xt, matmul(h, recurrent_kernel, "recurrent_kernel"), "z")
        return {"h": act(layer.activation, z, "activation")}
    if layer.type == "LSTM":
        z = add(xt, matmul(h, recurrent_kernel, "recurrent_kernel"), "z")
        zi, zf, zc, zo = split(z, 4, "gates")
        i = act(layer.recurrent_activation, zi, "input_gate")
        f = act(layer.recurrent_activation, zf, "forget_gate")
        g = act(layer.activation, zc, "candidate")
        o = act(layer.recurrent_activation, zo, "output_gate")
        c = add(mul(f, states["c"], "forget"), mul(i, g, "write"), "c")
        return {"h": mul(o, act(layer.activation, c, "cell_out"), "h"), "c": c}
    # GRU: z (update), r (reset), candidate hh; h = z·h_prev + (1 - z)·hh
    xz, xr, xh = split(xt, 3, "input_parts")
    if layer.reset_after:
        bias = weights.get("bias")
        inner = matmul(h, recurrent_kernel, "recurrent_kernel")
        if bias is not None:
            inner = add(inner, body.constant(prefix + "recurrent_bias", bias[1]), "inner")
        hz, hr, hh = split(inner, 3, "recurrent_parts")
        z = act(layer.recurrent_activation, add(xz, hz, "z_in"), "update")
        r = act(layer.recurrent_activation, add(xr, hr, "r_in"), "reset")
        candidate = act(layer.activation, add(xh, mul(r, hh, "reset_inner"), "hh_in"),
                        "candidate")
    else:
        hz, hr = split(matmul(h, recurrent_kernel[:, :2 * units], "recurrent_zr"), 2,
                       "recurrent_parts")
        z = act(layer.recurrent_activation, add(xz, hz, "z_in"), "update")
        r = act(layer.recurrent_activation, add(xr, hr, "r_in"), "reset")
        candidate = act(layer.activation, add(xh, matmul(mul(r, h, "reset_state"),
                                                         recurrent_kernel[:, 2 * units:],
                                                         "recurrent_h"), "hh_in"), "candidate")
    one_minus_z = body.op("Sub", [body.constant(prefix + "one", 1.0), z], prefix + "keep_new")
    return {"h": add(mul(z, h, "keep_old"), mul(one_minus_z, candidate, "write"), "h")}


# --------------------------------------------------------------------------- wrappers


@exports(L.Bidirectional)
def _bidirectional(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """Both directions on the same input and mask; the backward sequence flipped back into
    step order, then merged (concat, sum, mul, ave)."""
    layer = info.layer
    x = graph.channels_last(x, prefix)
    forward, backward = (
        recurrent(graph, part, sublayer_weights(weights, part.name), x.name, x.mask,
                  info.input_shape[0], prefix + part.name + "/")
        for part in layer.parts())
    if layer.return_sequences:
        backward = _reverse_steps(graph, backward, prefix + "backward_")
    if layer.merge_mode == "concat":
        y = graph.op("Concat", [forward, backward], prefix + "Concat", axis=-1)
    elif layer.merge_mode == "mul":
        y = graph.op("Mul", [forward, backward], prefix + "Mul")
    else:
        y = graph.op("Add", [forward, backward], prefix + "Add")
        if layer.merge_mode == "ave":
            y = graph.op("Div", [y, graph.constant(prefix + "two", 2.0)], prefix + "Div")
    return Tensor(y, 3 if layer.return_sequences else 2, False)


@exports(L.TimeDistributed)
def _time_distributed(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """The wrapped layer on (N·T, *step shape), reshaped back to (N, T, *its output)."""
    inner = info.layer.layer
    steps = info.input_shape[0]
    step_input, step_output = info.input_shape[1:], info.output_shape[1:]
    x = graph.channels_last(x, prefix)
    merged = graph.op("Reshape", [x.name, _int64(graph, prefix + "merged_shape",
                                                 [-1, *step_input])], prefix + "merge_steps")
    step_info = LayerInfo(layer=inner, path=f"{info.path}/{inner.name}",
                          input_shape=step_input, output_shape=step_output)
    y = EXPORTERS[type(inner)](graph, step_info, sublayer_weights(weights, inner.name),
                               Tensor(merged, len(step_input) + 1, False),
                               prefix + inner.name + "/")
    y = graph.channels_last(y, prefix)
    split = graph.op("Reshape", [y.name, _int64(graph, prefix + "split_shape",
                                                [-1, steps, *step_output])],
                     prefix + "split_steps")
    return Tensor(split, len(info.output_shape) + 1, False)
