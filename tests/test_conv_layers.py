"""The 3-D and transposed convolutions, the 1-D depthwise and separable convolutions and the
3-D poolings: their kernels by hand and against the slow references, Keras 3's size rules and
refusals, training against finite differences, the kernels' paths without a callable BLAS,
and the layers through the Python API and the command line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqcli.activations import activation_code
from seqcli.kernels import conv3d as k_conv3d
from seqcli.kernels import conv_transpose as k_convt
from seqcli.kernels.conv3d import conv3d_forward
from seqcli.kernels.conv_transpose import conv_transpose_forward
from seqcli.kernels.grad_conv3d import conv3d_backward
from seqcli.layers import (
    AveragePooling3D,
    Conv1DTranspose,
    Conv2DTranspose,
    Conv3D,
    Conv3DTranspose,
    Dense,
    GlobalAveragePooling3D,
    MaxPooling3D,
    Reshape,
)
from seqcli.layers.conv_more import conv_transpose_length
from seqcli.runtime.model import Sequential
from seqcli.shapes import ShapeError
from tests.conftest import model_from

try:
    from tests import naive, naive_grad
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive
    import naive_grad

LINEAR = activation_code("linear")
F32 = np.float32


def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F32)


# ----------------------------------------------------------------------------- kernels by hand


def test_conv_transpose_scatters_each_input_over_its_window():
    """1-D: x = [1, 2], kernel [1, 10, 100], strides 2: the windows overlap at one cell."""
    x = np.array([1.0, 2.0], F32).reshape(1, 1, 1, 2, 1)
    kernel = np.array([1.0, 10.0, 100.0], F32).reshape(1, 1, 3, 1, 1)
    full = conv_transpose_forward(x, kernel, None, (1, 1, 2), (1, 1, 1), (0, 0, 0), (1, 1, 5),
                                  LINEAR)
    assert full.ravel().tolist() == [1.0, 10.0, 102.0, 20.0, 200.0]
    # cropped by one before, one cell past the scatter (only the bias there)
    cut = conv_transpose_forward(x, kernel, [0.5], (1, 1, 2), (1, 1, 1), (0, 0, 1), (1, 1, 5),
                                 LINEAR)
    assert cut.ravel().tolist() == [10.5, 102.5, 20.5, 200.5, 0.5]


def test_conv_transpose_maps_channels_through_the_kernel_transposed():
    """kernel (k, filters, in): y[o, f] = sum_c x[c] k[o, f, c] for a single input cell."""
    x = np.array([1.0, 2.0], F32).reshape(1, 1, 1, 1, 2)
    kernel = np.arange(12, dtype=F32).reshape(1, 1, 2, 3, 2)  # (1, 1, 2, F=3, C=2)
    y = conv_transpose_forward(x, kernel, None, (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 2),
                               LINEAR)
    expected = kernel[0, 0] @ np.array([1.0, 2.0])  # (2, 3)
    np.testing.assert_array_equal(y.reshape(2, 3), expected)


def test_conv3d_sums_the_window_over_depth_too():
    x = np.arange(8, dtype=F32).reshape(1, 2, 2, 2, 1)
    ones = np.ones((2, 2, 2, 1, 1), F32)
    y = conv3d_forward(x, ones, [1.0], (1, 1, 1), (1, 1, 1), ((0, 0),) * 3, 1, LINEAR)
    assert y.ravel().tolist() == [29.0]
    # 'same' with a depth-only kernel: each cell plus the one behind it (zero past the end)
    depth = np.ones((2, 1, 1, 1, 1), F32)
    y = conv3d_forward(x, depth, None, (1, 1, 1), (1, 1, 1), ((0, 1), (0, 0), (0, 0)), 1,
                       LINEAR)
    np.testing.assert_array_equal(y.ravel(), [4, 6, 8, 10, 4, 5, 6, 7])


# ----------------------------------------------------------------------------- references

CONV3D_CASES = [  # (x shape, kernel shape, strides, dilation, padding, groups, activation);
    # one group and few channels in the depth window (kd * C <= 16): the depth slices stacked
    ((2, 5, 6, 7, 4), (2, 3, 2, 4, 6), (1, 1, 1), (1, 1, 1), ((0, 0),) * 3, 1, "relu"),
    ((1, 4, 5, 6, 4), (3, 2, 3, 2, 6), (2, 1, 2), (1, 1, 1), ((1, 1), (0, 1), (1, 1)), 2, "tanh"),
    ((2, 6, 5, 6, 3), (2, 2, 2, 1, 3), (1, 1, 1), (2, 1, 2), ((1, 1), (0, 1), (1, 0)), 3,
     "linear"),
    ((3, 2, 3, 4, 5), (1, 1, 1, 5, 2), (1, 1, 1), (1, 1, 1), ((0, 0),) * 3, 1, "softmax"),
    ((2, 5, 4, 5, 9), (2, 2, 3, 9, 4), (2, 1, 1), (1, 2, 1), ((1, 0), (1, 1), (1, 1)), 1,
     "sigmoid"),  # kd * C = 18: im2col
    ((1, 6, 4, 4, 2), (3, 2, 2, 2, 3), (2, 1, 1), (1, 1, 1), ((2, 2), (0, 1), (1, 0)), 1,
     "relu"),  # stacked, with depth padding and strides
]


@pytest.mark.parametrize("case", CONV3D_CASES)
def test_conv3d_forward_matches_reference(case):
    shape, kshape, strides, dilation, padding, groups, name = case
    rng = np.random.default_rng(1)
    x, kernel, bias = _normal(rng, shape), _normal(rng, kshape, 0.5), _normal(rng, kshape[-1])
    got = conv3d_forward(x, kernel, bias, strides, dilation, padding, groups,
                         activation_code(name))
    np.testing.assert_allclose(got, naive.naive_conv3d(x, kernel, bias, strides, dilation,
                                                       padding, groups, name),
                               rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.tuples(*[st.integers(1, 5)] * 3), st.tuples(*[st.integers(1, 3)] * 3),
       st.tuples(*[st.integers(1, 3)] * 3), st.tuples(*[st.integers(1, 2)] * 3),
       st.integers(1, 3), st.integers(1, 3), st.integers(0, 10**6))
def test_conv_transpose_forward_matches_reference(spatial, size, strides, dilation, channels,
                                                  filters, seed):
    """Any geometry: the crops and output sizes as a Keras layer of either padding has them,
    and arbitrary ones (cut before, past the scatter, or both)."""
    rng = np.random.default_rng(seed)
    x = _normal(rng, (2, *spatial, channels))
    kernel = _normal(rng, (*size, filters, channels))
    bias = _normal(rng, filters)
    crops = tuple(int(rng.integers(0, (k - 1) * d + 1)) for k, d in zip(size, dilation))
    outs = tuple(int(rng.integers(1, (n - 1) * s + (k - 1) * d + 4))
                 for n, k, s, d in zip(spatial, size, strides, dilation))
    got = conv_transpose_forward(x, kernel, bias, strides, dilation, crops, outs, LINEAR)
    np.testing.assert_allclose(got, naive.naive_conv_transpose(
        x, kernel, bias, strides, dilation, crops, outs, "linear"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CONV3D_CASES[:3])
def test_conv3d_backward_matches_finite_differences(case):
    shape, kshape, strides, dilation, padding, groups, _ = case
    rng = np.random.default_rng(2)
    x = _normal(rng, (1, *shape[1:4], shape[4]))[:, :4, :4, :5]
    x = np.ascontiguousarray(x)
    kernel, bias = _normal(rng, kshape, 0.5), _normal(rng, kshape[-1])
    y = naive_grad.conv3d64(x, kernel, bias, strides, dilation, padding, groups)
    dy = _normal(rng, y.shape)
    dx, dkernel, dbias = conv3d_backward(x, kernel, strides, dilation, padding, groups, dy)
    args = [x, kernel, bias, strides, dilation, padding, groups]
    for got, wrt in ((dx, 0), (dkernel, 1), (dbias, 2)):
        np.testing.assert_allclose(got, naive_grad.numeric_vjp(naive_grad.conv3d64, args, wrt,
                                                               dy), rtol=1e-4, atol=1e-4)
    assert conv3d_backward(x, kernel, strides, dilation, padding, groups, dy,
                           input_grad=False)[0] is None


def test_float64_forward_matches_the_reference():
    rng = np.random.default_rng(3)
    shape, kshape, strides, dilation, padding, groups, _ = CONV3D_CASES[1]
    x, kernel, bias = _normal(rng, shape), _normal(rng, kshape), _normal(rng, kshape[-1])
    np.testing.assert_allclose(
        naive_grad.conv3d64(x, kernel, bias, strides, dilation, padding, groups),
        naive.naive_conv3d(x, kernel, bias, strides, dilation, padding, groups, "linear"),
        atol=1e-12)


def test_kernels_refuse_what_does_not_fit():
    x = np.zeros((1, 3, 3, 3, 4), F32)
    with pytest.raises(ValueError, match="groups"):
        conv3d_forward(x, np.zeros((1, 1, 1, 3, 4), F32), None, (1,) * 3, (1,) * 3,
                       ((0, 0),) * 3, 2, LINEAR)
    with pytest.raises(ValueError, match="larger than padded input"):
        conv3d_forward(x, np.zeros((4, 1, 1, 4, 2), F32), None, (1,) * 3, (1,) * 3,
                       ((0, 0),) * 3, 1, LINEAR)
    with pytest.raises(ValueError, match="input channels"):
        conv_transpose_forward(x, np.zeros((1, 1, 1, 2, 3), F32), None, (1,) * 3, (1,) * 3,
                               (0,) * 3, (3, 3, 3), LINEAR)
    with pytest.raises(ValueError, match="dy must have shape"):
        conv3d_backward(x, np.zeros((1, 1, 1, 4, 2), F32), (1,) * 3, (1,) * 3, ((0, 0),) * 3, 1,
                        np.zeros((1, 3, 3, 3, 3), F32))


def test_without_a_callable_blas_the_numpy_paths_agree(monkeypatch):
    rng = np.random.default_rng(4)
    shape, kshape, strides, dilation, padding, groups, name = CONV3D_CASES[1]
    x, kernel, bias = _normal(rng, shape), _normal(rng, kshape), _normal(rng, kshape[-1])
    xt, kt = _normal(rng, (2, 2, 3, 4, 3)), _normal(rng, (2, 3, 3, 4, 3))
    geometry = ((2, 1, 2), (1, 1, 1), (0, 1, 2), (3, 5, 8))
    fast = (conv3d_forward(x, kernel, bias, strides, dilation, padding, groups, 1),
            conv_transpose_forward(xt, kt, None, *geometry, activation_code("tanh")))
    monkeypatch.setattr(k_conv3d, "_blas", lambda: None)
    monkeypatch.setattr(k_convt, "_blas", lambda: None)
    slow = (conv3d_forward(x, kernel, bias, strides, dilation, padding, groups, 1),
            conv_transpose_forward(xt, kt, None, *geometry, activation_code("tanh")))
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- Keras's sizes


@pytest.mark.parametrize(("args", "expected"), [
    # (n, k, s, padding, output_padding, d) -> (output length, crop before), from Keras 3's
    # backend_utils (the JAX backend's left padding is k' - 1 - crop)
    ((7, 4, 2, "same", None, 1), (14, 1)),
    ((7, 5, 2, "same", None, 1), (14, 1)),
    ((5, 3, 2, "same", 1, 1), (10, 0)),
    ((3, 2, 4, "same", None, 1), (12, 0)),
    ((4, 5, 2, "same", 0, 1), (7, 2)),
    ((4, 3, 2, "valid", None, 1), (9, 0)),
    ((3, 1, 3, "valid", None, 1), (9, 0)),  # strides beyond the kernel: gaps of bias
    ((4, 3, 3, "valid", 2, 1), (14, 0)),
    ((4, 3, 1, "same", None, 2), (4, 2)),
    ((None, 3, 2, "same", None, 1), (None, 0)),
])
def test_conv_transpose_length(args, expected):
    assert conv_transpose_length(*args) == expected


@pytest.mark.parametrize(("layer", "settings", "words"), [
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 2},
     ["`output_padding` must be strictly less than `strides`", "output_padding=(2, 2)"]),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
     ["`strides > 1` not supported", "dilation_rate=(2,)"]),
    ("Conv3D", {"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
     ["`strides > 1` not supported"]),
    ("Conv3D", {"filters": 3, "kernel_size": 3, "groups": 2},
     ["divisible by the number of groups", "Received: groups=2, filters=3"]),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": 3, "padding": "causal"},
     ["expected 'valid' or 'same'. Received: padding='causal'"]),
    ("SeparableConv1D", {"filters": 2, "kernel_size": 3, "padding": "causal"},
     ["Received: padding='causal'"]),
    ("AveragePooling3D", {}, ["pool_size"]),
    ("MaxPooling3D", {"pool_size": [2, 2]}, ["a list of 3 ints", "pool_size=[2, 2]"]),
    ("Conv3D", {"filters": 2, "kernel_size": 3, "data_format": "channels_first"},
     ["channels_last", "data_format='channels_first'"]),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "output_padding": -1},
     ["output_padding=-1"]),
])
def test_settings_keras_refuses_are_errors(tmp_path, layer, settings, words):
    from seqcli.errors import SeqcliError

    with pytest.raises(SeqcliError) as error:
        model_from({"input_shape": [4, 4, 4, 2] if "3D" in layer else [8, 2],
                    "layers": [{"type": layer, **settings}]})
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(("layer", "settings", "shape", "words"), [
    ("Conv3D", {"filters": 2, "kernel_size": 3}, [4, 4, 2],
     ["inputs of shape (depth, height, width, channels)", "(None, 4, 4, 2)"]),
    ("MaxPooling3D", {}, [4, 4, 2], ["(depth, height, width, channels)"]),
    ("Conv3D", {"filters": 2, "kernel_size": 3}, [2, 4, 4, 2], ["zero or negative"]),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": 2, "padding": "same",
                         "output_padding": 0}, [1, 3, 2], ["zero or negative"]),
])
def test_shapes_that_do_not_fit_are_errors(layer, settings, shape, words):
    from seqcli.errors import SeqcliError

    with pytest.raises((SeqcliError, ShapeError)) as error:
        model = model_from({"input_shape": shape, "layers": [{"type": layer, **settings}]})
        from seqcli.build import build

        build(model)
    for word in words:
        assert word in str(error.value)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize(("cls", "settings", "shape"), [
    (Conv1DTranspose, {"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 1}, (4, 2)),
    (Conv2DTranspose, {"filters": 2, "kernel_size": [3, 2], "strides": [1, 3], "padding": "same",
                       "activation": "tanh"}, (3, 2, 3)),
    (Conv2DTranspose, {"filters": 2, "kernel_size": 1, "strides": 3}, (2, 2, 2)),
    (Conv3DTranspose, {"filters": 2, "kernel_size": 2, "dilation_rate": [1, 2, 1],
                       "padding": "same"}, (2, 3, 2, 2)),
])
def test_transposed_layers_train_as_finite_differences_say(cls, settings, shape):
    """The layer's backward (convolution kernels) against central differences of the slow
    scatter reference."""
    layer = cls.model_validate(settings)
    rng = np.random.default_rng(5)
    x = _normal(rng, (2, *shape))
    weights = {name: _normal(rng, size, 0.7) for name, size in layer.param_shapes(shape).items()}
    y, cache = layer.forward_train(weights, x, rng)
    dy = _normal(rng, y.shape)
    dx, grads = layer.backward(weights, cache, dy)
    rank = layer.rank
    lead = (1,) * (3 - rank)
    lengths = layer._lengths(shape[:-1])

    def reference(x, kernel, bias):
        x5 = x.reshape(x.shape[0], *lead, *x.shape[1:])
        y = naive.naive_conv_transpose(
            x5, kernel.reshape(*lead, *kernel.shape), bias, lead + layer.strides,
            lead + layer.dilation_rate, (0,) * (3 - rank) + tuple(c for _, c in lengths),
            lead + tuple(n for n, _ in lengths), layer.activation)
        return y.reshape(y.shape[0], *y.shape[4 - rank:])

    bias = weights.get("bias", np.zeros(layer.filters, F32))
    args = [x, weights["kernel"], bias]
    np.testing.assert_allclose(y, reference(*args), rtol=1e-5, atol=1e-5)
    for got, wrt in ((dx, 0), (grads["kernel"], 1)) + (((grads["bias"], 2),) if "bias" in grads
                                                        else ()):
        np.testing.assert_allclose(got, naive_grad.numeric_vjp(reference, args, wrt, dy),
                                   rtol=1e-4, atol=1e-4)


def test_pooling3d_routes_ties_to_the_first_cell_in_depth_height_width_order():
    layer = MaxPooling3D(pool_size=2)
    x = np.ones((1, 2, 2, 2, 1), F32)
    y, cache = layer.forward_train({}, x, None)
    dx, _ = layer.backward({}, cache, np.full(y.shape, 3.0, F32))
    assert dx.ravel().tolist() == [3.0, 0, 0, 0, 0, 0, 0, 0]
    x = np.zeros((1, 2, 2, 2, 1), F32)
    x[0, 1, 0, 1, 0] = x[0, 1, 1, 0, 0] = 5.0  # tied in the back slice
    y, cache = layer.forward_train({}, x, None)
    dx, _ = layer.backward({}, cache, np.ones(y.shape, F32))
    assert np.argwhere(dx[0, ..., 0]).tolist() == [[1, 0, 1]]


def test_average_pooling3d_counts_real_cells_only():
    layer = AveragePooling3D(pool_size=2, padding="same")
    x = np.arange(1, 4, dtype=F32).reshape(1, 3, 1, 1, 1)  # depth 3: windows [1, 2], [3]
    assert layer.forward({}, x).ravel().tolist() == [1.5, 3.0]


# ----------------------------------------------------------------------------- end to end


def test_python_api_builds_a_generator_and_predicts():
    model = Sequential([
        Dense(units=4 * 4 * 3),
        Reshape(target_shape=[4, 4, 3]),
        Conv2DTranspose(filters=2, kernel_size=4, strides=2, padding="same",
                        activation="leaky_relu"),
        Conv2DTranspose(filters=1, kernel_size=3, strides=2, padding="same", activation="tanh"),
    ], input_shape=(5,), seed=1)
    y = model.predict(np.random.default_rng(0).random((3, 5), dtype=F32))
    assert y.shape == (3, 16, 16, 1) and np.abs(y).max() <= 1
    assert model.weights["conv2d_transpose/kernel"].shape == (4, 4, 2, 3)
    volume = Sequential([Conv3D(filters=2, kernel_size=3, activation="relu"),
                         MaxPooling3D(), Conv3DTranspose(filters=1, kernel_size=2, strides=2),
                         GlobalAveragePooling3D()], input_shape=(6, 6, 4, 1))
    assert volume.predict(np.ones((2, 6, 6, 4, 1), F32)).shape == (2, 1)


GENERATOR = """\
input_shape: [6]
seed: 4
layers:
  - type: Dense
    units: 48
  - type: Reshape
    target_shape: [4, 4, 3]
  - type: Conv2DTranspose
    filters: 4
    kernel_size: 4
    strides: 2
    padding: same
    activation: leaky_relu
  - type: Conv2DTranspose
    filters: 1
    kernel_size: 3
    strides: 2
    padding: same
    output_padding: 1
    activation: tanh
