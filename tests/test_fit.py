"""`seqcli fit` against Keras 3's own training (tests/training_reference/make_fit_fixtures.py):
one full-batch SGD step on every reference model, and short fits with each loss and
optimizer; frozen weights stay bit-identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqcli.io.weights import read_weights

HERE = Path(__file__).parent
REFERENCE = HERE / "keras_reference"
TRAINING = HERE / "training_reference"
KERAS = np.load(TRAINING / "fit.npz")
PLAN = json.loads((TRAINING / "fit.json").read_text())
MANIFEST = {m["stem"]: m for m in json.loads((REFERENCE / "manifest.json").read_text())["models"]}


def _close(got: dict, expected: dict, rtol: float) -> None:
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        scale = max(float(np.abs(want).max()), 1e-3)
        error = float(np.abs(got[key] - want).max())
        assert error <= rtol * scale, (key, error, scale)


@pytest.mark.parametrize("stem", PLAN["sgd_steps"])
def test_one_sgd_step_equals_keras_train_on_batch(cli, stem, tmp_path):
    entry = MANIFEST[stem]
    files = entry["files"]
    np.save(tmp_path / "y.npy", KERAS[f"sgd/{stem}/y"])
    x = np.load(REFERENCE / files["input"])
    out = tmp_path / "trained.safetensors"
    result = cli("fit", REFERENCE / entry["model"], REFERENCE / files["input"], tmp_path / "y.npy",
                 "--weights", REFERENCE / files["weights"], "--loss", "mse",
                 "--optimizer", "sgd", "--learning-rate", "0.1", "--epochs", "1",
                 "--batch-size", str(len(x)), "--no-shuffle", "-o", out, "-q")
    assert result.code == 0, result
    prefix = f"sgd/{stem}/after/"
    expected = {k[len(prefix):]: KERAS[k] for k in KERAS.files if k.startswith(prefix)}
    got = read_weights(out)
    _close(got, expected, 2e-4)
    before = dict(np.load(REFERENCE / files["weights"]))
    for key, value in before.items():  # frozen (and unused) weights: bit-identical
        if np.array_equal(expected[key], value):
            assert np.array_equal(got[key], value), key


OPTIONS = {
    "sgd": lambda c: ["--optimizer", "sgd", "--learning-rate", str(c.get("learning_rate", 0.01)),
                      "--momentum", str(c.get("momentum", 0.0))]
    + (["--nesterov"] if c.get("nesterov") else []),
    "adam": lambda c: ["--optimizer", "adam", "--learning-rate",
                       str(c.get("learning_rate", 0.001))],
    "rmsprop": lambda c: ["--optimizer", "rmsprop", "--learning-rate",
                          str(c.get("learning_rate", 0.001)), "--momentum",
                          str(c.get("momentum", 0.0))],
}


@pytest.mark.parametrize("case", PLAN["fits"], ids=[f["key"] for f in PLAN["fits"]])
def test_fit_equals_keras(cli, case, tmp_path):
    key = case["key"]
    np.save(tmp_path / "x.npy", KERAS[f"{key}/x"])
    np.save(tmp_path / "y.npy", KERAS[f"{key}/y"])
    before = {k.split("/before/")[1]: KERAS[k] for k in KERAS.files
              if k.startswith(f"{key}/before/")}
    np.savez(tmp_path / "before.npz", **before)
    optimizer = case["optimizer"]
    args = ["fit", TRAINING / case["model"], tmp_path / "x.npy", tmp_path / "y.npy",
            "--weights", tmp_path / "before.npz", "--loss", case["loss"],
            *OPTIONS[optimizer["class_name"]](optimizer["config"]),
            "--epochs", str(case["epochs"]), "--batch-size", str(case["batch_size"]),
            "--no-shuffle", "--history", tmp_path / "history.json", "-o", tmp_path / "w.npz",
            "-q"]
    if case["from_logits"]:
        args.append("--from-logits")
    result = cli(*args)
    assert result.code == 0, result
    expected = {k.split("/after/")[1]: KERAS[k] for k in KERAS.files
                if k.startswith(f"{key}/after/")}
    _close(read_weights(tmp_path / "w.npz"), expected, 1e-3)
    history = json.loads((tmp_path / "history.json").read_text())
    for metric in ("loss", "accuracy"):
        if f"{key}/history/{metric}" in KERAS.files:
            np.testing.assert_allclose(history[metric], KERAS[f"{key}/history/{metric}"],
                                       rtol=1e-4, atol=1e-6)


def test_dropout_is_active_in_training_only():
    from seqcli.layers import Dropout

    layer = Dropout(rate=0.5)
    x = np.ones((200, 50), np.float32)
    y, mask = layer.forward_train({}, x, np.random.default_rng(0))
    assert set(np.unique(y)) == {0.0, 2.0}  # kept values scaled by 1 / (1 - rate)
    assert abs(float((y == 0).mean()) - 0.5) < 0.02
    dx, grads = layer.backward({}, mask, np.ones_like(x))
    np.testing.assert_array_equal(dx, y)  # the same mask routes the gradient
    assert grads == {}
    np.testing.assert_array_equal(layer.forward({}, x), x)  # inference: the identity


def test_every_layer_that_adds_to_the_loss_says_so():
    """A layer class with a loss penalty of its own on its output says when it has one
    (`has_output_penalty`): a training step asks no other layer for one."""
    from seqcli.layers import LAYER_CLASSES
    from seqcli.layers.base import Layer

    own = [cls for cls in LAYER_CLASSES if cls.output_penalty is not Layer.output_penalty]
    assert own  # ActivityRegularization, at least
    for cls in own:
        assert cls.has_output_penalty is not Layer.has_output_penalty, cls.__name__


def test_a_training_plan_made_once_gives_every_steps_numbers(tmp_path):
    """Steps sharing one `training_plan` (as `fit` makes it) compute what steps that each
    look the layers' regularizers, constraints and penalties up again compute, to the bit;
    a plan made for another model is not used."""
    from seqcli.runtime.model import load
    from seqcli.training.fit import train_step, training_plan
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    model = tmp_path / "m.yaml"
    model.write_text(
        "input_shape: [5]\nseed: 3\nlayers:\n"
        "  - {type: Dense, units: 6, activation: relu, kernel_regularizer: {l2: 0.01},\n"
        "     kernel_constraint: {type: MaxNorm, max_value: 0.5},\n"
        "     activity_regularizer: {l1: 0.001}}\n"
        "  - {type: ActivityRegularization, l2: 0.02}\n"
        "  - {type: Dense, units: 2, bias_regularizer: {l1: 0.1}}\n")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    runs = []
    for shared in (False, True):
        network = load(model)
        network.build()
        weights = {key: value.copy() for key, value in network.weight_arrays.items()}
        plan = training_plan(network.built_model) if shared else None
        optimizer, loss, steps = get_optimizer("adam"), get_loss("mse"), np.random.default_rng(1)
        losses = [train_step(network.built_model, weights, x, y, loss, optimizer, steps,
                             plan=plan)[0] for _ in range(3)]
        runs.append((losses, weights))
    (plain, plain_weights), (planned, planned_weights) = runs
    assert plain == planned and len(set(plain)) == 3
    network = load(model)  # the first step's loss by hand: mse, the weights' and the
    network.build()  # activities' penalties
    w = {key: value.astype(np.float64) for key, value in network.weight_arrays.items()}
    hidden = np.maximum(x @ w["dense/kernel"] + w["dense/bias"], 0)
    out = hidden @ w["dense_1/kernel"] + w["dense_1/bias"]
    expected = (np.mean((out - y) ** 2) + 0.01 * np.sum(w["dense/kernel"] ** 2)
                + 0.1 * np.sum(np.abs(w["dense_1/bias"])) + 0.001 * np.abs(hidden).sum() / 8
                + 0.02 * np.square(hidden).sum() / 8)
    assert plain[0] == pytest.approx(expected, rel=1e-5)
    for key, value in plain_weights.items():
        np.testing.assert_array_equal(planned_weights[key], value)
    assert float(np.linalg.norm(plain_weights["dense/kernel"], axis=0).max()) <= 0.5 + 1e-6
    other = load(model)
    other.build()
    stale = training_plan(other.built_model)
    network = load(model)
    network.build()
    weights = {key: value.copy() for key, value in network.weight_arrays.items()}
    first = train_step(network.built_model, weights, x, y, get_loss("mse"),
                       get_optimizer("adam"), np.random.default_rng(1), plan=stale)[0]
    assert first == plain[0]


def _regression_files(tmp_path, rows=12):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [3]\nseed: 2\nlayers:\n"
                     "  - {type: Dense, units: 4, activation: relu, trainable: false}\n"
                     "  - {type: Dense, units: 1}\n")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x.sum(axis=1, keepdims=True) * 0.5).astype(np.float32))
    return model


def test_validation_split_checkpoint_history_and_frozen_layers(cli, tmp_path):
    import seqcli

    model = _regression_files(tmp_path)
    result = cli("fit", model, tmp_path / "x.npy", tmp_path / "y.npy", "--optimizer", "sgd",
                 "--epochs", "3", "--batch-size", "4", "--validation-split", "0.25",
                 "--checkpoint", "--history", tmp_path / "h.json", "-o", tmp_path / "w.safetensors")
    assert result.code == 0, result
    epochs = [line for line in result.err.splitlines() if line.startswith("Epoch ")]
    assert len(epochs) == 3 and "val_loss" in epochs[0]
    history = json.loads((tmp_path / "h.json").read_text())
    assert sorted(history) == ["loss", "val_loss"] and len(history["loss"]) == 3
    trained = read_weights(tmp_path / "w.safetensors")
    initial = seqcli.load(model).weights
    np.testing.assert_array_equal(trained["dense/kernel"], initial["dense/kernel"])  # frozen
    assert not np.array_equal(trained["dense_1/kernel"], initial["dense_1/kernel"])
    # Keras holds out the last quarter: val_loss is the trained model's loss on rows 9..11
    held_out = seqcli.load(model, weights=str(tmp_path / "w.safetensors"))
    x, y = np.load(tmp_path / "x.npy")[9:], np.load(tmp_path / "y.npy")[9:]
    mse = float(np.mean((held_out(x) - y) ** 2))
    assert history["val_loss"][-1] == pytest.approx(mse, rel=1e-5)


def test_interrupted_fit_keeps_the_last_checkpoint(cli, tmp_path, monkeypatch):
    from seqcli.training import fit as fit_module

    model = _regression_files(tmp_path)
    real_step, calls = fit_module.train_step, []

    def interrupt_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # 3 batches per epoch: the first batch of epoch 2
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(fit_module, "train_step", interrupt_in_epoch_two)
    result = cli("fit", model, tmp_path / "x.npy", tmp_path / "y.npy", "--epochs", "5",
                 "--batch-size", "4", "--checkpoint", "-o", tmp_path / "w.npz")
    assert result.code == 130
    assert (tmp_path / "w.npz").exists()  # epoch 1's weights
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_fit_refusals(cli, tmp_path):
    model = _regression_files(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros((5, 1), np.float32))
    cases = [
        (["--loss", "mse"], tmp_path / "short.npy", 65, "rows"),
        (["--loss", "mss"], tmp_path / "y.npy", 2, "Did you mean 'mse'"),
        (["--optimizer", "adamw"], tmp_path / "y.npy", 2, "unknown optimizer"),
        (["--loss", "sparse_categorical_crossentropy"], tmp_path / "y.npy", 65, "labels"),
        (["--validation-split", "0.2", "--validation-data", str(tmp_path / "x.npy"),
          str(tmp_path / "y.npy")], tmp_path / "y.npy", 2, "alternatives"),
    ]
    for options, targets, code, message in cases:
        result = cli("fit", model, tmp_path / "x.npy", targets, *options,
                     "-o", tmp_path / "w.npz")
        assert result.code == code, (options, result)
        assert message in result.err, (options, result.err)
    assert not (tmp_path / "w.npz").exists()


def test_a_diverged_fit_stops_and_writes_nothing(cli, tmp_path):
    """A loss that becomes NaN or Inf (a learning rate far too large) stops training with exit
    1 and one message; nothing is written. A healthy fit is not stopped."""
    model = _regression_files(tmp_path)
    common = ("fit", model, tmp_path / "x.npy", tmp_path / "y.npy", "--optimizer", "sgd",
              "--epochs", "3", "--batch-size", "4", "--quiet")
    result = cli(*common, "--learning-rate", "1e30", "-o", tmp_path / "w.npz",
                 "--history", tmp_path / "h.json")
    assert result.code == 1, result
    assert "the loss became" in result.err and "no weights written" in result.err
    assert not (tmp_path / "w.npz").exists() and not (tmp_path / "h.json").exists()
    healthy = cli(*common, "-o", tmp_path / "v.npz")
    assert healthy.code == 0 and "NaN" not in healthy.err


def test_non_finite_training_data_is_refused(cli, tmp_path):
    model = _regression_files(tmp_path)
    x = np.load(tmp_path / "x.npy")
    x[2, 0] = np.nan
    x[5, 1] = np.inf
    np.save(tmp_path / "xn.npy", x)
    result = cli("fit", model, tmp_path / "xn.npy", tmp_path / "y.npy", "--epochs", "1",
                 "-o", tmp_path / "w.npz")
    assert result.code == 65, result
    assert "xn.npy holds 1 NaN and 1 Inf values in 2 of 12 rows" in result.err
    assert not (tmp_path / "w.npz").exists()


def test_targets_without_a_one_unit_outputs_last_axis_train_as_keras_expands_them(cli, tmp_path):
    """Keras's losses and metrics give (N,) targets the last axis of a (N, 1) output: fit and
    evaluate take them, with the numbers of the (N, 1) targets."""
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [3]\nlayers:\n  - {type: Dense, units: 1, "
                     "activation: sigmoid}\n")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(10, 3)).astype(np.float32))
    labels = (rng.random(10) > 0.5).astype(np.float32)
    np.save(tmp_path / "flat.npy", labels)
    np.save(tmp_path / "column.npy", labels[:, None])
    outputs = {}
    for name in ("flat", "column"):
        target = tmp_path / f"{name}.npy"
        result = cli("fit", model, tmp_path / "x.npy", target, "--loss", "binary_crossentropy",
                     "--epochs", "2", "--batch-size", "4", "--validation-data",
                     tmp_path / "x.npy", target, "-o", tmp_path / f"{name}.npz", "-q")
        assert result.code == 0, result
        scores = cli("evaluate", model, tmp_path / "x.npy", target, "--loss",
                     "binary_crossentropy", "--weights", tmp_path / f"{name}.npz", "--json")
        assert scores.code == 0, scores
        with np.load(tmp_path / f"{name}.npz") as weights:
            outputs[name] = ({key: weights[key] for key in weights.files}, scores.out)
    flat, column = outputs["flat"], outputs["column"]
    assert flat[1] == column[1] and "accuracy" in flat[1]
    for key, value in column[0].items():
        np.testing.assert_array_equal(flat[0][key], value)
