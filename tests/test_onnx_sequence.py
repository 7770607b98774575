"""`export-onnx` of sequence models: onnxruntime gives seqcli's outputs for masks of every
shape (padding before, after and inside a sequence, samples with no real step), every
recurrent option and activation, both lowerings of a recurrent layer (ONNX's own RNN, LSTM and
GRU ops with masks as sequence lengths, and the Scan over the cell's arithmetic), the wrappers
around other layers, and ids out of range."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from seqcli.activations import ACTIVATIONS
from seqcli.interop import onnx_sequence
from seqcli.interop.onnx_export import to_onnx
from seqcli.runtime.model import Sequential
from tests.conftest import runtime_model

VOCABULARY = 12
STEPS = 7


def _model(layers: list, input_shape: list, scale: float = 1.0) -> Sequential:
    model = runtime_model(layers, input_shape)
    rng = np.random.default_rng(7)
    for key, array in model.weight_arrays.items():
        fan_in = np.prod(array.shape[:-1]) if array.ndim > 1 else 1
        value = rng.normal(scale=scale, size=array.shape) / np.sqrt(fan_in)
        if key.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, array.shape)
        model.weight_arrays[key] = value.astype(np.float32)
    return model


def _padded_ids(rows: int = 6, steps: int = STEPS) -> np.ndarray:
    """Ids with padding (0) after, before and inside the sequences, and a row of padding only."""
    rng = np.random.default_rng(3)
    ids = rng.integers(1, VOCABULARY, (rows, steps))
    ids[0, 4:] = 0          # padded after (Keras's pad_sequences(padding="post"))
    ids[1, :3] = 0          # padded before (pad_sequences' default)
    ids[2, [1, 3, 4]] = 0   # holes inside
    ids[3, :] = 0           # nothing real
    ids[4, -1] = 0          # only the last step masked
    return ids


def _session(model: Sequential, opset: int = 17) -> ort.InferenceSession:
    proto = to_onnx(model.built_model, model.weight_arrays, opset)
    onnx.checker.check_model(proto, full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _compare(model: Sequential, x: np.ndarray, opset: int = 17) -> ort.InferenceSession:
    """onnxruntime's output equals seqcli's within 2e-5 of its scale (NaN or ±inf where
    seqcli's is)."""
    session = _session(model, opset)
    got = session.run(["output"], {"input": x})[0]
    expected = model(x)
    assert got.shape == expected.shape and got.dtype == np.float32
    real = np.isfinite(expected)
    assert np.array_equal(got[~real], expected[~real], equal_nan=True)
    scale = max(float(np.abs(expected[real]).max(initial=0)), 1e-6)
    assert float(np.abs(got[real] - expected[real]).max(initial=0)) <= 2e-5 * scale
    return session


@pytest.fixture(params=["onnx_ops", "scan"])
def lowering(request, monkeypatch):
    """Each recurrent layer as ONNX's op (where ONNX has its activations), or as a Scan."""
    if request.param == "scan":
        monkeypatch.setattr(onnx_sequence, "_RECURRENT_ACTIVATIONS", {})
    return request.param


def _ops(session_or_model) -> list[str]:
    proto = to_onnx(session_or_model.built_model, session_or_model.weight_arrays)
    return [node.op_type for node in proto.graph.node]


MASKED_STACKS = {
    "simple_rnn_relu_backwards_mean": [
        {"type": "SimpleRNN", "units": 4, "activation": "relu", "return_sequences": True,
         "go_backwards": True},
        {"type": "Dense", "units": 3, "activation": "tanh"},
        {"type": "LayerNormalization"},
        {"type": "GlobalAveragePooling1D"}],
    "lstm_stack": [
        {"type": "LSTM", "units": 5, "return_sequences": True},
        {"type": "Dropout", "rate": 0.3},
        {"type": "LSTM", "units": 3, "go_backwards": True, "recurrent_activation": "hard_sigmoid",
         "use_bias": False}],
    "gru_both_resets": [
        {"type": "GRU", "units": 4, "return_sequences": True, "reset_after": False},
        {"type": "GRU", "units": 3, "return_sequences": True, "go_backwards": True},
        {"type": "TimeDistributed", "layer": {"type": "Dense", "units": 2}},
        {"type": "GlobalAveragePooling1D", "keepdims": True}],
    "zero_output_for_mask": [
        {"type": "LSTM", "units": 3, "return_sequences": True, "zero_output_for_mask": True},
        {"type": "GRU", "units": 2, "zero_output_for_mask": True}],
    "zero_output_last_step": [
        {"type": "SimpleRNN", "units": 3, "zero_output_for_mask": True}],
    "bidirectional_merges": [
        {"type": "Bidirectional", "merge_mode": "ave",
         "layer": {"type": "LSTM", "units": 3, "return_sequences": True}},
        {"type": "Bidirectional", "merge_mode": "mul",
         "layer": {"type": "GRU", "units": 2, "return_sequences": True}},
        {"type": "Bidirectional", "merge_mode": "sum",
         "layer": {"type": "SimpleRNN", "units": 2}}],
    "bidirectional_own_backward_layer": [
        {"type": "Bidirectional",
         "layer": {"type": "LSTM", "units": 3, "return_sequences": True},
         "backward_layer": {"type": "GRU", "units": 2, "return_sequences": True,
                            "go_backwards": True, "reset_after": False}},
        {"type": "Bidirectional",
         "layer": {"type": "GRU", "units": 2, "go_backwards": True},
         "backward_layer": {"type": "SimpleRNN", "units": 4}}],
}


@pytest.mark.parametrize("stack", MASKED_STACKS)
def test_masks_from_an_embedding(stack, lowering):
    layers = [{"type": "Embedding", "input_dim": VOCABULARY, "output_dim": 3, "mask_zero": True},
              *MASKED_STACKS[stack]]
    _compare(_model(layers, [STEPS]), _padded_ids())


@pytest.mark.parametrize("opset", [17, 18, 20])
def test_masking_layer_into_recurrent_layers_and_the_masked_mean(opset, lowering):
    layers = [{"type": "Masking", "mask_value": -1.0},
              {"type": "LSTM", "units": 4, "return_sequences": True},
              {"type": "Rescaling", "scale": 0.5},
              {"type": "GlobalAveragePooling1D"}]
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, STEPS, 3)).astype(np.float32)
    x[0, 5:] = -1.0
    x[1, :2] = -1.0
    x[2, 3, :] = -1.0
    x[3, :, :] = -1.0           # no real step: Keras's mean is 0/0, NaN
    x[4, 2, 0] = -1.0           # one value equal to mask_value does not mask the step
    session = _compare(_model(layers, [STEPS, 3]), x, opset)
    assert np.isnan(session.run(["output"], {"input": x})[0][3]).all()


