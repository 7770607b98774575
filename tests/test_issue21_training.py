"""One SGD step of `seqcli fit` against Keras 3's `train_on_batch` on the models of issue 21
(tests/training_reference/make_issue21_fixtures.py): variable-length inputs, regularizers
and constraints. The loss the history reports includes the penalties, as Keras's does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqcli.io.weights import read_weights

TRAINING = Path(__file__).parent / "training_reference"
KERAS = np.load(TRAINING / "issue21.npz")
PLAN = json.loads((TRAINING / "issue21.json").read_text())


def _prefixed(prefix: str) -> dict:
    return {k[len(prefix):]: KERAS[k] for k in KERAS.files if k.startswith(prefix)}


@pytest.mark.parametrize("case", PLAN["steps"], ids=[Path(c["model"]).stem for c in PLAN["steps"]])
def test_one_sgd_step_equals_keras_train_on_batch(cli, case, tmp_path):
    key = case["key"]
    x = KERAS[f"{key}/x"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", KERAS[f"{key}/y"])
    np.savez(tmp_path / "before.npz", **_prefixed(f"{key}/before/"))
    result = cli("fit", TRAINING / case["model"], tmp_path / "x.npy", tmp_path / "y.npy",
                 "--weights", tmp_path / "before.npz", "--loss", case["loss"],
                 "--optimizer", "sgd", "--learning-rate", str(case["learning_rate"]),
                 "--epochs", "1", "--batch-size", str(len(x)), "--no-shuffle",
                 "--history", tmp_path / "history.json", "-o", tmp_path / "w.npz", "-q")
    assert result.code == 0, result
    got = read_weights(tmp_path / "w.npz")
    expected = _prefixed(f"{key}/after/")
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        scale = max(float(np.abs(want).max()), 1e-3)
        assert float(np.abs(got[name] - want).max()) <= 2e-4 * scale, name
    history = json.loads((tmp_path / "history.json").read_text())
    np.testing.assert_allclose(history["loss"], [KERAS[f"{key}/loss"]], rtol=1e-5)


@pytest.mark.parametrize("steps", [5, 13])
def test_evaluate_takes_the_length_of_a_variable_length_model_from_the_data(cli, steps,
                                                                            tmp_path):
    key = PLAN["steps"][0]["key"]
    model = TRAINING / PLAN["steps"][0]["model"]
    rng = np.random.default_rng(steps)
    np.save(tmp_path / "x.npy", rng.normal(size=(3, steps, 1)).astype("float32"))
    np.save(tmp_path / "y.npy", rng.normal(size=(3, steps, 3)).astype("float32"))
    np.savez(tmp_path / "w.npz", **_prefixed(f"{key}/before/"))
    result = cli("evaluate", model, tmp_path / "x.npy", tmp_path / "y.npy",
                 "--weights", tmp_path / "w.npz", "--metrics", "mae", "--json", "-q")
    assert result.code == 0, result
    assert set(json.loads(result.out)) == {"loss", "mae"}
    np.save(tmp_path / "y.npy", rng.normal(size=(3, steps + 1, 3)).astype("float32"))
    result = cli("evaluate", model, tmp_path / "x.npy", tmp_path / "y.npy",
                 "--weights", tmp_path / "w.npz", "-q")
    assert result.code == 65
    assert f"(3, {steps}, 3)" in result.err


def test_the_api_fits_a_variable_length_model_with_validation_of_another_length():
    import seqcli

    case = PLAN["steps"][0]
    model = seqcli.load(TRAINING / case["model"])
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 9, 1)), rng.normal(size=(4, 9, 3))
    xv, yv = rng.normal(size=(2, 6, 1)), rng.normal(size=(2, 6, 3))
    history = model.fit(x, y, epochs=1, validation_data=(xv, yv), verbose=0)
    assert set(history.history) == {"loss", "val_loss"}
    assert np.isfinite(history.history["val_loss"]).all()


PENALIZED = [case for case in PLAN["steps"]
             if Path(case["model"]).stem.endswith(("_regularized", "_constrained"))]


def _penalty_keys(path: Path) -> list[dict]:
    """Each layer's regularizers and constraints, in the form a layer keeps them."""
    import yaml

    from seqcli.layers.regularizers import check_constraint, check_regularizer

    layers = yaml.safe_load(path.read_text())["layers"]
    return [{key: (check_regularizer if key.endswith("_regularizer") else check_constraint)(
        value) for key, value in layer.items() if key.endswith(("_regularizer", "_constraint"))}
        for layer in layers]


@pytest.mark.parametrize("case", PENALIZED, ids=[Path(c["model"]).stem for c in PENALIZED])
def test_export_keras_then_import_keeps_regularizers_and_constraints(cli, case, tmp_path):
    model = TRAINING / case["model"]
    assert cli("export-keras", model, "-o", tmp_path / "m.keras", "-q").code == 0
    result = cli("import-keras", tmp_path / "m.keras", "-o", tmp_path / "m.yaml")
    assert result.code == 0, result
    assert "note:" not in result.err
    assert _penalty_keys(tmp_path / "m.yaml") == _penalty_keys(model)


def test_onnx_export_ignores_regularizers_and_constraints(cli, tmp_path):
    model = TRAINING / PENALIZED[0]["model"]
    result = cli("export-onnx", model, "-o", tmp_path / "m.onnx", "-q")
    assert result.code == 0, result


def test_evaluate_counts_the_weight_penalties_in_the_loss(cli, tmp_path):
    case = PENALIZED[0]
    key = case["key"]
    np.save(tmp_path / "x.npy", KERAS[f"{key}/x"])
    np.save(tmp_path / "y.npy", KERAS[f"{key}/y"])
    np.savez(tmp_path / "w.npz", **_prefixed(f"{key}/before/"))
    losses = []
    for model in (TRAINING / case["model"], tmp_path / "plain.yaml"):
        if model.name == "plain.yaml":
            import yaml

            doc = yaml.safe_load((TRAINING / case["model"]).read_text())
            for layer in doc["layers"]:
                for name in [k for k in layer if k.endswith("_regularizer")]:
                    del layer[name]
            model.write_text(yaml.safe_dump(doc))
        result = cli("evaluate", model, tmp_path / "x.npy", tmp_path / "y.npy", "--weights",
                     tmp_path / "w.npz", "--loss", case["loss"], "--json", "-q")
        assert result.code == 0, result
        losses.append(json.loads(result.out)["loss"])
    weights = _prefixed(f"{key}/before/")
    expected = (0.05 * np.square(weights["dense/kernel"]).sum()
                + 0.02 * np.abs(weights["dense/bias"]).sum()
                + 0.01 * np.abs(weights["dense_1/kernel"]).sum()
                + 0.03 * np.square(weights["dense_1/kernel"]).sum()
                + 0.1 * np.square(weights["dense_1/bias"]).sum())
    hidden = np.maximum(KERAS[f"{key}/x"] @ weights["dense/kernel"] + weights["dense/bias"], 0)
    expected += (0.01 * np.abs(hidden).sum() + 0.02 * np.square(hidden).sum()) / len(hidden)
    np.testing.assert_allclose(losses[0] - losses[1], expected, rtol=1e-4)
