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