ELEMENTWISE = [name for name in ACTIVATIONS if name not in ("softmax", "log_softmax")]
CELL_ACTIVATIONS = [("SimpleRNN", "activation"), ("LSTM", "activation"),
                    ("LSTM", "recurrent_activation"), ("GRU", "activation"),
                    ("GRU", "recurrent_activation")]


@pytest.mark.parametrize(("cell", "key"), CELL_ACTIVATIONS, ids=lambda v: v)
@pytest.mark.parametrize("activation", ELEMENTWISE)
def test_every_elementwise_activation(cell, key, activation):
    """Each activation as a cell's `activation` or `recurrent_activation`: ONNX's op where
    ONNX has it, else a Scan, masked or not."""
    settings = {"type": cell, "units": 3, key: activation, "return_sequences": True}
    masked = [{"type": "Embedding", "input_dim": VOCABULARY, "output_dim": 2,
               "mask_zero": True}, settings]
    # small weights where the state feeds an exponential: else it overflows within a few steps
    scale = 0.2 if activation == "exponential" else 1.0
    model = _model(masked, [STEPS], scale)
    _compare(model, _padded_ids())
    native = activation in onnx_sequence._RECURRENT_ACTIVATIONS
    assert ("Scan" in _ops(model)) == (not native)
    plain = _model([settings], [STEPS, 2], scale)
    _compare(plain, np.random.default_rng(5).normal(size=(3, STEPS, 2)).astype(np.float32))


