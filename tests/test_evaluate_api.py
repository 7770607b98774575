"""`seqcli evaluate` against Keras 3's `model.evaluate` (tests/training_reference/
make_fit_fixtures.py --evaluate), the Python API against the command line, and `--base-dir`
for a model read from stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CONFIGS, REPO, on_terminal, run_process

HERE = Path(__file__).parent
TRAINING = HERE / "training_reference"
FITTED = np.load(TRAINING / "fit.npz")
EVALUATIONS = json.loads((TRAINING / "evaluate.json").read_text())["evaluations"]
EXTRA = np.load(TRAINING / "evaluate.npz")


def _case_files(case: dict, folder: Path) -> tuple[Path, Path, Path, Path]:
    """(model, x, y, weights) of an evaluation case, written to `folder` where they live in
    the fit fixtures."""
    source = FITTED if case["data"].startswith("fit") else EXTRA
    np.save(folder / "x.npy", source[f"{case['data']}/x"])
    np.save(folder / "y.npy", source[f"{case['data']}/y"])
    if case["weights"].endswith(".npz"):
        weights = TRAINING / case["weights"]
    else:
        prefix = case["weights"] + "/"
        weights = folder / "w.npz"
        np.savez(weights, **{key[len(prefix):]: FITTED[key] for key in FITTED.files
                             if key.startswith(prefix)})
    return TRAINING / case["model"], folder / "x.npy", folder / "y.npy", weights


def _evaluate_args(case: dict, folder: Path) -> list:
    model, x, y, weights = _case_files(case, folder)
    args = ["evaluate", model, x, y, "--weights", weights, "--loss", case["loss"],
            "--metrics", ",".join(case["metrics"]), "--batch-size", str(case["batch_size"])]
    return args + (["--from-logits"] if case["from_logits"] else [])


def test_the_cases_cover_losses_metrics_masks_and_uneven_batches():
    losses = {case["loss"] for case in EVALUATIONS}
    metrics = {name for case in EVALUATIONS for name in case["metrics"]}
    assert len(losses) == 5 and len(metrics) >= 25
    assert all(10 % case["batch_size"] for case in EVALUATIONS if case["batch_size"] < 10)
    assert any(case["data"] == "tagger" for case in EVALUATIONS)  # a masked sequence output


@pytest.mark.parametrize("case", EVALUATIONS, ids=[case["key"] for case in EVALUATIONS])
def test_evaluate_equals_keras(cli, case, tmp_path):
    result = cli(*_evaluate_args(case, tmp_path), "--json")
    assert result.code == 0, result
    got = json.loads(result.out)
    expected = case["keras"]
    assert list(got) == ["loss", *case["metrics"]]
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_evaluate_prints_one_line_as_keras(cli, tmp_path):
    case = next(case for case in EVALUATIONS if case["key"] == "evaluate1")
    result = cli(*_evaluate_args(case, tmp_path))
    assert result.code == 0, result
    keras = case["keras"]
    assert result.out == (f"loss: {keras['loss']:.4f} - accuracy: {keras['accuracy']:.4f} - "
                          f"sparse_categorical_accuracy: {keras['accuracy']:.4f} - "
                          f"sparse_top_k_categorical_accuracy: 1.0000 - "
                          f"sparse_categorical_crossentropy: {keras['loss']:.4f}\n")
    assert result.err == ""


# --- the command line: defaults, refusals, pipes and terminals ----------------------------

CLASSIFIER = """input_shape: [4]
seed: 3
layers:
  - {type: Dense, units: 16, activation: relu}
  - {type: Dense, units: 3, activation: softmax}
