"""Issue 17, messages that say what to do: a model whose weights file is not written yet,
the initial-weights note of the exports, the Python API's shapes, YAML syntax hints, input
shape fixes, files of the wrong kind named for what they are, and fit's loss hints."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, run_process

from seqcli.io.weights import save_npz, write_safetensors

MODEL = """\
input_shape: [4]
weights: w.safetensors
layers:
  - type: Dense
    units: 3
    activation: softmax
"""


@pytest.fixture
def new_model(tmp_path, monkeypatch):
    """A model whose `weights:` file does not exist yet, with inputs and class ids beside it;
    the working directory is its folder, as a user's would be."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(MODEL)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((10, 4), dtype=np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 10))
    return tmp_path


def files(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_error(result, code: int) -> str:
    """The one `seqcli: error:` line of a failed run, checked: `code`, nothing on stdout."""
    assert result.code == code, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqcli: error: "), result.err
    return lines[0]


# --- a weights file not written yet --------------------------------------------------------

NOTE = ("seqcli: note: m.yaml: weights file w.safetensors does not exist yet; run "
        "`seqcli init m.yaml` to create it\n")


def test_summary_and_validate_need_no_weights_and_say_how_to_create_them(cli, new_model):
    summary = cli("summary", "m.yaml", "--json")
    assert summary.code == 0, summary
    assert json.loads(summary.out)["total_params"] == 15
    assert summary.err == NOTE
    validate = cli("validate", "m.yaml")
    assert validate.code == 0, validate
    assert validate.out.startswith("OK: m.yaml: 1 layer")
    assert validate.out.endswith(" 15 params, input [4], output [3]\n")
    assert validate.err == NOTE
    assert sorted(files(new_model)) == ["m.yaml", "x.npy", "y.npy"]


@pytest.mark.parametrize("args", [["summary", "m.yaml"], ["summary", "m.yaml", "--json"],
                                  ["validate", "m.yaml"], ["validate", "m.yaml", "m.yaml"]])
def test_quiet_drops_the_note_about_weights_not_written(cli, new_model, args):
    result = cli(*args, "-q")
    assert (result.code, result.err) == (0, "")
    assert result.out


def test_validate_with_an_explicit_missing_weights_file_is_still_an_error(cli, new_model):
    line = one_error(cli("validate", "m.yaml", "--weights", "other.safetensors"), 66)
    assert line == "seqcli: error: other.safetensors: no such weights file; check the path"


def test_summary_of_a_new_model_loads_no_numpy(new_model):
    code = ("import sys; from seqcli.cli import main; code = main(['summary', 'm.yaml']); "
            "print(code, 'numpy' in sys.modules, 'numba' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=new_model)
    assert done.stdout.decode().splitlines()[-1] == "0 False False"
    assert done.stderr.decode() == NOTE


RUNS = {
    "predict": ["predict", "m.yaml", "x.npy", "-o", "p.npy"],
    "extract": ["extract", "m.yaml", "x.npy", "--layer", "dense", "-o", "f.npy"],
    "export-onnx": ["export-onnx", "m.yaml", "-o", "m.onnx"],
    "export-keras": ["export-keras", "m.yaml", "-o", "m.keras"],
    "evaluate": ["evaluate", "m.yaml", "x.npy", "y.npy", "--loss",
                 "sparse_categorical_crossentropy"],
}


@pytest.mark.parametrize("args", RUNS.values(), ids=RUNS.keys())
def test_commands_that_need_the_weights_say_to_init_or_fit(cli, new_model, args):
    before = files(new_model)
    line = one_error(cli(*args), 66)
    assert line == ("seqcli: error: m.yaml: weights file w.safetensors does not exist yet; run "
                    "`seqcli init m.yaml` to write initial weights, or `seqcli fit m.yaml X Y "
                    "-o w.safetensors` to train them")
    assert files(new_model) == before


def test_the_advice_names_the_files_as_the_user_does(cli, new_model, monkeypatch):
    (new_model / "my models").mkdir()
    (new_model / "my models" / "m.yaml").write_text(MODEL)
    line = one_error(cli("predict", "my models/m.yaml", "x.npy", "-o", "p.npy"), 66)
    assert line == ("seqcli: error: my models/m.yaml: weights file my models/w.safetensors does "
                    "not exist yet; run `seqcli init 'my models/m.yaml'` to write initial "
                    "weights, or `seqcli fit 'my models/m.yaml' X Y -o 'my models/w.safetensors'` "
                    "to train them")
    monkeypatch.chdir(new_model / "my models")  # the weights lie outside: shown in full
    outside = one_error(cli("predict", "../m.yaml", "../x.npy", "-o", "p.npy"), 66)
    assert outside.startswith(f"seqcli: error: ../m.yaml: weights file {new_model}/"
                              "w.safetensors does not exist yet; run `seqcli init ../m.yaml`")


def test_bench_times_initial_weights_and_says_so(cli, new_model):
    result = cli("bench", "m.yaml", "--seconds", "0.05", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["batch_size"] == 32
    assert result.err == ("seqcli: warning: m.yaml: weights file w.safetensors does not exist "
                          "yet; timing the model with initial weights (its speed does not "
                          "depend on their values)\n")


@pytest.mark.parametrize("target", ["w.safetensors", "trained.npz"])
def test_fit_writes_a_new_models_first_weights(cli, new_model, target):
    result = cli("fit", "m.yaml", "x.npy", "y.npy", "--loss", "sparse_categorical_crossentropy",
                 "-o", target)
    assert result.code == 0, result
    assert result.err.splitlines()[0] == (
        "seqcli: note: m.yaml: weights file w.safetensors does not exist yet; training starts "
        "from initial weights (seed 0)")
    assert (new_model / target).stat().st_size > 0
    quiet = cli("fit", "m.yaml", "x.npy", "y.npy", "--loss", "sparse_categorical_crossentropy",
                "-o", "again.safetensors", "-q")
    assert quiet.code == 0 and quiet.err == ""


def test_once_written_the_weights_are_used_without_a_note(cli, new_model):
    assert cli("init", "m.yaml").code == 0
    summary = cli("summary", "m.yaml")
    assert summary.code == 0 and summary.err == ""
    predict = cli("predict", "m.yaml", "x.npy", "-o", "p.npy")
    assert predict.code == 0 and predict.err == ""
    assert np.load(new_model / "p.npy").shape == (10, 3)


def test_python_api_summary_needs_no_weights_but_predict_does(new_model, capsys):
    import seqcli
    from seqcli.errors import MissingFileError

    model = seqcli.load("m.yaml")
    model.summary()
    assert "Total params: 15" in capsys.readouterr().out
    assert model.output_shape == (None, 3)
    with pytest.raises(MissingFileError, match="seqcli init m.yaml"):
        model.predict(np.zeros((2, 4)))


# --- the exports name the initial values as predict does -----------------------------------


def test_exports_say_what_predict_says_about_initial_values(cli, tmp_path):
    model = CONFIGS / "transfer_learning.yaml"
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((1, 250, 250, 3), np.float32))
    predict = cli("predict", model, images, "-o", tmp_path / "p.npy")
    assert predict.code == 0, predict
    note = (f"seqcli: note: {model}: no weights file provides dense/kernel, dense/bias; using "
            "initial values (seed 0)")
    assert predict.err.splitlines() == [note]
    onnx = cli("export-onnx", model, "-o", tmp_path / "t.onnx")
    keras = cli("export-keras", model, "-o", tmp_path / "t.keras")
    for result in (onnx, keras):
        assert result.code == 0, result
        assert note in result.err.splitlines()
        assert "no weights file;" not in result.err


# --- the Python API reports the whole input's shape ----------------------------------------


@pytest.mark.parametrize("entry", ["predict", "call", "evaluate", "extract"])
def test_python_api_reports_the_whole_inputs_shape(entry):
    import seqcli
    from seqcli.errors import InputDataError

    model = seqcli.load(CONFIGS / "dense_stack.yaml")
    x = np.random.default_rng(0).random((100, 5))
    run = {"predict": lambda: model.predict(x), "call": lambda: model(x),
           "evaluate": lambda: model.evaluate(x, np.zeros((100, 4))),
           "extract": lambda: model.extract(x, "dense")}[entry]
    with pytest.raises(InputDataError) as caught:
        run()
    assert str(caught.value) == ("input has shape (100, 5), but the model expects (None, 4) "
                                 "(batch first)")


def test_python_api_predict_suggests_a_batch_axis_for_one_sample():
    import seqcli
    from seqcli.errors import InputDataError

    model = seqcli.load(CONFIGS / "dense_stack.yaml")
    with pytest.raises(InputDataError, match=r"input has shape \(4,\).*add a batch axis "
                                             r"\(x\[None\]\)"):
        model.predict(np.ones(4))
    assert model.predict(np.ones(4)[None]).shape == (1, 4)


# --- YAML syntax errors hint at the cause --------------------------------------------------

YAML_CASES = [
    ("tab indent", "layers:\n\t- type: Dense\n", "2:1",
     "found character '\\t' that cannot start any token; tabs are not allowed for indentation "
     "in YAML; indent with spaces"),
    ("tab before a key", "layers:\n  - type: Dense\n  \tunits: 3\n", "3:3",
     "tabs are not allowed for indentation in YAML; indent with spaces"),
    ("tab after a colon", "layers:\n  - type: Dense\n    units:\t3\n", "3:11",
     "YAML does not allow a tab here; use spaces"),
    ("over-indented key", "layers:\n  - type: Dense\n      units: 3\n", "3:12",
     "mapping values are not allowed here; check the indentation of this line and the one "
     "above (the keys of one mapping, and the '-' of one list, line up)"),
    ("under-indented key", "layers:\n  - type: Dense\n   units: 3\n", "3:4",
     "check the indentation of this line and the one above"),
    ("list entry out of line", "layers:\n  - type: Dense\n    units: 3\n - type: Flatten\n",
     "4:2", "expected <block end>, but found '<block sequence start>'; check the indentation"),
    ("value holding ': '", "name: my: model\nlayers: []\n", "1:9",
     "quote a value that holds ': ', as in name: \"my: model\""),
    ("no space after ':'", "layers:\n  - type:Dense\n    units: 3\n", "3:10",
     "put a space after ':' in 'type:Dense' on the line above"),
    ("no space after '-'", "layers:\n  -type: Dense\n    units: 3\n", "3:10",
     "put a space after the '-' that starts the list entry on the line above"),
    ("key without ':'", "name: x\nlayers\n  - type: Dense\n", "3:9",
     "could not find expected ':'; line 2 ('layers') needs ':' after its key"),
    ("unclosed bracket", "input_shape: [4, 4\nlayers: []\n", "2:7",
     "check that the '[' opened on line 1 is closed"),
    ("unclosed quote", "name: 'abc\nlayers: []\n", "3:1",
     "the quote opened on line 1 is never closed"),
    ("stray bracket", "input_shape: [4]]\nlayers: []\n", "1:17",
     "expected <block end>, but found ']'; this ']' closes no bracket opened before it"),
]


@pytest.mark.parametrize(("case", "text", "where", "message"), YAML_CASES,
                         ids=[case[0] for case in YAML_CASES])
def test_yaml_syntax_errors_hint_at_the_cause(cli, tmp_path, case, text, where, message):
    model = tmp_path / "bad.yaml"
    model.write_text(text)
    result = cli("validate", model)
    assert result.code == 65 and result.out == ""
    (line,) = result.err.splitlines()
    assert line.startswith(f"{model}:{where}: invalid YAML: "), line
    assert message in line, line


def test_yaml_hint_on_stdin_through_a_pipe():
    done = run_process("summary", "-", input=b"layers:\n\t- type: Dense\n")
    assert done.returncode == 65 and done.stdout == b""
    assert done.stderr.decode() == (
        "<stdin>:2:1: invalid YAML: found character '\\t' that cannot start any token; tabs "
        "are not allowed for indentation in YAML; indent with spaces\n")


# --- input shapes: the one-axis fix --------------------------------------------------------

IMAGE_MODEL = "input_shape: [28, 28, 1]\nlayers:\n  - type: Flatten\n  - {type: Dense, units: 2}\n"
SHAPE_CASES = [
    ((10, 28, 28), "add a channel axis (x[..., None])"),
    ((28, 28, 1), "add a batch axis (x[None]): it is a single sample"),
    ((28, 28), "add a batch and a channel axis (x[None, ..., None]): it is a single sample"),
    ((10, 1, 28, 28, 1), "drop axis 1 (np.squeeze(x, 1))"),
    ((10, 28, 28, 1, 1), "drop axis 4 (np.squeeze(x, 4))"),
    ((10, 1, 28, 28), "move the channel axis last (np.moveaxis(x, 1, -1)): seqcli is "
                      "channels_last, as Keras by default"),
]


@pytest.mark.parametrize(("shape", "fix"), SHAPE_CASES, ids=[str(s) for s, _ in SHAPE_CASES])
def test_input_shape_errors_suggest_the_one_axis_fix(cli, tmp_path, shape, fix):
    model = tmp_path / "m.yaml"
    model.write_text(IMAGE_MODEL)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros(shape, np.float32))
    line = one_error(cli("predict", model, x, "-o", tmp_path / "p.npy"), 65)
    assert line == (f"seqcli: error: input has shape {shape}, but the model expects "
                    f"(None, 28, 28, 1) (batch first); {fix}")
    assert not (tmp_path / "p.npy").exists()


def test_a_shape_no_single_axis_fixes_gets_no_suggestion(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(IMAGE_MODEL)
    np.save(tmp_path / "x.npy", np.zeros((10, 32, 32, 3), np.float32))
    line = one_error(cli("predict", model, tmp_path / "x.npy", "-o", tmp_path / "p.npy"), 65)
    assert line == ("seqcli: error: input has shape (10, 32, 32, 3), but the model expects "
                    "(None, 28, 28, 1) (batch first)")


def test_fit_gets_the_same_shape_fix(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(IMAGE_MODEL)
    np.save(tmp_path / "x.npy", np.zeros((10, 28, 28), np.float32))
    np.save(tmp_path / "y.npy", np.zeros((10, 2), np.float32))
    line = one_error(cli("fit", model, tmp_path / "x.npy", tmp_path / "y.npy", "-o",
                         tmp_path / "w.safetensors"), 65)
    assert line.endswith("; add a channel axis (x[..., None])")


# --- a file of another kind where a .npy array goes: named by its bytes --------------------


def _png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 6)) + chunk(b"IEND", b""))


