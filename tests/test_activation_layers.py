"""The activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax): Keras's documented values,
hand-computed cases, gradients against finite differences, and activation layers given as
another layer's `activation` (read as a name where one computes the same, else run after the
layer: forward, training, ONNX, import and export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from seqcli import layers as L  # noqa: N812
from seqcli.interop.onnx_export import to_onnx
from seqcli.runtime.model import Sequential
from tests.conftest import runtime_model, to_yaml

INPUT = np.array([-10, -5, -0.5, 0.0, 0.25, 0.5, 5, 10], np.float32)


@pytest.mark.parametrize(("layer", "expected"), [
    # the examples of Keras's docstrings
    (L.ReLU(max_value=10, negative_slope=0.5), [-5, -2.5, -0.25, 0, 0.25, 0.5, 5, 10]),
    (L.LeakyReLU(negative_slope=0.5), [-5, -2.5, -0.25, 0, 0.25, 0.5, 5, 10]),
    # by hand: below the threshold slope·(x - threshold), above it x capped at max_value
    (L.ReLU(max_value=4, negative_slope=0.1, threshold=0.5),
     [-1.05, -0.55, -0.1, -0.05, -0.025, 0.0, 4, 4]),
    (L.ReLU(threshold=0.25), [0, 0, 0, 0, 0, 0.5, 5, 10]),
    (L.ReLU(max_value=6), [0, 0, 0, 0, 0.25, 0.5, 5, 6]),
    (L.LeakyReLU(), [-3, -1.5, -0.15, 0, 0.25, 0.5, 5, 10]),
    (L.LeakyReLU(alpha=0.1), [-1, -0.5, -0.05, 0, 0.25, 0.5, 5, 10]),  # Keras 2's key
    (L.ELU(alpha=2.0), 2.0 * np.expm1(np.minimum(INPUT, 0)) + np.maximum(INPUT, 0)),
])
def test_elementwise_values(layer, expected):
    y = layer.forward({}, INPUT[None])
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], np.asarray(expected, np.float32), rtol=1e-6, atol=1e-7)


def test_softmax_values():
    x = np.array([[[1.0, 2.0, 1.0], [0.0, 0.0, 3.0]]], np.float32)
    last = L.Softmax().forward({}, x)
    np.testing.assert_allclose(last[0, 0], [0.21194157, 0.5761169, 0.21194157], rtol=1e-6)
    middle = L.Softmax(axis=1).forward({}, x)
    np.testing.assert_allclose(middle.sum(axis=1), 1.0, rtol=1e-6)
    both = L.Softmax(axis=[1, 2]).forward({}, x)
    np.testing.assert_allclose(both, np.exp(x) / np.exp(x).sum(), rtol=1e-6)


def test_prelu_values_and_shared_axes():
    layer = L.PReLU(shared_axes=[1])
    assert layer.param_shapes((3, 2)) == {"alpha": (1, 2)}
    x = np.array([[[-1.0, -2.0], [3.0, -4.0], [0.0, 1.0]]], np.float32)
    alpha = np.array([[0.5, -1.0]], np.float32)
    np.testing.assert_array_equal(layer.forward({"alpha": alpha}, x),
                                  [[[-0.5, 2.0], [3.0, 4.0], [0.0, 1.0]]])


def _numeric_gradient(function, x, eps=1e-3):
    x = x.astype(np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (function(up).sum() - function(down).sum()) / (2 * eps)
    return grad


def _away_from_kinks(rng, shape, kinks):
    x = rng.uniform(-3, 3, shape)
    for kink in kinks:
        x = np.where(np.abs(x - kink) < 0.05, x + 0.1, x)
    return x.astype(np.float32)


@pytest.mark.parametrize("layer", [
    L.ReLU(), L.ReLU(max_value=2, negative_slope=0.2, threshold=0.5), L.ReLU(max_value=6),
    L.LeakyReLU(), L.ELU(alpha=0.7), L.Softmax(axis=1), L.Softmax(axis=[1, 2]),
], ids=lambda layer: repr(layer.keras_options()))
def test_backward_matches_finite_differences(layer):
    rng = np.random.default_rng(0)
    x = _away_from_kinks(rng, (2, 3, 4), [0.0, 0.5, 2.0])
    weights = rng.normal(size=x.shape)  # the loss: sum(weights · y)
    y, cache = layer.forward_train({}, x, rng)
    dx, grads = layer.backward({}, cache, (weights * np.ones_like(y)).astype(np.float32))
    assert grads == {}

    def loss(v):
        return weights * layer.forward({}, v.astype(np.float32)).astype(np.float64)

    np.testing.assert_allclose(dx, _numeric_gradient(loss, x), rtol=2e-2, atol=2e-3)


def test_prelu_backward_matches_finite_differences():
    layer = L.PReLU(shared_axes=[2])
    rng = np.random.default_rng(1)
    x = _away_from_kinks(rng, (2, 3, 4), [0.0])
    alpha = rng.normal(size=(3, 1)).astype(np.float32)  # per sample (3, 4), shared along 2
    upstream = rng.normal(size=x.shape).astype(np.float32)
    y, cache = layer.forward_train({"alpha": alpha}, x, rng)
    dx, grads = layer.backward({"alpha": alpha}, cache, upstream)
    np.testing.assert_allclose(
        dx, _numeric_gradient(lambda v: upstream * layer.forward({"alpha": alpha}, v), x),
        rtol=2e-2, atol=2e-3)
    np.testing.assert_allclose(
        grads["alpha"], _numeric_gradient(lambda a: upstream * layer.forward({"alpha": a}, x),
                                          alpha), rtol=2e-2, atol=2e-3)


# --------------------------------------------------------------------------- as `activation`


@pytest.mark.parametrize(("mapping", "name"), [
    ({"type": "ReLU"}, "relu"), ({"type": "ReLU", "max_value": 6}, "relu6"),
    ({"type": "LeakyReLU", "negative_slope": 0.2}, "leaky_relu"), ({"type": "ELU"}, "elu"),
    ({"type": "Softmax"}, "softmax"), ({"type": "Softmax", "axis": [-1]}, "softmax"),
])
def test_an_activation_layer_that_a_name_computes_is_read_as_the_name(mapping, name):
    assert L.Dense(units=2, activation=mapping).activation == name
    assert L.LSTM(units=2, activation=mapping if name != "softmax" else "tanh").activation in (
        name, "tanh")




AFTER = [
    {"type": "Dense", "units": 4, "activation": {"type": "LeakyReLU", "negative_slope": 0.1}},
    {"type": "Conv1D", "filters": 3, "kernel_size": 2, "padding": "same",
     "activation": {"type": "ReLU", "max_value": 1.0, "threshold": 0.1}},
    {"type": "Activation", "activation": {"type": "ELU", "alpha": 0.5}},
    {"type": "Conv1D", "filters": 2, "kernel_size": 1, "activation": {"type": "Softmax",
                                                                       "axis": 1}},
]
PLAIN = [
    {"type": "Dense", "units": 4}, {"type": "LeakyReLU", "negative_slope": 0.1},
    {"type": "Conv1D", "filters": 3, "kernel_size": 2, "padding": "same"},
    {"type": "ReLU", "max_value": 1.0, "threshold": 0.1},
    {"type": "ELU", "alpha": 0.5},
    {"type": "Conv1D", "filters": 2, "kernel_size": 1}, {"type": "Softmax", "axis": 1},
]


def _same_weights(after: Sequential, plain: Sequential) -> None:
    for value, plain_key in zip(after.weight_arrays.values(), plain.weight_arrays):
        plain.weight_arrays[plain_key] = value.copy()


def _computes_the_same(after: Sequential, plain: Sequential, x: np.ndarray) -> None:
    """`after` (layers with activation layers as `activation`) equals `plain` (the same layers
    without, followed by those activation layers), given `plain` the same weights: outputs,
    one training step, onnxruntime."""
    from seqcli.training.fit import train_step
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    _same_weights(after, plain)
    assert after.built_model.total_params == plain.built_model.total_params
    np.testing.assert_allclose(after(x), plain(x), rtol=1e-6, atol=1e-7)
    target = np.random.default_rng(3).random(after(x).shape).astype(np.float32)
    for model in (after, plain):
        train_step(model.built_model, model.weight_arrays, x, target, get_loss("mse"),
                   get_optimizer("sgd", 0.5), np.random.default_rng(0))
    for key, plain_key in zip(after.weight_arrays, plain.weight_arrays):
        np.testing.assert_allclose(after.weight_arrays[key], plain.weight_arrays[plain_key],
                                   rtol=1e-5, atol=1e-6)
    proto = to_onnx(after.built_model, after.weight_arrays)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["output"], {"input": x})[0], after(x), rtol=1e-5,
                               atol=1e-5)


def test_an_activation_layer_runs_after_the_layer_forward_training_and_onnx():
    """Dense, Conv1D and Activation with activation layers that no name computes."""
    x = np.random.default_rng(2).normal(size=(4, 5, 3)).astype(np.float32)
    _computes_the_same(runtime_model(AFTER, [5, 3]), runtime_model(PLAIN, [5, 3]), x)


@pytest.mark.parametrize(("activation", "words"), [
    ({"type": "Dense", "units": 2}, "needs the type of an activation layer"),
    ({"type": "ReLU", "max_valu": 2}, "in the ReLU activation (max_valu)"),
    ({"type": "LeakyReLU", "negative_slope": -1}, "negative_slope cannot be negative"),
    (3, "expected an activation name"),
])
def test_bad_activation_mappings_are_one_line_errors(cli, tmp_path, activation, words):
    model = tmp_path / "m.yaml"
    model.write_text(to_yaml({"input_shape": [3], "layers": [
        {"type": "Dense", "units": 2, "activation": activation}]}))
    result = cli("validate", model)
    assert result.code == 65, result
    assert words in result.err, result.err
    assert "m.yaml:" in result.err and len(result.err.strip().splitlines()) == 1


def test_a_recurrent_cell_takes_activations_by_name(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(to_yaml({"input_shape": [3, 2], "layers": [
        {"type": "GRU", "units": 2, "recurrent_activation": {"type": "LeakyReLU"}}]}))
    result = cli("validate", model)
    assert result.code == 65 and "inside each step, by name" in result.err, result


def test_softmax_refuses_the_batch_axis_and_a_mask(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(to_yaml({"input_shape": [3], "layers": [{"type": "Softmax", "axis": 0}]}))
    result = cli("validate", model)
    assert result.code == 65 and "not the batch axis 0" in result.err, result
    model.write_text(to_yaml({"input_shape": [4], "layers": [
        {"type": "Embedding", "input_dim": 5, "output_dim": 3, "mask_zero": True},
        {"type": "Softmax"}]}))
    result = cli("validate", model)
    assert result.code == 65 and "cannot take the mask" in result.err, result


def _layers_with_an_activation():
    from seqcli.layers.base import LAYER_REGISTRY
    from seqcli.layers.recurrent import _Recurrent

    return [pytest.param(name, id=name) for name, cls in LAYER_REGISTRY.items()
            if "activation" in cls.model_fields and not issubclass(cls, _Recurrent)
            and name != "Activation"]


@pytest.mark.parametrize("activation", [{"type": "LeakyReLU", "negative_slope": 0.1},
                                        {"type": "PReLU"}], ids=["LeakyReLU", "PReLU"])
@pytest.mark.parametrize("type_name", _layers_with_an_activation())
def test_every_layer_with_an_activation_runs_an_activation_layer_after(type_name, activation):
    """For every layer type with an `activation` (its first shape case of the layer table):
    with an activation layer as `activation` it computes, trains and exports as the same layer
    without activation followed by that activation layer (a PReLU's alpha then among the
    layer's weights, `<layer>/p_re_lu/alpha`)."""
    from tests.layer_table import ROWS

    settings, input_shape, *_ = ROWS[type_name].cases[0]
    settings = {key: value for key, value in settings.items() if key != "activation"}
    after = runtime_model([{"type": type_name, **settings, "activation": activation}],
                   list(input_shape))
    plain = runtime_model([{"type": type_name, **settings}, activation], list(input_shape))
    if activation["type"] == "PReLU":
        name = after.built_model.layers[0].path
        assert f"{name}/p_re_lu/alpha" in after.weight_arrays
        key = f"{name}/p_re_lu/alpha"  # slopes away from 0, so that the test can fail
        after.weight_arrays[key] = np.random.default_rng(6).normal(
            0.3, 0.3, after.weight_arrays[key].shape).astype(np.float32)
    x = np.random.default_rng(4).normal(size=(3, *input_shape)).astype(np.float32)
    _computes_the_same(after, plain, x)


def test_keras_made_prelu_activations_import_predict_export_and_train(cli, tmp_path):
    """tests/keras_files/prelu_activation.keras: PReLU as a Conv2D's and a Dense's activation,
    its alpha in Keras's `activation` group. Imported, it predicts as Keras (the import test
    of every Keras-made file) and one full-batch SGD step equals Keras's train_on_batch."""
    from seqcli.io.weights import read_weights

    files = Path(__file__).parent / "keras_files"
    model = tmp_path / "m.yaml"
    assert cli("import-keras", files / "prelu_activation.keras", "-o", model).code == 0
    text = model.read_text()
    assert "type: PReLU" in text and "shared_axes: [1, 2]" in text
    keras_step = np.load(files / "prelu_activation.sgd.npz")
    np.save(tmp_path / "y.npy", keras_step["y"])
    result = cli("fit", model, files / "prelu_activation.input.npy", tmp_path / "y.npy",
                 "--loss", "mse", "--optimizer", "sgd", "--learning-rate", "0.1", "--epochs",
                 "1", "--batch-size", "3", "--no-shuffle", "-o", tmp_path / "w.npz", "-q")
    assert result.code == 0, result
    got = read_weights(tmp_path / "w.npz")
    for key in keras_step.files:
        if key.startswith("after/"):
            name = key.removeprefix("after/")
            layer, weight = name.split("/")
            ours = got[f"{layer}/p_re_lu/alpha" if weight == "alpha" else name]
            want = keras_step[key].reshape(ours.shape)
            assert float(np.abs(ours - want).max()) <= 2e-5 * float(np.abs(want).max()), name