"""


def test_generator_through_the_command_line(cli, tmp_path):
    """summary (Keras's shapes and counts), init, predict, fit, export-onnx (onnxruntime gives
    the same images)."""
    import json

    model = tmp_path / "generator.yaml"
    model.write_text(GENERATOR)
    result = cli("summary", model, "--json")
    assert result.code == 0, result
    rows = json.loads(result.out)["layers"]
    assert [row["output_shape"] for row in rows] == [[None, 48], [None, 4, 4, 3],
                                                     [None, 8, 8, 4], [None, 16, 16, 1]]
    assert [row["params"] for row in rows] == [336, 0, 196, 37]
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    rng = np.random.default_rng(6)
    np.save(x, rng.random((5, 6), dtype=F32))
    np.save(y, rng.random((5, 16, 16, 1), dtype=F32) - 0.5)
    out = tmp_path / "out.npy"
    assert cli("predict", model, x, "-o", out).code == 0
    assert np.load(out).shape == (5, 16, 16, 1)
    trained = tmp_path / "trained.safetensors"
    result = cli("fit", model, x, y, "--optimizer", "sgd", "--epochs", "2", "--batch-size", "5",
                 "-o", trained)
    assert result.code == 0, result
    ort = pytest.importorskip("onnxruntime")
    onnx_file = tmp_path / "generator.onnx"
    assert cli("export-onnx", model, "-o", onnx_file).code == 0
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": np.load(x)})[0]
    np.testing.assert_allclose(got, np.load(out), rtol=1e-5, atol=2e-6)



def test_kept_transposed_kernel_follows_weights_changed_in_place():
    """The transposed kernel is kept between calls, but a kernel changed in place (as `fit`
    does) is transposed again, also through a reshaped view of it."""
    rng = np.random.default_rng(7)
    x, kernel = _normal(rng, (2, 3, 3, 2)), _normal(rng, (3, 3, 4, 2))
    layer = Conv2DTranspose(filters=4, kernel_size=3, strides=2, padding="same")
    first = layer.forward({"kernel": kernel, "bias": np.zeros(4, F32)}, x)
    kernel *= 2.0
    second = layer.forward({"kernel": kernel, "bias": np.zeros(4, F32)}, x)
    np.testing.assert_allclose(second, 2.0 * first, rtol=1e-6)