def _npz(folder: Path) -> bytes:
    np.savez(folder / "made.npz", a=np.zeros((2, 4)), b=np.ones(3))
    return (folder / "made.npz").read_bytes()


def _safetensors(folder: Path) -> bytes:
    write_safetensors(folder / "made.safetensors", {"dense/kernel": np.zeros((4, 2))})
    return (folder / "made.safetensors").read_bytes()


def _keras(folder: Path) -> bytes:
    with zipfile.ZipFile(folder / "made.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    return (folder / "made.keras").read_bytes()


KINDS = [
    ("npz", _npz, "this is an .npz archive holding 2 arrays (a, b), not a .npy array; save the "
                  "one to use with np.save, such as np.load('{x}')['a']"),
    ("csv", lambda folder: b"1,2,3,4\n5,6,7,8\n",
     "this is CSV text, not a .npy array; read it with np.loadtxt('{x}', delimiter=',', "
     "dtype='float32', ndmin=2) and save that with np.save"),
    ("csv with a header", lambda folder: b"a,b,c,d\n1,2,3,4\n",
     "delimiter=',', skiprows=1, dtype='float32', ndmin=2)"),
    ("png", lambda folder: _png(), "this is a PNG image, not a .npy array; INPUT and X read "
                                   "images themselves (name the file with its image extension, "
                                   "or a folder or glob of images), or decode it, as "
                                   "np.asarray(PIL.Image.open('{x}'), 'float32')[None], and "
                                   "save the pixels with np.save"),
    ("jpeg", lambda folder: b"\xff\xd8\xff\xe0" + bytes(60), "this is a JPEG image"),
    ("gif", lambda folder: b"GIF89a" + bytes(60), "this is a GIF image"),
    ("safetensors", _safetensors, "this is a safetensors file (weights), not a .npy array; "
                                  "weights go to --weights"),
    ("keras", _keras, "this is a .keras model archive, not a .npy array; import it with "
                      "`seqcli import-keras {x} -o model.yaml`"),
    ("model file", lambda folder: MODEL.encode(), "this is a model file (YAML), not a .npy "
                                                  "array; the model comes first"),
    ("text", lambda folder: b"hello\n", "this is a text file, not a .npy array"),
]


@pytest.mark.parametrize(("kind", "make", "message"), KINDS, ids=[k[0] for k in KINDS])
def test_a_file_of_another_kind_is_named_by_its_bytes(cli, tmp_path, kind, make, message):
    x = tmp_path / "x.npy"  # the name says .npy: only the bytes tell
    x.write_bytes(make(tmp_path))
    line = one_error(cli("predict", CONFIGS / "dense_stack.yaml", x, "-o", tmp_path / "p.npy"),
                     65)
    assert line.startswith(f"seqcli: error: {x}: this is ")
    assert message.format(x=x) in line, line


@pytest.mark.parametrize(("make", "message"), [
    (_npz, "<stdin>: this is an .npz archive holding arrays (a, ...), not a .npy array; save "
           "the one to use with np.save, such as np.load('x.npz')['a']"),
    (lambda folder: _png(), "<stdin>: this is a PNG image, not a .npy array; INPUT and X read "
                            "images themselves (pass the file, or a folder or glob of images), "
                            "or decode it, as np.asarray(PIL.Image.open('image.png'), "
                            "'float32')[None], and save the pixels with np.save"),
], ids=["npz", "png"])
def test_a_file_of_another_kind_piped_in(tmp_path, make, message):
    done = run_process("predict", CONFIGS / "dense_stack.yaml", "-", "-o", tmp_path / "p.npy",
                       input=make(tmp_path))
    assert done.returncode == 65 and done.stdout == b""
    assert done.stderr.decode() == f"seqcli: error: {message}\n"


def test_an_array_given_as_the_model_is_named(cli, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 4), np.float32))
    result = cli("predict", x, CONFIGS / "dense_stack.yaml")
    assert result.code == 65 and result.out == ""
    assert result.err == (f"{x}:1:1: this is a .npy array, not a model file (YAML); the model "
                          "file comes first: seqcli predict MODEL INPUT\n")


