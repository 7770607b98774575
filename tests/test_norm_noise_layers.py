"""Normalization, GroupNormalization, UnitNormalization and the training-only layers
(GaussianNoise, GaussianDropout, AlphaDropout, SpatialDropout1D/2D/3D, ActivityRegularization,
Identity): hand-computed kernel cases, gradients against finite differences, Keras's
refusals, the identity at inference, the statistics of the noise over many draws, the exact
gradient for a fixed draw, the penalty in `fit`'s loss, and the Keras-made regression model
(adapt()-ed) trained one SGD step as Keras does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from seqcli.errors import ConfigError
from seqcli.io.weights import read_weights
from seqcli.kernels import grad_normalization_more as g_more
from seqcli.kernels import normalization_more as k_more
from seqcli.layers import (
    ActivityRegularization,
    AlphaDropout,
    GaussianDropout,
    GaussianNoise,
    GroupNormalization,
    Identity,
    Normalization,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
    UnitNormalization,
)
from seqcli.shapes import ShapeError
from seqcli.warmup import one_layer_model

try:
    from tests import naive, naive_grad
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive
    import naive_grad

FILES = Path(__file__).parent / "keras_files"
F32 = np.float32


def _close(got, expected, tolerance=1e-5):
    expected = np.asarray(expected, np.float64)
    scale = max(1.0, float(np.abs(expected).max()))
    assert got.dtype == F32 and got.shape == expected.shape
    assert float(np.abs(got - expected).max()) <= tolerance * scale


# ------------------------------------------------------------------------------ kernels


def test_normalization_kernel_hand_cases():
    x = np.array([[1, 2], [3, 4]], F32)
    y = k_more.normalization_forward(x, [1, 2], [4, 0])
    # a zero variance divides by Keras's epsilon 1e-7
    np.testing.assert_allclose(y, [[0, 0], [1, 2e7]], rtol=1e-6)
    np.testing.assert_allclose(k_more.normalization_forward(x, [1, 2], [4, 1], invert=True),
                               [[3, 4], [7, 6]])
    with pytest.raises(ValueError):
        k_more.normalization_forward(x, [1, 2, 3], [1, 1, 1])


def test_group_norm_kernel_hand_case():
    # channels [1, 2 | 3, 5]: group means 1.5 and 4, variances 0.25 and 1
    x = np.array([1, 2, 3, 5], F32).reshape(1, 1, 4, 1)
    y = k_more.group_norm_forward(x, np.ones(4), np.zeros(4), 2, 0.0)
    np.testing.assert_allclose(y.ravel(), [-1, 1, -1, 1], atol=1e-6)
    y = k_more.group_norm_forward(x, [1, 2, 1, 1], [0, 0, 0, 3], 2, 0.0)
    np.testing.assert_allclose(y.ravel(), [-1, 2, -1, 4], atol=1e-6)
    with pytest.raises(ValueError):
        k_more.group_norm_forward(x, np.ones(4), np.zeros(4), 3, 1e-3)


def test_unit_norm_kernel_hand_cases():
    y = k_more.unit_norm_forward(np.array([[3, 4], [0, 0], [-2, 0]], F32))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0, 0], [-1, 0]], atol=1e-7)


@pytest.mark.parametrize("shape, groups", [((2, 3, 4, 5), 2), ((3, 1, 6, 1), 6),
                                           ((1, 4, 3, 2), 1), ((5, 2, 8, 3), 4)])
def test_group_norm_kernels_against_references(shape, groups):
    rng = np.random.default_rng(sum(shape))
    x = (rng.normal(size=shape) * 3 + 1).astype(F32)
    gamma, beta = rng.normal(size=shape[2]).astype(F32), rng.normal(size=shape[2]).astype(F32)
    _close(k_more.group_norm_forward(x, gamma, beta, groups, 1e-3),
           naive.naive_group_norm(x, gamma, beta, groups, 1e-3))
    small = x[:2, :2, :, :2]  # finite differences of the float64 forward, one value at a time
    dy = rng.normal(size=small.shape).astype(F32)
    got = g_more.group_norm_backward(small, gamma, groups, 1e-3, dy)
    args = [small, gamma, beta, groups, 1e-3]
    for grad, wrt in zip(got, (0, 1, 2)):
        _close(grad, naive_grad.numeric_vjp(naive_grad.group_norm64, args, wrt, dy), 2e-5)


@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (3, 40)])
def test_unit_norm_kernels_against_references(shape):
    rng = np.random.default_rng(shape[1])
    x = rng.normal(size=shape).astype(F32)
    _close(k_more.unit_norm_forward(x), naive.naive_unit_norm(x))
    dy = rng.normal(size=shape).astype(F32)
    _close(g_more.unit_norm_backward(x, dy),
           naive_grad.numeric_vjp(naive_grad.unit_norm64, [x], 0, dy), 2e-5)
    # a zero row: the inverse norm is clipped to 1e12, a constant
    np.testing.assert_array_equal(g_more.unit_norm_backward(np.zeros((1, 3)), np.ones((1, 3))),
                                  np.full((1, 3), 1e12, F32))


def test_normalization_kernel_against_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 7)).astype(F32) * 10
    mean, variance = rng.normal(size=7).astype(F32), rng.uniform(0, 4, 7).astype(F32)
    for invert in (False, True):
        _close(k_more.normalization_forward(x, mean, variance, invert),
               naive.naive_normalization(x, mean, variance, invert))


# ------------------------------------------------------------------------ Normalization


def test_normalization_keras_docstring_examples():
    """keras.layers.Normalization's own examples: given mean 3 and variance 2; adapted
    statistics (mean [1, 8, 5], variance [1, 1, 1]) inverted."""
    layer = Normalization(mean=3.0, variance=2.0)
    y = layer.forward({}, np.array([[1.0], [2.0], [3.0]], F32))
    np.testing.assert_allclose(y.ravel(), [-1.4142135, -0.70710677, 0.0], rtol=1e-7)
    inverted = Normalization(axis=-1, invert=True)
    weights = {"mean": np.array([1, 8, 5], F32), "variance": np.ones(3, F32),
               "count": np.array(4, F32)}
    np.testing.assert_array_equal(inverted.forward(weights, np.array([[1, 2, 3]], F32)),
                                  [[2, 10, 8]])


def test_normalization_weights_and_broadcasting():
    model = one_layer_model("Normalization", {"axis": [1, 3]}, (2, 3, 4))
    model.build()
    assert {k: v.shape for k, v in model.weight_arrays.items()} == {
        "normalization/mean": (2, 4), "normalization/variance": (2, 4),
        "normalization/count": ()}
    assert model.built_model.trainable_keys == frozenset()
    # a given mean of shape (3, 1) sits on the kept axes (1, 2) from the right
    layer = Normalization(axis=[1, 2], mean=[[1.0], [2.0], [3.0]], variance=[[1.0], [4.0],
                                                                              [9.0]])
    y = layer.forward({}, np.ones((1, 3, 2), F32) * 3)
    np.testing.assert_allclose(y[0], [[2, 2], [0.5, 0.5], [0, 0]], rtol=1e-6)


@pytest.mark.parametrize("settings, words", [
    ({"mean": 1.0}, "both `mean` and `variance`"),
    ({"mean": [1.0, 2.0], "variance": [1.0]}, "the same shape"),
    ({"axis": None, "mean": [1.0], "variance": [1.0]}, "rank of `mean`"),
    ({"mean": [1.0, [2.0]], "variance": [1.0, 2.0]}, "rectangular"),
    ({"mean": 1.0, "variance": -1.0}, "negative"),
    ({"mean": "a", "variance": 1.0}, "Received: mean='a'"),
    ({"axis": [1, 1]}, "distinct"),
])
def test_normalization_refusals(settings, words):
    with pytest.raises(ValidationError, match=words.replace("(", r"\(")):
        Normalization(**settings)


def test_normalization_shape_refusals():
    with pytest.raises(ShapeError, match="batch axis"):
        Normalization(axis=0).output_shape((3,))
    with pytest.raises(ShapeError, match="does not broadcast"):
        Normalization(mean=[1.0, 2.0], variance=[1.0, 1.0]).output_shape((3,))
    with pytest.raises(ShapeError, match="must be defined"):
        Normalization(axis=1).output_shape((None, 3))


def test_fit_never_changes_normalization_statistics(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [3]\nseed: 1\nlayers:\n  - {type: Normalization}\n"
                     "  - {type: Dense, units: 1}\n")
    weights = {"normalization/mean": np.array([1, 2, 3], F32),
               "normalization/variance": np.array([1, 4, 9], F32),
               "normalization/count": np.array(7, F32),
               "dense/kernel": np.ones((3, 1), F32), "dense/bias": np.zeros(1, F32)}
    np.savez(tmp_path / "w.npz", **weights)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(8, 3)).astype(F32))
    np.save(tmp_path / "y.npy", rng.normal(size=(8, 1)).astype(F32))
    result = cli("fit", model, tmp_path / "x.npy", tmp_path / "y.npy", "--weights",
                 tmp_path / "w.npz", "--epochs", "2", "-o", tmp_path / "out.npz", "-q")
    assert result.code == 0, result
    got = read_weights(tmp_path / "out.npz")
    for key in ("normalization/mean", "normalization/variance", "normalization/count"):
        assert got[key].tobytes() == weights[key].tobytes(), key
    assert not np.array_equal(got["dense/kernel"], weights["dense/kernel"])


def test_keras_made_adapted_regression_trains_one_step_as_keras(cli, tmp_path):
    """tests/keras_files/regression_adapt.keras (the regression tutorial, adapt()-ed): import,
    then one full-batch SGD step equals Keras's train_on_batch; the statistics stay put."""
    result = cli("import-keras", FILES / "regression_adapt.keras", "-o", tmp_path / "m.yaml")
    assert result.code == 0, result
    keras_step = np.load(FILES / "regression_adapt.sgd.npz")
    np.save(tmp_path / "y.npy", keras_step["y"])
    result = cli("fit", tmp_path / "m.yaml", FILES / "regression_adapt.input.npy",
                 tmp_path / "y.npy", "--loss", "mse", "--optimizer", "sgd", "--learning-rate",
                 "0.1", "--epochs", "1", "--batch-size", "3", "--no-shuffle",
                 "--history", tmp_path / "h.json", "-o", tmp_path / "out.npz", "-q")
    assert result.code == 0, result
    got = read_weights(tmp_path / "out.npz")
    before = read_weights(tmp_path / "m.safetensors")
    for key in keras_step.files:
        if key.startswith("after/"):
            name = key.removeprefix("after/")
            want = keras_step[key]
            assert float(np.abs(got[name] - want).max()) <= 2e-4 * max(
                float(np.abs(want).max()), 1e-3), name
    for name in ("mean", "variance", "count"):
        key = f"normalization/{name}"
        assert got[key].tobytes() == before[key].tobytes()
    history = json.loads((tmp_path / "h.json").read_text())
    np.testing.assert_allclose(history["loss"][0], keras_step["loss"], rtol=1e-4)