"""


@pytest.fixture
def labelled(tmp_path):
    """A small classifier (model.yaml, initial weights of seed 3) and 50 labelled rows."""
    (tmp_path / "model.yaml").write_text(CLASSIFIER)
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0))
    np.save(tmp_path / "onehot.npy", np.eye(3, dtype=np.float32)[np.load(tmp_path / "y.npy")])
    return tmp_path


def _json(result) -> dict:
    assert result.code == 0, result
    return json.loads(result.out)


def test_default_metrics_are_fits(cli, labelled):
    """accuracy for the cross-entropies (as fit reports), the loss alone for the others."""
    model, x, y = labelled / "model.yaml", labelled / "x.npy", labelled / "y.npy"
    sparse = _json(cli("evaluate", model, x, y, "--loss", "sparse_categorical_crossentropy",
                       "--json", "-q"))
    assert list(sparse) == ["loss", "accuracy"]
    regression = _json(cli("evaluate", model, x, labelled / "onehot.npy", "--json", "-q"))
    assert list(regression) == ["loss"]
    none = _json(cli("evaluate", model, x, y, "--loss", "sparse_categorical_crossentropy",
                     "--metrics", "", "--json", "-q"))
    assert list(none) == ["loss"] and none["loss"] == sparse["loss"]
    # the same numbers, whatever the batch size (to float32 precision: BLAS sums a batch's
    # single last row, 50 = 7 x 7 + 1, in another order); mse's metric is its loss
    both = _json(cli("evaluate", model, x, labelled / "onehot.npy", "--metrics", "mse",
                     "--metrics", "mae", "--batch-size", "7", "--json", "-q"))
    assert both["mse"] == pytest.approx(regression["loss"], rel=1e-6)
    assert list(both) == ["loss", "mse", "mae"]


def test_metrics_are_named_as_given_in_any_of_keras_spellings(cli, labelled):
    got = _json(cli("evaluate", labelled / "model.yaml", labelled / "x.npy",
                    labelled / "onehot.npy", "--metrics", "MSE,MeanSquaredError,mse,Accuracy",
                    "--json", "-q"))
    assert list(got) == ["loss", "MSE", "MeanSquaredError", "mse", "Accuracy"]
    assert got["MSE"] == got["MeanSquaredError"] == got["mse"] == pytest.approx(got["loss"])
    assert 0 <= got["Accuracy"] <= 1


def test_a_note_says_when_the_weights_are_initial(cli, labelled):
    result = cli("evaluate", labelled / "model.yaml", labelled / "x.npy", labelled / "y.npy",
                 "--loss", "sparse_categorical_crossentropy")
    assert result.code == 0
    assert result.err.startswith("seqcli: note: ") and "initial weights (seed 3)" in result.err
    assert result.out.startswith("loss: ") and result.out.count("\n") == 1


@pytest.mark.parametrize("args, code, message", [
    (["--metrics", "acuracy"], 2, "unknown metric 'acuracy'. Did you mean 'accuracy'?"),
    (["--metrics", "accuracy,accuracy"], 2, "--metrics names 'accuracy' twice"),
    (["--metrics", "auc"], 2, "metric 'auc' is one of Keras's that seqcli does not compute"),
    (["--loss", "crossentropy"], 2, "unknown loss 'crossentropy'"),
    (["--batch-size", "0"], 2, "--batch-size"),
    (["--metrics", "categorical_accuracy"], 65,
     "metric 'categorical_accuracy' compares targets shaped like the model's output, (50, 3); "
     "received (50,) (for class labels use 'sparse_categorical_accuracy')"),
    (["--metrics", "precision"], 65, "metric 'precision' compares targets shaped like"),
])
def test_evaluate_refusals(cli, labelled, args, code, message):
    result = cli("evaluate", labelled / "model.yaml", labelled / "x.npy", labelled / "y.npy",
                 "--loss", "sparse_categorical_crossentropy", *args)
    assert (result.code, result.out) == (code, ""), result
    assert message in result.err and result.err.count("\n") == 1


def test_bad_data_is_refused_as_fit_refuses_it(cli, labelled):
    model, x, y = labelled / "model.yaml", labelled / "x.npy", labelled / "y.npy"
    np.save(labelled / "short.npy", np.zeros(49, np.int64))
    np.save(labelled / "nan.npy", np.where(np.arange(200).reshape(50, 4) == 7, np.nan,
                                           np.load(x)).astype(np.float32))
    np.save(labelled / "wide.npy", np.zeros((50, 5), np.float32))
    np.save(labelled / "ids.npy", np.full(50, 3))
    np.save(labelled / "none.npy", np.zeros((0, 4), np.float32))
    sparse = ["--loss", "sparse_categorical_crossentropy"]
    for args, code, message in [
        ([x, labelled / "short.npy"], 65, "has 50 rows but"),
        ([labelled / "nan.npy", y], 65, "holds 1 NaN"),
        ([labelled / "nan.npy", y], 65, "evaluate refuses non-finite data"),
        ([labelled / "wide.npy", y], 65, "input has shape (50, 5), but the model expects"),
        ([x, labelled / "ids.npy"], 65, "labels must lie in [0, 3)"),
        ([labelled / "none.npy", labelled / "none.npy"], 65, "has no rows to evaluate"),
        ([labelled / "missing.npy", y], 66, "missing.npy"),
    ]:
        result = cli("evaluate", model, *args, *sparse)
        assert (result.code, result.out) == (code, ""), (args, result)
        assert message in result.err and result.err.count("\n") == 1, (message, result.err)


def test_evaluate_through_pipes(labelled):
    """The model from stdin, through a real process; stdout holds the JSON alone. X and Y are
    read whole, from files, as fit reads them."""
    y = labelled / "y.npy"
    expected = json.loads(run_process(
        "evaluate", labelled / "model.yaml", labelled / "x.npy", y, "--loss",
        "sparse_categorical_crossentropy", "--json", "-q").stdout)
    piped_x = run_process("evaluate", labelled / "model.yaml", "-", y,
                          input=(labelled / "x.npy").read_bytes())
    assert (piped_x.returncode, piped_x.stdout) == (2, b"")
    assert piped_x.stderr == b"seqcli: error: <stdin>: this command reads its arrays from files, not from a pipe\n"
    piped_model = run_process("evaluate", "-", "x.npy", "y.npy", "--loss",
                              "sparse_categorical_crossentropy", "--json", "-q",
                              input=CLASSIFIER.encode(), cwd=labelled)
    assert json.loads(piped_model.stdout) == expected
    twice = run_process("evaluate", "-", "-", "y.npy", input=CLASSIFIER.encode(), cwd=labelled)
    assert (twice.returncode, twice.stdout) == (2, b"")
    assert b"stdin" in twice.stderr


def test_evaluate_prints_its_line_on_a_terminal(labelled):
    """Text, unlike predict's .npy, goes to a terminal as it is."""
    code, err, shown = on_terminal("evaluate", "model.yaml", "x.npy", "y.npy", "--loss",
                                   "sparse_categorical_crossentropy", "-q", cwd=labelled)
    assert (code, err) == (0, "")
    assert shown.startswith(b"loss: ") and b" - accuracy: " in shown