# --- fit: the loss that fits the targets ---------------------------------------------------


@pytest.fixture
def classifier(tmp_path):
    """A 3-class softmax model with inputs, class ids and one-hot targets."""
    (tmp_path / "m.yaml").write_text(MODEL.replace("weights: w.safetensors\n", ""))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 3, 12)
    np.save(tmp_path / "x.npy", rng.random((12, 4), dtype=np.float32))
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "ids_column.npy", ids[:, None])
    np.save(tmp_path / "ids_float.npy", ids.astype(np.float32))
    np.save(tmp_path / "one_hot.npy", np.eye(3, dtype=np.float32)[ids])
    np.save(tmp_path / "out_of_range.npy", ids + 5)
    return tmp_path


def _fit(cli, folder: Path, targets: str, *loss: str):
    return cli("fit", folder / "m.yaml", folder / "x.npy", folder / targets, *loss, "-o",
               folder / "w.safetensors")


@pytest.mark.parametrize(("targets", "loss", "shape", "ids"), [
    ("ids.npy", [], "(12,)", "y"),
    ("ids.npy", ["--loss", "categorical_crossentropy"], "(12,)", "y"),
    ("ids_column.npy", ["--loss", "categorical_crossentropy"], "(12, 1)", "y[..., 0]"),
    ("ids_float.npy", ["--loss", "mae"], "(12,)", "y"),
])
def test_fit_suggests_sparse_crossentropy_for_class_ids(cli, classifier, targets, loss, shape,
                                                        ids):
    line = one_error(_fit(cli, classifier, targets, *loss), 65)
    assert line == (f"seqcli: error: {classifier / targets}: targets need shape (12, 3) (the "
                    f"model's output); received {shape}; these are class ids (0 to 2) for the "
                    "model's 3 outputs: use --loss sparse_categorical_crossentropy, or one-hot "
                    f"encode them (np.eye(3)[{ids}])")
    assert not (classifier / "w.safetensors").exists()