# ------------------------------------------------------------- group and unit normalization


@pytest.mark.parametrize("settings, shape, words", [
    ({"groups": 3}, (4,), "must be a multiple"),
    ({"groups": 8}, (4,), "cannot be more than"),
    ({"groups": 2, "axis": 0}, (4,), "batch axis"),
    ({"groups": 2}, (None,), "must be defined"),
])
def test_group_normalization_shape_refusals(settings, shape, words):
    with pytest.raises(ShapeError, match=words):
        GroupNormalization(**settings).output_shape(shape)


def test_group_normalization_refusals_and_instance_norm():
    for groups in (0, -2):
        with pytest.raises(ValidationError, match=f"Received: groups={groups}"):
            GroupNormalization(groups=groups)
    with pytest.raises(ValidationError):
        GroupNormalization(axis=[1, 2])  # Keras indexes the shape with it: an int only
    layer = GroupNormalization(groups=-1)  # one group per channel: instance normalisation
    assert layer.param_shapes((5, 3)) == {"gamma": (3,), "beta": (3,)}
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(F32)
    y = layer.forward({"gamma": np.ones(3, F32), "beta": np.zeros(3, F32)}, x)
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-6)


def test_unit_normalization_over_two_axes():
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 2)).astype(F32)
    y = UnitNormalization(axis=[1, 3]).forward({}, x)
    np.testing.assert_allclose(np.sqrt((y.astype(np.float64) ** 2).sum(axis=(1, 3))), 1,
                               rtol=1e-6)
    with pytest.raises(ValidationError, match="distinct"):
        UnitNormalization(axis=[1, -1, 1])