def test_unmasked_recurrent_layers_use_onnx_ops_without_gathers():
    model = _model([{"type": "Conv1D", "filters": 4, "kernel_size": 3, "padding": "causal"},
                    {"type": "GRU", "units": 5, "return_sequences": True},
                    {"type": "LSTM", "units": 4, "return_sequences": True, "go_backwards": True},
                    {"type": "SimpleRNN", "units": 3}], [9, 2])
    _compare(model, np.random.default_rng(6).normal(size=(4, 9, 2)).astype(np.float32))
    ops = _ops(model)
    assert [op for op in ops if op in ("GRU", "LSTM", "RNN", "Scan")] == ["GRU", "LSTM", "RNN"]
    assert "GatherElements" not in ops and "TopK" not in ops
    # the channels-first Conv output goes time major in one Transpose
    assert ops.index("Transpose", ops.index("Conv")) == ops.index("GRU") - 1


def test_a_masked_layer_uses_sequence_lengths():
    model = _model([{"type": "Embedding", "input_dim": VOCABULARY, "output_dim": 3,
                     "mask_zero": True}, {"type": "LSTM", "units": 4}], [STEPS])
    proto = to_onnx(model.built_model, model.weight_arrays)
    (lstm,) = [node for node in proto.graph.node if node.op_type == "LSTM"]
    assert lstm.input[4] != ""  # sequence_lens


@pytest.mark.parametrize("inner", [
    {"type": "Dense", "units": 3, "activation": "relu"},
    {"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "same"},
    {"type": "MaxPooling2D"},
    {"type": "Flatten"},
    {"type": "BatchNormalization"},
    {"type": "GlobalAveragePooling2D"},
], ids=lambda layer: layer["type"])
def test_time_distributed_wraps_any_layer(inner):
    model = _model([{"type": "TimeDistributed", "layer": inner}], [3, 4, 4, 2])
    _compare(model, np.random.default_rng(8).normal(size=(2, 3, 4, 4, 2)).astype(np.float32))


def test_time_distributed_convnet_into_an_lstm():
    model = _model([
        {"type": "TimeDistributed", "layer": {"type": "Conv2D", "filters": 3, "kernel_size": 3,
                                              "activation": "relu"}},
        {"type": "TimeDistributed", "layer": {"type": "GlobalMaxPooling2D"}},
        {"type": "LSTM", "units": 4}], [5, 6, 6, 1])
    _compare(model, np.random.default_rng(9).normal(size=(3, 5, 6, 6, 1)).astype(np.float32))


def test_embedding_of_ids_of_higher_rank():
    model = _model([{"type": "Embedding", "input_dim": VOCABULARY, "output_dim": 2},
                    {"type": "Reshape", "target_shape": [3, 8]}], [3, 4])
    _compare(model, np.random.default_rng(10).integers(0, VOCABULARY, (2, 3, 4)))


@pytest.mark.parametrize("bad_id", [VOCABULARY, VOCABULARY + 100, -1, -VOCABULARY])
def test_an_id_out_of_range_fails_in_onnxruntime_too(bad_id):
    """Never a wrapped or garbage row: onnxruntime refuses the id as seqcli does."""
    model = _model([{"type": "Embedding", "input_dim": VOCABULARY, "output_dim": 2}], [4])
    session = _session(model)
    ids = np.array([[1, 2, 3, 4], [5, bad_id, 6, 7]], np.int64)
    with pytest.raises(Exception, match="out of|bounds|range"):
        session.run(["output"], {"input": ids})