def test_fit_suggests_categorical_crossentropy_for_one_hot_targets(cli, classifier):
    line = one_error(_fit(cli, classifier, "one_hot.npy", "--loss",
                          "sparse_categorical_crossentropy"), 65)
    assert line.endswith("sparse labels need shape (12,); received (12, 3); these targets are "
                         "one-hot rows: use --loss categorical_crossentropy, or pass class ids "
                         "(y.argmax(-1))")


def test_fit_suggests_nothing_for_ids_that_are_not_the_models_classes(cli, classifier):
    line = one_error(_fit(cli, classifier, "out_of_range.npy"), 65)
    assert line.endswith("targets need shape (12, 3) (the model's output); received (12,)")


def test_the_suggested_losses_train(cli, classifier):
    assert _fit(cli, classifier, "ids.npy", "--loss", "sparse_categorical_crossentropy").code == 0
    assert _fit(cli, classifier, "one_hot.npy", "--loss", "categorical_crossentropy").code == 0


# --- a missing weight: the extra tensor of its shape ---------------------------------------


def test_missing_weight_suggests_the_extra_tensor_of_its_shape(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 3}\n"
                     "  - {type: Dense, units: 3}\n")
    weights = tmp_path / "w.npz"
    save_npz(weights, {"dense/kernel": np.zeros((4, 3)), "dense/bias": np.zeros(3),
                       "dense_2/kernel": np.zeros((3, 3)), "dense_1/kernal": np.zeros((3, 4)),
                       "dense_1/bias": np.zeros(3)})
    result = cli("validate", model, "--weights", weights)
    assert result.code == 65 and result.out == ""
    assert result.err.splitlines() == [
        f"seqcli: error: {weights}: missing tensor dense_1/kernel of shape (3, 3); did you mean "
        "'dense_2/kernel' (same shape (3, 3))?",
        f"seqcli: error: {weights}: unexpected tensor dense_2/kernel of shape (3, 3)",
        f"seqcli: error: {weights}: unexpected tensor dense_1/kernal of shape (3, 4)",
    ]


def test_a_similar_name_of_another_shape_is_not_suggested(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 3}\n")
    weights = tmp_path / "w.npz"
    save_npz(weights, {"dense/kernal": np.zeros((3, 4)), "dense/bias": np.zeros(3)})
    result = cli("validate", model, "--weights", weights)
    assert result.code == 65
    assert f"{weights}: missing tensor dense/kernel of shape (4, 3)\n" in result.err
    assert "did you mean" not in result.err