# ------------------------------------------------------------------ training-only layers

RANDOM_LAYERS = [
    GaussianNoise(stddev=0.5), GaussianDropout(rate=0.3), AlphaDropout(rate=0.2),
    SpatialDropout1D(rate=0.5), SpatialDropout2D(rate=0.5), SpatialDropout3D(rate=0.5),
    ActivityRegularization(l1=0.1, l2=0.2), Identity(),
]
SHAPES = {"SpatialDropout1D": (4, 3), "SpatialDropout2D": (3, 2, 3),
          "SpatialDropout3D": (2, 2, 2, 3)}


@pytest.mark.parametrize("layer", RANDOM_LAYERS, ids=lambda layer: layer.type)
def test_identity_at_inference_and_exact_gradient_for_a_fixed_draw(layer):
    shape = (5, *SHAPES.get(layer.type, (6,)))
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(F32)
    x += np.sign(x) * F32(0.1)  # away from the kink of |x| (ActivityRegularization's l1)
    assert layer.forward({}, x) is x  # inference: the identity, as Keras
    assert layer.output_shape(shape[1:]) == shape[1:]
    _, cache = layer.forward_train({}, x, np.random.default_rng(11))
    dy = rng.normal(size=shape).astype(F32)
    dx, grads = layer.backward({}, cache, dy)
    assert grads == {} and dx.dtype == F32 and dx.shape == shape

    def draw(values):  # the same seed: the same draw, whatever the values
        out, _ = layer.forward_train({}, np.asarray(values, F32), np.random.default_rng(11))
        loss = float(np.sum(np.asarray(out, np.float64) * dy))
        return loss + layer.output_penalty(np.asarray(values, np.float64))

    numeric = np.zeros(shape)
    step = 1e-2
    for index in np.ndindex(shape):
        up, down = x.astype(np.float64), x.astype(np.float64)
        up[index] += step
        down[index] -= step
        numeric[index] = (draw(up) - draw(down)) / (2 * step)
    np.testing.assert_allclose(dx, numeric, rtol=1e-3, atol=1e-3)


