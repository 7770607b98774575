"""Losses, their gradients and optimizer steps against values recorded from Keras 3
(tests/training_reference/make_loss_optimizer_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqcli.kernels import updates as k_upd
from seqcli.training.losses import get_loss
from seqcli.training.metrics import get_metric
from seqcli.training.optimizers import get_optimizer

try:
    from tests import naive
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive

KERAS = np.load(Path(__file__).parent / "training_reference" / "losses_optimizers.npz")
LOSS_CASES = sorted({key.split("/")[0] for key in KERAS.files if key.endswith("/value")})


def _loss(case: str):
    name = case.removesuffix("_logits").removesuffix("_rank3")
    return get_loss(name, from_logits=case.endswith("_logits"))


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_value_and_gradient_equal_keras(case):
    loss = _loss(case)
    y_true, y_pred = KERAS[f"{case}/y_true"], KERAS[f"{case}/y_pred"]
    assert loss.value(y_true, y_pred) == pytest.approx(float(KERAS[f"{case}/value"]), rel=1e-5)
    np.testing.assert_allclose(loss.gradient(y_true, y_pred), KERAS[f"{case}/gradient"],
                               rtol=1e-4, atol=1e-7)


def test_every_loss_has_a_keras_case():
    from seqcli.training.losses import LOSSES

    assert set(LOSSES) <= {c.removesuffix("_logits").removesuffix("_rank3") for c in LOSS_CASES}


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    metric = get_metric("accuracy", y_true, y_pred.shape[1:])
    metric.update(y_true, y_pred)
    return metric.result()


def test_accuracy_kind_follows_the_shapes_as_in_keras():
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]], np.float32)
    assert _accuracy(np.array([1, 1, 1]), probabilities) == 2 / 3  # sparse labels
    assert _accuracy(np.array([[1], [1], [0]]), probabilities) == 1 / 3  # (N, 1) labels
    onehot = np.array([[0, 1], [0, 1], [1, 0]], np.float32)
    assert _accuracy(onehot, probabilities) == 1 / 3  # categorical
    one_unit = np.array([[0.7], [0.2]], np.float32)
    assert _accuracy(np.array([[1.0], [1.0]]), one_unit) == 1 / 2  # binary, 0.5


def test_unknown_loss_suggests():
    with pytest.raises(ValueError, match="Did you mean 'mse'"):
        get_loss("mss")


OPTIMIZER_CASES = {
    "sgd": dict(name="sgd"),
    "sgd_momentum": dict(name="sgd", learning_rate=0.1, momentum=0.9),
    "sgd_nesterov": dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True),
    "adam": dict(name="adam"),
    "adam_lr": dict(name="adam", learning_rate=0.05),
    "rmsprop": dict(name="rmsprop"),
    "rmsprop_momentum": dict(name="rmsprop", learning_rate=0.01, momentum=0.5),
}


@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_optimizer_steps_equal_keras(case):
    optimizer = get_optimizer(**OPTIMIZER_CASES[case])
    weights = {"w": KERAS["optimizer/start"].copy()}
    for step in range(3):
        optimizer.apply(weights, {"w": KERAS[f"optimizer/gradient_{step}"]})
        np.testing.assert_allclose(weights["w"], KERAS[f"optimizer/{case}/step_{step}"],
                                   rtol=1e-6, atol=1e-7)


# (kernel, its reference, its arguments from the variable, the gradient and two state arrays)
UPDATE_CASES = {
    "sgd": (k_upd.sgd_update, naive.naive_sgd_update,
            lambda w, g, s: (w, g, None, 0.01, 0.0, False)),
    "sgd_momentum": (k_upd.sgd_update, naive.naive_sgd_update,
                     lambda w, g, s: (w, g, s[0], 0.1, 0.9, False)),
    "sgd_nesterov": (k_upd.sgd_update, naive.naive_sgd_update,
                     lambda w, g, s: (w, g, s[0], 0.1, 0.9, True)),
    "adam": (k_upd.adam_update, naive.naive_adam_update,
             lambda w, g, s: (w, g, s[0], s[1], np.float32(0.00123), 0.9, 0.999, 1e-7)),
    "rmsprop": (k_upd.rmsprop_update, naive.naive_rmsprop_update,
                lambda w, g, s: (w, g, s[0], None, 0.001, 0.9, 1e-7, 0.0)),
    "rmsprop_momentum": (k_upd.rmsprop_update, naive.naive_rmsprop_update,
                         lambda w, g, s: (w, g, s[0], s[1], 0.01, 0.8, 1e-7, 0.5)),
}


@pytest.mark.parametrize("shape", [(1,), (7, 5), (3, 3, 2, 17)])
@pytest.mark.parametrize("case", sorted(UPDATE_CASES))
def test_update_kernels_equal_keras_float32_ops_bit_for_bit(case, shape):
    kernel, reference, arguments = UPDATE_CASES[case]
    rng = np.random.default_rng(3)
    start = rng.standard_normal(shape).astype(np.float32)
    got, want = start.copy(), start.copy()
    got_states = [np.zeros(shape, np.float32), np.zeros(shape, np.float32)]
    want_states = [state.copy() for state in got_states]
    for _ in range(4):  # gradients from 1e-4 to 1e2: the roundings of every size
        gradient = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 2, shape)).astype(
            np.float32)
        kernel(*arguments(got, gradient, got_states))
        reference(*arguments(want, gradient, want_states))
        np.testing.assert_array_equal(got, want)
        for got_state, want_state in zip(got_states, want_states):
            np.testing.assert_array_equal(got_state, want_state)


def test_update_kernels_write_through_strided_weights_and_refuse_misfits():
    rng = np.random.default_rng(4)
    weights = rng.standard_normal((6, 4)).astype(np.float32)
    gradient = rng.standard_normal((4, 3)).astype(np.float32)
    strided, copy = weights.T[:, ::2], weights.T[:, ::2].copy()  # (4, 3) views, not contiguous
    others = weights.T[:, 1::2].copy()
    m, v = np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)
    k_upd.adam_update(strided, gradient, m, v, 0.1, 0.9, 0.999, 1e-7)
    naive.naive_adam_update(copy, gradient, np.zeros_like(m), np.zeros_like(v), 0.1, 0.9, 0.999,
                            1e-7)
    np.testing.assert_array_equal(weights.T[:, ::2], copy)
    np.testing.assert_array_equal(weights.T[:, 1::2], others)  # untouched
    with pytest.raises(ValueError, match="does not match"):
        k_upd.adam_update(m, np.ones((3, 4)), np.zeros_like(m), np.zeros_like(m), 0.1, 0.9,
                          0.999, 1e-7)
    with pytest.raises(ValueError, match="float32 array of shape"):
        k_upd.rmsprop_update(m, np.ones((4, 3)), np.zeros((4, 3)), None, 0.1, 0.9, 1e-7, 0.0)