# --- the Python API: the commands' numbers ------------------------------------------------


def test_import_seqcli_is_light_and_dir_shows_the_api():
    code = ("import sys, seqcli; print(sorted(n for n in dir(seqcli) if not n.startswith('_'))); "
            "print(any(m.split('.')[0] in ('numpy', 'numba') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines() == ["['Sequential', 'layers', 'load', 'load_keras']", "False"]
    import seqcli

    assert {"compile", "fit", "evaluate", "extract", "save", "predict"} <= set(
        dir(seqcli.Sequential))


@pytest.mark.parametrize("case", [c for c in EVALUATIONS if c["key"] in ("evaluate0", "tagger")],
                         ids=lambda case: case["key"])
def test_api_evaluate_equals_the_command_and_keras(cli, case, tmp_path):
    import seqcli

    model_path, x, y, weights = _case_files(case, tmp_path)
    command = _json(cli(*_evaluate_args(case, tmp_path), "--json", "-q"))
    model = seqcli.load(model_path, weights=str(weights))
    model.compile(loss=case["loss"], metrics=case["metrics"], from_logits=case["from_logits"])
    got = model.evaluate(np.load(x), np.load(y), batch_size=case["batch_size"],
                         return_dict=True)
    assert got == command
    assert got["loss"] == pytest.approx(case["keras"]["loss"], rel=1e-5)
    listed = model.evaluate(np.load(x), np.load(y), batch_size=case["batch_size"])
    assert listed == list(command.values())  # Keras's [loss, *metrics]


def test_api_evaluate_without_metrics_returns_the_loss(labelled):
    import seqcli

    model = seqcli.load(labelled / "model.yaml")
    x, onehot = np.load(labelled / "x.npy"), np.load(labelled / "onehot.npy")
    loss = model.evaluate(x, onehot)  # not compiled: the command line's defaults, mse
    assert isinstance(loss, float)
    assert loss == pytest.approx(float(np.mean(np.square(model.predict(x) - onehot))), rel=1e-6)


def test_api_fit_equals_the_command(cli, labelled):
    import seqcli
    from seqcli.io.weights import read_weights

    args = ["--loss", "sparse_categorical_crossentropy", "--optimizer", "adam",
            "--learning-rate", "0.01", "--epochs", "3", "--batch-size", "8", "--seed", "4",
            "--validation-split", "0.2"]
    result = cli("fit", labelled / "model.yaml", labelled / "x.npy", labelled / "y.npy", *args,
                 "--history", labelled / "history.json", "-o", labelled / "w.npz", "-q")
    assert result.code == 0, result
    model = seqcli.load(labelled / "model.yaml")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", learning_rate=0.01)
    history = model.fit(np.load(labelled / "x.npy"), np.load(labelled / "y.npy"), epochs=3,
                        batch_size=8, seed=4, validation_split=0.2, verbose=0)
    assert history.history == json.loads((labelled / "history.json").read_text())
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    expected = read_weights(labelled / "w.npz")
    assert all(np.array_equal(model.weights[key], expected[key]) for key in expected)


def test_api_fit_reports_the_compiled_metrics(labelled):
    import seqcli

    x, y = np.load(labelled / "x.npy"), np.load(labelled / "y.npy")
    model = seqcli.load(labelled / "model.yaml")
    model.compile(loss="sparse_categorical_crossentropy",
                  metrics=["sparse_top_k_categorical_accuracy", "acc"])
    history = model.fit(x[:40], y[:40], validation_data=(x[40:], y[40:]), epochs=2,
                        verbose=0).history
    assert list(history) == ["loss", "sparse_top_k_categorical_accuracy", "acc", "val_loss",
                             "val_sparse_top_k_categorical_accuracy", "val_acc"]
    assert history["sparse_top_k_categorical_accuracy"] == [1.0, 1.0]  # 3 classes, k = 5
    held_out = model.evaluate(x[40:], y[40:], return_dict=True)
    assert held_out == {"loss": history["val_loss"][-1],
                        "sparse_top_k_categorical_accuracy": 1.0, "acc": history["val_acc"][-1]}


def test_api_extract_equals_the_command(cli, tmp_path):
    import seqcli

    x = np.random.default_rng(1).uniform(0, 255, (3, 250, 250, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    model_path = CONFIGS / "transfer_learning.yaml"
    result = cli("extract", model_path, tmp_path / "x.npy", "--layer", "base/conv2d",
                 "--layer", "dense", "-o", tmp_path / "f.npz", "-q")
    assert result.code == 0, result
    model = seqcli.load(model_path)
    both = model.extract(x, ["base/conv2d", "dense"])
    with np.load(tmp_path / "f.npz") as written:
        assert list(both) == ["base/conv2d", "dense"]
        assert all(np.array_equal(both[key], written[key]) for key in both)
    one = model.extract(x, "dense")
    assert one.shape == (3, 10) and np.array_equal(one, both["dense"])
    assert np.array_equal(one, model.predict(x))
    # in batches of 2, the same to float32 precision (BLAS sums a row by where it falls)
    pairs = model.extract(x, ["base/conv2d", "dense"], batch_size=2)
    for key in both:
        np.testing.assert_allclose(pairs[key], both[key], rtol=1e-5,
                                   atol=1e-6 * float(np.abs(both[key]).max()))
    with pytest.raises(Exception, match="no layer named 'dens'. Did you mean 'dense'"):
        model.extract(x, "dens")


def test_api_save_writes_a_model_file_and_its_weights(cli, tmp_path):
    """The transfer model (a frozen `from:` base) saved whole: the YAML loads in the command
    line, names the weights beside it, and predicts the same."""
    import seqcli

    model = seqcli.load(CONFIGS / "transfer_learning.yaml")
    model.save(tmp_path / "saved.yaml")
    text = (tmp_path / "saved.yaml").read_text()
    assert "weights: saved.safetensors" in text and "from:" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.safetensors", "saved.yaml"]
    summary = _json(cli("summary", tmp_path / "saved.yaml", "--json"))
    original = _json(cli("summary", CONFIGS / "transfer_learning.yaml", "--json"))
    assert summary == original  # names, shapes, trainable counts
    x = np.random.default_rng(2).uniform(0, 255, (2, 250, 250, 3)).astype(np.float32)
    assert np.array_equal(seqcli.load(tmp_path / "saved.yaml").predict(x), model.predict(x))
    with pytest.raises(Exception, match=r"saved\.txt: a model file to save ends in \.yaml"):
        model.save(tmp_path / "saved.txt")


def test_load_keras_equals_import_keras(cli, tmp_path):
    import seqcli

    source = REPO / "tests" / "keras_files" / "conv1d_autoencoder.keras"
    x = np.load(source.with_suffix(".input.npy"))
    result = cli("import-keras", source, "-o", tmp_path / "imported.yaml", "-q")
    assert result.code == 0, result
    model = seqcli.load_keras(source)
    imported = seqcli.load(tmp_path / "imported.yaml")
    assert model.name == imported.name
    assert np.array_equal(model.predict(x), imported.predict(x))
    np.testing.assert_allclose(model.predict(x), np.load(source.with_suffix(".output.npy")),
                               rtol=1e-5, atol=1e-5)


# --- a model read from stdin: --base-dir --------------------------------------------------

MODEL_COMMANDS = ["summary", "validate", "predict", "extract", "freeze", "init", "fit",
                  "evaluate", "bench", "export-keras", "export-onnx", "import-keras"]


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_command_that_reads_a_model_takes_base_dir(cli, command):
    result = cli(command, "--help")
    assert result.code == 0 and "--base-dir DIR" in result.out, result


def test_a_model_from_stdin_finds_from_files_in_base_dir(tmp_path):
    """`freeze ... | summary -` on the transfer model, as the README shows it."""
    frozen = run_process("freeze", CONFIGS / "transfer_learning.yaml", "--unfreeze", "base")
    assert frozen.returncode == 0, frozen.stderr
    found = run_process("summary", "-", "--base-dir", CONFIGS, "--json", input=frozen.stdout,
                        cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["trainable_params"] == 21322  # the base unfrozen
    in_configs = run_process("summary", "-", "--json", input=frozen.stdout, cwd=CONFIGS)
    assert json.loads(in_configs.stdout) == json.loads(found.stdout)  # the working directory
    lost = run_process("summary", "-", input=frozen.stdout, cwd=tmp_path)
    assert (lost.returncode, lost.stdout) == (65, b"")
    assert lost.stderr.decode() == (
        f"<stdin>:10:11: 'from: convnet_base.yaml': no such model file in {tmp_path.resolve()} "
        "(a model read from stdin resolves its paths against the working directory, or "
        "--base-dir DIR); pass --base-dir with the folder the model came from\n")


def test_base_dir_with_predict_and_its_refusals(cli, tmp_path, monkeypatch):
    x = np.random.default_rng(3).uniform(0, 255, (2, 250, 250, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    piped = run_process("predict", "-", tmp_path / "x.npy", "--base-dir", CONFIGS, "-q",
                        "-o", tmp_path / "y.npy",
                        input=(CONFIGS / "transfer_learning.yaml").read_bytes(), cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    import seqcli

    expected = seqcli.load(CONFIGS / "transfer_learning.yaml").predict(x)
    # the process ran two images in numpy (a small run), this one has loaded the kernels
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5,
                               atol=1e-5 * scale)
    model = CONFIGS / "dense_stack.yaml"
    for args, message in [
        ([model, "--base-dir", CONFIGS],
         f"--base-dir applies to a model read from stdin (-); the paths in {model} resolve "
         "against its own folder"),
        (["-", "--base-dir", tmp_path / "missing"], "'--base-dir'"),
    ]:
        result = cli("summary", *args)
        assert (result.code, result.out) == (2, ""), result
        assert message in result.err and result.err.count("\n") == 1