def test_gaussian_noise_statistics():
    x = np.zeros((400, 250), F32)
    y, _ = GaussianNoise(stddev=0.3).forward_train({}, x, np.random.default_rng(0))
    assert abs(float(y.mean())) < 0.005 and abs(float(y.std()) - 0.3) < 0.005


def test_gaussian_dropout_statistics():
    x = np.ones((400, 250), F32)
    y, factors = GaussianDropout(rate=0.2).forward_train({}, x, np.random.default_rng(0))
    assert abs(float(y.mean()) - 1) < 0.005
    assert abs(float(y.std()) - math.sqrt(0.2 / 0.8)) < 0.005  # Keras: sqrt(rate/(1-rate))
    np.testing.assert_array_equal(y, factors)


def test_alpha_dropout_keeps_selu_statistics_and_its_dropped_value():
    layer = AlphaDropout(rate=0.3)
    x = np.random.default_rng(1).normal(size=(500, 200)).astype(F32)
    y, keep = layer.forward_train({}, x, np.random.default_rng(2))
    a, b, dropped = layer.coefficients()
    assert abs(float(keep.mean()) - 0.7) < 0.005
    np.testing.assert_allclose(y[keep == 0], np.float32(a * dropped + b), rtol=1e-6)
    np.testing.assert_allclose(y[keep == 1], a * x[keep == 1] + b, rtol=1e-5, atol=1e-6)
    # a standard normal input keeps mean 0 and variance 1 (the point of alpha dropout)
    assert abs(float(y.mean())) < 0.01 and abs(float(y.var()) - 1) < 0.02
    shared = AlphaDropout(rate=0.5, noise_shape=[None, 1, 3])
    _, keep = shared.forward_train({}, np.ones((6, 4, 3), F32), np.random.default_rng(3))
    assert keep.shape == (6, 1, 3)  # one draw per sample and channel, shared by the steps
    with pytest.raises(ShapeError, match="noise_shape"):
        AlphaDropout(rate=0.5, noise_shape=[None, 2, 3]).output_shape((4, 3))


