"""`seqcli export-onnx`: graphs that onnxruntime runs with Keras's and seqcli's outputs, on
NHWC inputs as seqcli's arrays are, with a dynamic batch; and every refusal."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import seqcli
from seqcli.activations import ACTIVATIONS
from seqcli.cli import main
from seqcli.interop.onnx_export import export_onnx
from tests.conftest import CONFIGS, to_yaml

HERE = Path(__file__).parent / "keras_reference"
MANIFEST = json.loads((HERE / "manifest.json").read_text())
RUNNABLE = [m for m in MANIFEST["models"] if not m["summary_only"]]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feed(x: np.ndarray) -> np.ndarray:
    """`x` as the graph takes it: int64 ids (an Embedding-first model), else float32."""
    return x.astype(np.int64 if x.dtype.kind in "iu" else np.float32)


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return _session(path).run(["output"], {"input": _feed(x)})[0]


def _close(got: np.ndarray, expected: np.ndarray, tolerance: float = 2e-5) -> None:
    """Equal within `tolerance` of the expected output's scale."""
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    scale = max(float(np.abs(expected).max()), 1e-6)
    assert float(np.abs(got - expected).max()) <= tolerance * scale


def _transposes_in_a_row(model: onnx.ModelProto) -> list[str]:
    """Transpose nodes fed by another Transpose (a pair that does nothing useful)."""
    transposed = {n.output[0] for n in model.graph.node if n.op_type == "Transpose"}
    return [n.name for n in model.graph.node if n.op_type == "Transpose"
            and n.input[0] in transposed]


# --------------------------------------------------------------------------- every layer


@pytest.mark.parametrize("entry", RUNNABLE, ids=[m["stem"] for m in RUNNABLE])
def test_onnx_equals_keras_and_seqcli(cli, entry, tmp_path):
    files = entry["files"]
    out = tmp_path / "model.onnx"
    args = ["export-onnx", HERE / entry["model"], "--weights", HERE / files["weights"], "-o", out]
    if entry["deferred"]:
        args += ["--input-shape", ",".join(map(str, entry["input_shape"]))]
    result = cli(*args)
    assert result.code == 0, result
    assert result.out == ""
    assert f"wrote {out}" in result.err

    x, expected = np.load(HERE / files["input"]), np.load(HERE / files["output"])
    session = _session(out)
    _close(session.run(["output"], {"input": _feed(x)})[0], expected)

    model = seqcli.load(HERE / entry["model"], weights=str(HERE / files["weights"]))
    _close(session.run(["output"], {"input": _feed(x)})[0], model.predict(x), 1e-5)
    # a batch of another size than the 3 rows above: the batch axis is dynamic
    rng = np.random.default_rng(len(entry["stem"]))
    if x.dtype.kind in "iu":  # ids: the rows again, reversed, and new ones
        high = model.built_model.leaves()[0].layer.input_dim
        wider = np.concatenate([x, x[:, ::-1], rng.integers(0, high, x.shape)])[:7]
    else:
        wider = np.concatenate([x, x * 0.5, x + rng.normal(scale=0.1, size=x.shape)])[:7]
    wider = _feed(wider)
    _close(session.run(["output"], {"input": wider})[0], model.predict(wider), 1e-5)

    graph = onnx.load(out)
    assert _transposes_in_a_row(graph) == []
    element_type = graph.graph.input[0].type.tensor_type.elem_type
    ids = model.built_model.takes_ids
    assert element_type == (onnx.TensorProto.INT64 if ids else onnx.TensorProto.FLOAT)
    assert ("int64 ids" if ids else "float32") in result.err


