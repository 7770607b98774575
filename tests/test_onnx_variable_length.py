"""`seqcli export-onnx` of models with a variable-length (None) axis: the axis becomes a
symbolic dimension (`steps`, `steps_2`...), the graph runs in onnxruntime on any length with
seqcli's outputs, and layers whose graph would need the length are refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import seqcli

MODELS = Path(__file__).parent / "training_reference" / "models"


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _check_lengths(cli, model: Path, tmp_path, make_input, lengths=(5, 12)):
    out = tmp_path / "m.onnx"
    result = cli("export-onnx", model, "-o", out)
    assert result.code == 0, result
    reference = seqcli.load(model)
    for steps in lengths:
        x = make_input(np.random.default_rng(steps), steps)
        got, want = _run(out, x), reference.predict(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return onnx.load(out)


def test_a_causal_conv_stack_runs_on_any_length(cli, tmp_path):
    graph = _check_lengths(cli, MODELS / "wavenet_variable.yaml", tmp_path,
                           lambda rng, n: rng.normal(size=(2, n, 1)).astype(np.float32)).graph
    assert _dims(graph.input[0]) == ["batch", "steps", 1]
    assert _dims(graph.output[0]) == ["batch", "output_steps", 3]


def test_embedding_and_lstm_run_on_any_length(cli, tmp_path):
    _check_lengths(cli, MODELS / "embedding_lstm_variable.yaml", tmp_path,
                   lambda rng, n: rng.integers(0, 20, (3, n)))


LENGTH_FREE = {
    "valid_strided_pooling_gru": """
input_shape: [null, 2]
layers:
  - {type: Conv1D, filters: 3, kernel_size: 3, strides: 2}
  - {type: MaxPooling1D, pool_size: 2}
  - {type: GRU, units: 4}
  - {type: Dense, units: 2}
""",
    "same_conv2d_two_axes": """
input_shape: [null, null, 2]
layers:
  - {type: Conv2D, filters: 3, kernel_size: 3, padding: same, activation: relu}
  - {type: BatchNormalization}
  - {type: GlobalAveragePooling2D}
  - {type: Dense, units: 2, activation: softmax}
""",
}


@pytest.mark.parametrize("name", sorted(LENGTH_FREE))
def test_length_free_layers(cli, tmp_path, name):
    model = tmp_path / f"{name}.yaml"
    model.write_text(LENGTH_FREE[name])
    rank = LENGTH_FREE[name].count("null")
    graph = _check_lengths(cli, model, tmp_path,
                           lambda rng, n: rng.normal(size=(2, *[n + 1] * rank, 2))
                           .astype(np.float32), lengths=(7, 10)).graph
    assert _dims(graph.input[0])[1:rank + 1] == ["steps", "steps_2"][:rank]


REFUSED = {
    "flatten": ("[null, 2]", "{type: Flatten}", "flatten"),
    "same_strided_conv": ("[null, 2]", "{type: Conv1D, filters: 2, kernel_size: 3, strides: 2, "
                          "padding: same}", "strides above 1"),
    "masked_lstm": ("[null]", "{type: Embedding, input_dim: 5, output_dim: 2, mask_zero: true}\n"
                    "  - {type: LSTM, units: 2}", "a mask"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_layers_that_need_the_length_are_refused_by_name(cli, tmp_path, name):
    shape, layers, fragment = REFUSED[name]
    model = tmp_path / "m.yaml"
    model.write_text(f"input_shape: {shape}\nlayers:\n  - {layers}\n")
    result = cli("export-onnx", model, "-o", tmp_path / "m.onnx")
    assert result.code == 2, result
    assert fragment in result.err and "--input-shape" in result.err
    assert not (tmp_path / "m.onnx").exists()
    fixed = "9" if shape == "[null]" else "9,2"
    result = cli("export-onnx", model, "-o", tmp_path / "m.onnx", "--input-shape", fixed)
    assert result.code == 0, result