@pytest.mark.parametrize("layer, shape", [(SpatialDropout1D(rate=0.4), (7, 5)),
                                          (SpatialDropout2D(rate=0.4), (3, 4, 5)),
                                          (SpatialDropout3D(rate=0.4), (2, 3, 2, 5))],
                         ids=lambda v: getattr(v, "type", ""))
def test_spatial_dropout_drops_whole_channels(layer, shape):
    x = np.ones((300, *shape), F32)
    y, mask = layer.forward_train({}, x, np.random.default_rng(5))
    per_channel = y.reshape(300, -1, shape[-1])
    assert np.all(per_channel.min(axis=1) == per_channel.max(axis=1))  # all or nothing
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.6)}
    assert abs(float((per_channel[:, 0] == 0).mean()) - 0.4) < 0.03
    with pytest.raises(ShapeError, match="rank"):
        layer.output_shape(shape + (1,))
    zeros, _ = type(layer)(rate=1.0).forward_train({}, x, np.random.default_rng(0))
    assert not zeros.any()


def test_training_only_refusals():
    with pytest.raises(ValidationError, match=r"Received: stddev=1.5"):
        GaussianNoise(stddev=1.5)
    for cls in (GaussianDropout, AlphaDropout, SpatialDropout2D):
        with pytest.raises(ValidationError, match=r"Received: rate=-0.1"):
            cls(rate=-0.1)
    with pytest.raises(ValidationError, match=r"Received: l2=-1"):
        ActivityRegularization(l2=-1.0)
    with pytest.raises(ValidationError, match="channels_last"):
        SpatialDropout2D(rate=0.5, data_format="channels_first")
    for layer in (GaussianDropout(rate=1.0, name="g"), AlphaDropout(rate=1.0, name="a")):
        assert layer.forward({}, np.ones(2, F32)) is not None  # fine at inference
        with pytest.raises(ConfigError, match="rate 1 cannot train"):
            layer.forward_train({}, np.ones((2, 2), F32), np.random.default_rng(0))


def test_noise_in_fit_follows_the_seed(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [4]\nseed: 3\nlayers:\n  - {type: GaussianNoise, stddev: 0.5}\n"
                     "  - {type: Dense, units: 3, activation: selu}\n"
                     "  - {type: AlphaDropout, rate: 0.3}\n  - {type: Dense, units: 1}\n")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(16, 4)).astype(F32))
    np.save(tmp_path / "y.npy", rng.normal(size=(16, 1)).astype(F32))

    def trained(seed, name):
        result = cli("fit", model, tmp_path / "x.npy", tmp_path / "y.npy", "--seed", seed,
                     "--epochs", "2", "-o", tmp_path / name, "-q")
        assert result.code == 0, result
        return read_weights(tmp_path / name)

    first, again, other = trained(1, "a.npz"), trained(1, "b.npz"), trained(2, "c.npz")
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)


# ----------------------------------------------------------------- ActivityRegularization


def test_activity_penalty_is_keras_l1l2_over_the_batch_size():
    layer = ActivityRegularization(l1=0.1, l2=0.5)
    y = np.array([[1.0, -2.0], [0.0, 3.0]], F32)
    # (0.1 * 6 + 0.5 * 14) / 2 samples
    assert layer.output_penalty(y) == pytest.approx(3.8)
    dx, _ = layer.backward({}, y, np.zeros_like(y))
    np.testing.assert_allclose(dx, [[0.55, -1.05], [0.0, 1.55]], rtol=1e-6)
    assert Identity().output_penalty(y) == 0.0


def test_validation_loss_counts_the_penalty(cli, tmp_path):
    """Keras's test_step adds the layers' losses too: val_loss = mse + penalty."""
    from seqcli.training.fit import evaluate
    from seqcli.training.losses import get_loss

    model = one_layer_model("ActivityRegularization", {"l1": 0.5}, (3,))
    model.build()
    x = np.array([[1, -1, 2], [0, 0, 1]], F32)
    y = np.zeros((2, 3), F32)
    metrics = evaluate(model.built_model, model.weight_arrays, x, y, get_loss("mse"), 2)
    mse = float(np.mean(x.astype(np.float64) ** 2))
    assert metrics["loss"] == pytest.approx(mse + 0.5 * 5 / 2)