def _random_weights(model_path: Path, weights_path: Path, seed: int = 0) -> None:
    """Random weights for every key of the model (variances positive), as .npz."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, value in seqcli.load(model_path).weights.items():
        array = rng.normal(scale=0.5, size=value.shape)
        if key.endswith("moving_variance"):
            array = rng.uniform(0.5, 2.0, size=value.shape)
        arrays[key] = array.astype(np.float32)
    np.savez(weights_path, **arrays)


def _export_and_compare(cli, tmp_path, data: dict, x: np.ndarray, *options: str):
    """Export `data` (a model) with random weights; compare onnxruntime with seqcli."""
    model_path, weights_path = tmp_path / "m.yaml", tmp_path / "w.npz"
    model_path.write_text(to_yaml(data))
    _random_weights(model_path, weights_path)
    out = tmp_path / "m.onnx"
    result = cli("export-onnx", model_path, "--weights", weights_path, "-o", out, *options)
    assert result.code == 0, result
    expected = seqcli.load(model_path, weights=str(weights_path)).predict(x)
    _close(_run(out, x), expected, 1e-5)
    return onnx.load(out)


CHANNELS_FIRST_MODEL = {
    "input_shape": [7, 6, 3],
    "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same",
         "activation": "softmax"},  # softmax over the channels, stored on axis 1
        {"type": "LayerNormalization"},  # axis -1 stored on axis 1: the ReduceMean form
        {"type": "LayerNormalization", "axis": [1, 2]},  # stored last: the LayerNorm op
        {"type": "BatchNormalization", "axis": 1},
        {"type": "BatchNormalization"},
        {"type": "ZeroPadding2D", "padding": [[1, 2], [0, 3]]},
        {"type": "UpSampling2D", "size": [2, 3]},
        {"type": "Rescaling", "scale": 0.5, "offset": -1.0},
        {"type": "Activation", "activation": "log_softmax"},
        {"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "strides": 2},
        {"type": "AveragePooling2D", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "GlobalMaxPooling2D", "keepdims": True},
        {"type": "Dense", "units": 3},
        {"type": "Flatten"},
    ],
}


@pytest.mark.parametrize("opset", ["17", "18", "20"])
def test_layout_sensitive_layers_between_convolutions(cli, tmp_path, opset):
    x = np.random.default_rng(3).normal(size=(4, 7, 6, 3)).astype(np.float32)
    graph = _export_and_compare(cli, tmp_path, CHANNELS_FIRST_MODEL, x, "--opset", opset)
    assert graph.opset_import[0].version == int(opset)
    ops = [node.op_type for node in graph.graph.node]
    # one Transpose in (before the Conv), one out (before the Dense); nothing in between
    assert ops.count("Transpose") == 2
    assert ops.index("Transpose", 1) == ops.index("MatMul") - 1
    assert "LayerNormalization" in ops and "ReduceMean" in ops


CHANNELS_LAST_MODEL = {
    "input_shape": [5, 4, 3],
    "layers": [
        {"type": "ZeroPadding2D"},
        {"type": "UpSampling2D"},
        {"type": "LayerNormalization", "axis": [1, 2, 3]},
        {"type": "GlobalAveragePooling2D", "keepdims": True},
        {"type": "BatchNormalization"},
        {"type": "GlobalMaxPooling2D"},
        {"type": "Dense", "units": 4, "activation": "gelu"},
    ],
}


@pytest.mark.parametrize("opset", ["17", "18", "20"])
def test_layers_that_need_no_transpose_stay_channels_last(cli, tmp_path, opset):
    x = np.random.default_rng(4).normal(size=(3, 5, 4, 3)).astype(np.float32)
    graph = _export_and_compare(cli, tmp_path, CHANNELS_LAST_MODEL, x, "--opset", opset)
    ops = [node.op_type for node in graph.graph.node]
    assert "Transpose" not in ops
    assert ("Gelu" in ops) == (opset == "20")


@pytest.mark.parametrize("layers", [
    [{"type": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": "same"}],
    [{"type": "Reshape", "target_shape": [20, 2]},
     {"type": "MaxPooling1D", "pool_size": 3, "strides": 2, "padding": "same"}],
], ids=["2d", "1d"])
def test_same_max_pooling_never_picks_a_padded_zero(cli, tmp_path, layers):
    x = -1 - np.random.default_rng(5).random((2, 5, 4, 2), dtype=np.float32)  # all negative
    data = {"input_shape": [5, 4, 2], "layers": layers}
    _export_and_compare(cli, tmp_path, data, x)
    assert float(_run(tmp_path / "m.onnx", x).max()) < -1


@pytest.mark.parametrize("activation", ACTIVATIONS + ("swish", "hard_swish"))
def test_every_activation_over_a_wide_range(cli, tmp_path, activation):
    x = np.linspace(-20, 20, 2 * 3 * 41, dtype=np.float32).reshape(2, 3, 41)
    data = {"input_shape": [3, 41], "layers": [{"type": "Activation", "activation": activation}]}
    _export_and_compare(cli, tmp_path, data, x)


def test_nested_nodes_are_named_by_path(cli, tmp_path):
    out = tmp_path / "m.onnx"
    entry = next(m for m in RUNNABLE if m["stem"] == "nested_deep")
    result = cli("export-onnx", HERE / entry["model"], "--weights",
                 HERE / entry["files"]["weights"], "-o", out)
    assert result.code == 0, result
    names = [node.name for node in onnx.load(out).graph.node]
    assert "block/sequential/conv1d/Conv" in names
    assert "block/sequential_1/dense_1/Softsign" in names
    initializers = {i.name for i in onnx.load(out).graph.initializer}
    assert "block/layer_normalization/gamma" in initializers


# --------------------------------------------------------------------------- the graph


def test_input_is_nhwc_with_a_symbolic_batch(cli, tmp_path):
    out = tmp_path / "convnet.onnx"
    result = cli("export-onnx", CONFIGS / "guide_convnet.yaml", "-o", out)
    assert result.code == 0, result
    assert "guide_convnet.yaml: no weights file; using initial weights (seed 0)" in result.err
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input"
    assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [250, 250, 3]
    out_dims = graph_output.type.tensor_type.shape.dim
    assert graph_output.name == "output"
    assert out_dims[0].dim_param == "batch" and [d.dim_value for d in out_dims[1:]] == [10]
    ops = [node.op_type for node in model.graph.node]
    # one Transpose to NCHW at the input; the six Convs and three MaxPools share that layout
    assert ops.count("Transpose") == 1 and ops[0] == "Transpose"
    assert ops.count("Conv") == 6 and ops.count("MaxPool") == 3
    assert ops[-3:] == ["GlobalMaxPool", "Flatten", "Gemm"]
    assert model.opset_import[0].version == 17 and model.producer_name == "seqcli"


def test_python_function_writes_the_same_graph(cli, tmp_path):
    entry = next(m for m in RUNNABLE if m["stem"] == "small_convnet")
    weights = str(HERE / entry["files"]["weights"])
    export_onnx(str(HERE / entry["model"]), str(tmp_path / "a.onnx"), weights=weights)
    assert cli("export-onnx", HERE / entry["model"], "--weights", weights,
               "-o", tmp_path / "b.onnx").code == 0
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]  # no temp left
    x = np.load(HERE / entry["files"]["input"])
    _close(_run(tmp_path / "a.onnx", x), np.load(HERE / entry["files"]["output"]))


def test_python_function_takes_an_input_shape(tmp_path):
    entry = next(m for m in RUNNABLE if m["stem"] == "deferred_build")
    export_onnx(str(HERE / entry["model"]), str(tmp_path / "d.onnx"),
                weights=str(HERE / entry["files"]["weights"]), input_shape=(6,))
    x = np.load(HERE / entry["files"]["input"])
    _close(_run(tmp_path / "d.onnx", x), np.load(HERE / entry["files"]["output"]))


class _Stdout(io.TextIOWrapper):
    """A stdout over bytes that may claim to be a terminal."""

    def __init__(self, tty: bool):
        super().__init__(io.BytesIO(), encoding="utf-8")
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_output_to_stdout(monkeypatch, capsys):
    entry = next(m for m in RUNNABLE if m["stem"] == "guide_dense_stack")
    stdout = _Stdout(tty=False)
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["export-onnx", str(HERE / entry["model"]), "--weights",
                 str(HERE / entry["files"]["weights"]), "-o", "-"])
    assert code == 0
    assert capsys.readouterr().err == ""  # no "wrote" line for stdout
    data = stdout.buffer.getvalue()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.load(HERE / entry["files"]["input"])
    _close(session.run(["output"], {"input": x})[0], np.load(HERE / entry["files"]["output"]))


# --------------------------------------------------------------------------- refusals


def _one_error_line(result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_deferred_model_needs_an_input_shape(cli, tmp_path):
    entry = next(m for m in RUNNABLE if m["stem"] == "deferred_build")
    result = cli("export-onnx", HERE / entry["model"], "-o", tmp_path / "d.onnx")
    _one_error_line(result, 2, "no input shape", "--input-shape")
    assert not (tmp_path / "d.onnx").exists()


def test_unknown_dimension_is_symbolic_unless_an_input_shape_fixes_it(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [null, 3]\nlayers:\n  - {type: Dense, units: 2}\n")
    result = cli("export-onnx", model, "-o", tmp_path / "m.onnx")
    assert result.code == 0, result
    assert "(batch, steps, 3)" in result.err
    result = cli("export-onnx", model, "-o", tmp_path / "m.onnx", "--input-shape", "5,3")
    assert result.code == 0, result
    x = np.ones((2, 5, 3), np.float32)
    _close(_run(tmp_path / "m.onnx", x), seqcli.load(model).predict(x), 1e-5)


def test_missing_onnx_package_says_how_to_install(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    result = cli("export-onnx", CONFIGS / "dense_stack.yaml", "-o", tmp_path / "m.onnx")
    _one_error_line(result, 1, "pip install 'seqcli[onnx]'")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("opset", ["12", "999"])
def test_unsupported_opset(cli, tmp_path, opset):
    result = cli("export-onnx", CONFIGS / "dense_stack.yaml", "-o", tmp_path / "m.onnx",
                 "--opset", opset)
    _one_error_line(result, 2, "--opset must be between 17 and", f"--opset {opset}")


def test_output_option_is_required(cli):
    result = cli("export-onnx", CONFIGS / "dense_stack.yaml")
    assert result.code == 2
    assert "'-o' / '--output'" in result.err


def test_binary_to_a_terminal_is_refused(cli, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _Stdout(tty=True))
    result = cli("export-onnx", CONFIGS / "dense_stack.yaml", "-o", "-")
    _one_error_line(result, 2, "refusing to write a binary ONNX file to a terminal")
    assert sys.stdout.buffer.getvalue() == b""


def test_failed_export_leaves_the_existing_file(cli, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"dense/kernel": np.zeros((9, 9), np.float32)})
    result = cli("export-onnx", CONFIGS / "dense_stack.yaml", "--weights", bad, "-o", out)
    assert result.code == 65, result
    assert "dense/kernel" in result.err
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "m.onnx"]


def test_missing_model_and_unwritable_output(cli, tmp_path):
    result = cli("export-onnx", tmp_path / "absent.yaml", "-o", tmp_path / "m.onnx")
    _one_error_line(result, 66, "absent.yaml")
    result = cli("export-onnx", CONFIGS / "dense_stack.yaml", "-o", tmp_path / "no" / "m.onnx")
    _one_error_line(result, 73, "does not exist")
